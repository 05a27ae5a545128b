"""`edgecam benchmark BUNDLE --device PROFILE`: every variant the profile can run, measured as the device would run
it, beside the accuracy the manifest records, and checked against the profile's budget.

Each variant runs in a process of its own (`devices/benchmark.py`'s worker), so its load time and peak memory are
its own, not those of the variants before it. When the profile cannot run here (another architecture, or a device
this host lacks), the same variant runs on this host's CPU with the same backend and its times are multiplied by the
profile's speed factor: an estimate, labelled as one in every row, in the table and in the stored file.

Results go to `BUNDLE/benchmarks/<host>/<profile>.json` (and `.png`): beside the bundle's files, never among the
checksummed ones, so `edgecam verify` and the manifest's seal are untouched.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from edgecam.devices.profiles import REFERENCE_HOST, DeviceProfile, load_profile
from edgecam.devices.select import runnable_variants
from edgecam.runtime.bundle import Bundle, Variant, load_bundle
from edgecam.runtime.device import available_devices, check_device
from edgecam.runtime.errors import EdgecamError

RESULTS_DIR = "benchmarks"
WORKER_TIMEOUT = 900.0  # seconds one variant may take (200 runs of a detector on a slow CPU, with throughput)
TIMED = ("load_ms", "first_inference_ms", "p50_ms", "p95_ms", "p99_ms", "mean_ms")


def host_name() -> str:
    """This host's name as a folder name (letters, digits, '-', '_', '.')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname() or "host") or "host"


def accuracy(var: Variant) -> tuple[str, float] | None:
    """The manifest's accuracy for a variant: top-1 (classifier) or mAP@0.5 (detector); None when not measured."""
    for key in ("top1", "map50"):
        value = var.metrics.get(key)
        if isinstance(value, (int, float)):
            return key, float(value)
    return None


def plan(profile: DeviceProfile) -> dict[str, Any]:
    """Where and how the profile's variants run on this host: on its own device when the host runs the profile,
    else on this host's CPU with the same backend, times scaled by `speed_factor`."""
    here, why = profile.runs_here()
    if available_devices(profile.backend) is None:
        raise EdgecamError(f"{profile.backend} is not installed here", fix=f"pip install {profile.backend}")
    threads = profile.threads_or_cores()
    threads_here = min(threads, os.cpu_count() or 1)  # more threads than cores only measures the oversubscription
    if here:
        return {"estimated": False, "device": profile.engine_device, "threads": threads_here, "why": why,
                "basis": "measured on this host"}  # fmt: skip
    device = profile.engine_device
    try:
        check_device(profile.backend, device)
    except EdgecamError:
        device = check_device(profile.backend, "cpu")
    machine = platform.machine()
    short = f"{profile.arch} profile" if not why.startswith(profile.backend) else f"{profile.engine_device} not here"
    return {
        "estimated": True,
        "device": device,
        "threads": threads_here,
        "why": why,
        "basis": f"estimated from this host × {_factor(profile.speed_factor)}: {short}",
        "note": (
            f"{profile.name} could not run on this host ({why}); each variant ran on this host's {device} "
            f"({machine}, {os.cpu_count()} cores, {threads_here} threads) with {profile.backend}, and its times are "
            f"multiplied by the profile's speed factor {_factor(profile.speed_factor)} ({profile.speed_factor_source}, "
            f"relative to the reference host: {REFERENCE_HOST}; this host is taken as one). Throughput is divided "
            "by it. Peak RSS is this host's, unscaled."
        ),
    }


