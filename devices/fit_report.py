"""What `edgecam fit` shows: the table of everything tried, the accuracy-vs-latency plot, and the sentence saying
what came closest when nothing met the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecam.devices.profiles import DeviceProfile

MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^", "int8-ac": "v"}


def estimated(profile: DeviceProfile) -> str:
    """How the device latency was had: measured here when the profile runs here and its factor is 1, else scaled."""
    here = profile.runs_here()[0] and profile.speed_factor == 1.0
    return "measured here" if here else "estimated"


def closest_message(near: Any, profile: DeviceProfile, budget_ms: float) -> str:
    """e.g. 'closest: prune 0.5, 64 px, int8: 7.9 ms on raspberry-pi-4 (estimated), budget 5.0 ms — 58 % over'."""
    over = (near.device_latency_ms / budget_ms - 1) * 100
    return (
        f"closest: {near.label}: {near.device_latency_ms:.3g} ms on {profile.name} ({estimated(profile)}), "
        f"budget {budget_ms:.3g} ms — {over:.0f} % over"
    )


def format_table(report: dict[str, Any]) -> str:
    """One line per candidate, in the order tried, then the outcome."""
    metric = report["metric"]
    head = (
        f"{'prune':>5} {'size':>5} {'precision':<9} {metric:>7} {'here ms':>8} {'device ms':>10} {'meets':>6} "
        f"{'seconds':>8}  status"
    )
    lines = [head]
    for c in report["candidates"]:

        def num(v: float | None, fmt: str) -> str:
            return format(v, fmt) if v is not None else "-"

        meets = {True: "yes", False: "no", None: "-"}[c["meets_budget"]]
        status = c["status"] + (" (chosen)" if c["chosen"] else "") + (f": {c['note']}" if c["note"] else "")
        lines.append(
            f"{c['ratio']:>5g} {c['size']:>5} {c['precision']:<9} {num(c['accuracy'], '.4f'):>7} "
            f"{num(c['latency_here_ms'], '.3f'):>8} {num(c['device_latency_ms'], '.3f'):>10} {meets:>6} "
            f"{c['seconds']:>8.1f}  {status}"
        )
    b, t = report["budget"], report["timing"]
    lines.append(
        f"budget {b['latency_ms_per_frame']:.4g} ms per frame on {report['device']} ({b['from']}); timed here on "
        f"{t['backend']} {t['device_here']}, {t['threads']} thread(s), batch {t['batch']}; device ms = "
        f"{t['device_latency']}"
    )
    if report["stopped_for_time"]:
        lines.append(f"stopped at the time limit ({report['time_limit_min']:g} min): the rest was not tried")
    if report["chosen"] is not None:
        c = report["candidates"][report["chosen"]]
        lines.append(
            f"chosen: {c['label']} ({c['variant']}): {metric} {c['accuracy']:.4f}, {c['device_latency_ms']:.3g} ms "
            f"on {report['device']} -> {report['bundle']}"
        )
    elif report["closest"]:
        lines.append(report["closest"])
    lines.append(f"table: fit.json, plot: {report['plot']}")
    return "\n".join(lines)


def plot_fit(rows: list[Any], budget_ms: float, profile: DeviceProfile, metric: str, path: Path) -> Path:
    """Accuracy against predicted device latency, one marker per precision, the budget as a vertical line and the
    chosen point ringed; candidates that were not measured do not appear."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    measured = [c for c in rows if c.status == "measured"]
    for precision, marker in MARKERS.items():
        pts = [c for c in measured if c.precision == precision]
        if pts:
            ax.scatter(
                [c.device_latency_ms for c in pts],
                [c.accuracy for c in pts],
                marker=marker,
                c=["tab:green" if c.meets_budget else "tab:red" for c in pts],
                alpha=0.8,
            )
            ax.scatter([], [], marker=marker, c="tab:gray", label=precision)  # the legend shows shape, not colour
    for c in measured:
        ax.annotate(f"{c.ratio:g}/{c.size}", (c.device_latency_ms, c.accuracy), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    ax.axvline(budget_ms, color="k", linestyle="--", linewidth=1, label=f"budget {budget_ms:.3g} ms")
    chosen = [c for c in measured if c.chosen]
    if chosen:
        c = chosen[0]
        ax.scatter([c.device_latency_ms], [c.accuracy], s=220, facecolors="none", edgecolors="tab:blue", linewidths=2,
                   label=f"chosen: {c.label}")  # fmt: skip
    name = {"top1": "top-1 accuracy", "map50": "mAP@0.5"}.get(metric, metric)
    ax.set(
        xlabel=f"latency on {profile.name}, ms ({estimated(profile)}; labels: prune ratio/size px)",
        ylabel=name,
        title=f"edgecam fit: {name} vs latency (green meets the budget)",
    )
    ax.set_xscale("log")  # latencies and budgets span orders of magnitude (0.1 ms models, 100 ms budgets)
    plain = matplotlib.ticker.FormatStrFormatter("%g")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
