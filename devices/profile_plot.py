"""The accuracy-vs-latency plot of `edgecam benchmark --device`: one point per variant, the budget as a line.

matplotlib comes with the workstation install (the `train` extra), not with the device's base install: without it
the plot is skipped with a note, and the JSON beside it holds every number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_result(result: dict[str, Any], out: Path) -> tuple[str | None, str | None]:
    """(path of the PNG written, None) or (None, why no plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a device or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "skipped: matplotlib is not installed (the base install; pip install matplotlib for a plot)"
    rows = [r for r in result["rows"] if r.get("accuracy") is not None]
    if not rows:
        return None, "skipped: the manifest records no accuracy for these variants"
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, r in enumerate(rows):
        colour = "tab:green" if r["meets_budget"] else "tab:red"
        ax.scatter(r["p95_ms"], r["accuracy"], color=colour, marker="o" if not r["estimated"] else "s", zorder=3)
        ax.annotate(
            r["variant"], (r["p95_ms"], r["accuracy"]), textcoords="offset points", xytext=(6, 4 - 11 * i), fontsize=8
        )
    budget = result["budget"]["latency_ms"]
    ax.axvline(budget, color="tab:gray", linestyle="--", label=f"budget {budget:g} ms")
    ax.set_xscale("log")  # sub-millisecond variants and a budget of tens of milliseconds on one axis
    ax.set_xlabel("p95 latency per inference, ms (log)" + (" (estimated)" if result["estimated"] else ""))
    ax.set_ylabel(rows[0]["accuracy_metric"])
    ax.set_title(f"{result['profile']}: {result['basis']}", fontsize=9)
    times = [budget, *(r["p95_ms"] for r in rows)]
    ax.set_xlim(min(times) / 2, max(times) * 2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return str(out), None