def _factor(value: float) -> str:
    """4.0 as "4.0", 0.75 as "0.75": a factor always reads as one."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One variant measured in a fresh Python process; its EdgecamError comes back as ours."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgecam.devices.benchmark", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise EdgecamError(f"variant {spec['variant']} took over {WORKER_TIMEOUT:g} s", fix="use --runs 50") from None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the benchmark of {spec['variant']} failed (exit {done.returncode}): {tail}")
    row = json.loads(lines[-1])
    if "error" in row:
        raise EdgecamError(f"variant {spec['variant']}: {row['error']}", path=row.get("path"), fix=row.get("fix"))
    return row


def benchmark_profile(
    bundle: str | Path,
    profile: str | Path | DeviceProfile,
    runs: int = 200,
    warmup: int = 20,
    batch: int = 1,
    throughput_seconds: float = 3.0,
) -> dict[str, Any]:
    """Every variant `profile` can run, measured (or estimated) on this host, with accuracy and budget verdicts.
    Returns {profile, host, basis, note, budget, rows}; `store` writes it beside the bundle."""
    if batch < 1 or runs < 1 or warmup < 0:
        raise EdgecamError("--runs and --batch must be at least 1", fix="e.g. --runs 200 --batch 1")
    b = load_bundle(bundle)
    prof = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    variants = runnable_variants(b, prof)
    if not variants:
        have = ", ".join(f"{n} ({v.format} {v.precision})" for n, v in b.variants.items())
        raise EdgecamError(
            f"no variant of this bundle runs on {prof.name} ({prof.backend} in {', '.join(prof.precisions)}); "
            f"the bundle has {have}",
            path=b.root,
            fix="export a precision the profile runs (edgecam export --int8, edgecam quantize)",
        )
    how = plan(prof)
    factor = prof.speed_factor if how["estimated"] else 1.0
    budget_ms, budget_mb = prof.budget.latency_ms_per_frame(), prof.budget.peak_memory_mb
    rows = []
    for var in variants:
        spec = {"bundle": str(b.root), "variant": var.name, "backend": prof.backend, "device": how["device"],
                "threads": how["threads"], "batch": batch, "runs": runs, "warmup": warmup,
                "throughput_seconds": throughput_seconds}  # fmt: skip
        measured = run_worker(spec)
        rows.append(_row(b, var, prof, how, measured, factor, budget_ms, budget_mb, batch))
    return {
        "bundle": str(b.root),
        "profile": prof.name,
        "host": {"name": host_name(), "arch": platform.machine(), "cores": os.cpu_count()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": prof.backend,
        "device": prof.engine_device,
        "estimated": how["estimated"],
        "basis": how["basis"],
        "note": how.get("note", ""),
        "budget": {"latency_ms": round(budget_ms, 2), "peak_memory_mb": budget_mb, "latency_stat": "p95_ms"},
        "settings": {"runs": runs, "warmup": warmup, "batch": batch, "throughput_seconds": throughput_seconds},
        "rows": rows,
    }


def _row(
    bundle: Bundle,
    var: Variant,
    prof: DeviceProfile,
    how: dict[str, Any],
    measured: dict[str, Any],
    factor: float,
    budget_ms: float,
    budget_mb: int,
    batch: int,
) -> dict[str, Any]:
    acc = accuracy(var)
    row: dict[str, Any] = {
        "variant": var.name,
        "format": var.format,
        "precision": var.precision,
        "backend": prof.backend,
        "device": prof.engine_device,
        "ran_on": measured["engine"].get("device", how["device"]),
        "threads": prof.threads,
        "threads_here": how["threads"],
        "batch": batch,
        "estimated": how["estimated"],
        "basis": how["basis"],
    }
    row.update({k: round(measured[k] * factor, 3) for k in TIMED})
    tput = measured.get("throughput_fps")
    row["throughput_fps"] = round(tput / factor, 1) if tput else None
    row["peak_rss_mb"] = measured.get("peak_rss_mb")
    row["accuracy_metric"], row["accuracy"] = acc if acc else (None, None)
    row["meets_latency"] = row["p95_ms"] <= budget_ms
    row["meets_memory"] = row["peak_rss_mb"] is not None and row["peak_rss_mb"] <= budget_mb
    row["meets_budget"] = row["meets_latency"] and row["meets_memory"]
    row["size_kb"] = round(sum(int(f.get("size_bytes") or 0) for f in var.files.values()) / 1024, 1)
    if how["estimated"]:
        row["measured_here"] = {k: measured[k] for k in (*TIMED, "throughput_fps") if k in measured}
    row["engine"] = measured["engine"]
    return row


def store(result: dict[str, Any], bundle: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write `BUNDLE/benchmarks/<host>/<profile>.json` (or `out/<profile>.json`, for a read-only bundle) and, where
    matplotlib is installed, the plot beside it. Returns {"json": path, "plot": path | None, "plot_note": why not};
    the bundle's own files are not touched."""
    folder = Path(out) if out is not None else Path(bundle) / RESULTS_DIR / host_name()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result['profile']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise EdgecamError(
            f"cannot store the results: {exc.strerror}", path=folder, fix="make the folder writable, or give --out DIR"
        ) from None
    from edgecam.devices.profile_plot import plot_result  # matplotlib itself is optional: checked inside

    plot, note = plot_result(result, folder / f"{result['profile']}.png")
    return {"json": str(path), "plot": plot, "plot_note": note}


def format_result(result: dict[str, Any], saved: dict[str, Any] | None = None) -> str:
    """The table `edgecam benchmark --device` prints."""
    b = result["budget"]
    head = (
        f"profile {result['profile']}: {result['backend']} on {result['device']}; budget p95 <= {b['latency_ms']:g} ms "
        f"per inference, peak RSS <= {b['peak_memory_mb']} MB"
    )
    host = result["host"]
    lines = [head, f"host {host['name']} ({host['arch']}, {host['cores']} cores): {result['basis']}"]
    cols = ("variant", "precision", "threads", "load ms", "first ms", "p50 ms", "p95 ms", "p99 ms", "async/s",
            "RSS MB", "accuracy", "budget")  # fmt: skip
    table = [cols]
    for r in result["rows"]:
        acc = f"{r['accuracy_metric']} {r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        verdict = (
            "meets"
            if r["meets_budget"]
            else "over: "
            + ", ".join(k for k, ok in (("latency", r["meets_latency"]), ("memory", r["meets_memory"])) if not ok)
        )
        table.append(
            (
                r["variant"],
                r["precision"],
                str(r["threads_here"])
                if r["threads"] in (None, r["threads_here"])
                else f"{r['threads']} ({r['threads_here']} here)",
                f"{r['load_ms']:.1f}",
                f"{r['first_inference_ms']:.2f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p95_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['throughput_fps']:.0f}" if r["throughput_fps"] else "-",
                f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-",
                acc,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    if result["estimated"]:
        lines.append(textwrap.fill(f"estimated: {result['note']}", width=118, subsequent_indent="  "))
    if saved:
        lines.append(f"saved {saved['json']}" + (f" and {saved['plot']}" if saved.get("plot") else ""))
        if saved.get("plot_note"):
            lines.append(f"plot: {saved['plot_note']}")
    return "\n".join(lines)
