"""`make bench`: measure the demo bundle side by side in one run and write BENCHMARKS.md.

Each variant is timed in its own process: two engines in one process disturb each other's threads.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _edgecam_json(*args: str) -> Any:
    cmd = [sys.executable, "-m", "edgecam", *args, "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _versions() -> dict[str, str]:
    import onnxruntime
    import openvino

    return {"onnxruntime": onnxruntime.__version__, "openvino": openvino.get_version().split("-")[0]}


def write_benchmarks(work: str | Path, out: str | Path, runs: int = 500) -> Path:
    """Benchmark `work/bundle` (built by the demo if missing) and write the markdown report."""
    work, out = Path(work), Path(out)
    bundle = work / "bundle"
    if not (bundle / "edgecam.json").is_file() or not (work / "shelf.mp4").is_file():
        from edgecam.demo import run_demo

        run_demo(work)
    manifest = json.loads((bundle / "edgecam.json").read_text())
    video = json.loads((work / "shelf.json").read_text())
    rows = []
    for name, var in manifest["variants"].items():
        backend = var["backend"]
        row = _edgecam_json("benchmark", str(bundle), "--backends", backend, "--runs", str(runs))
        rows += [r for r in row if r["variant"] == name]
    base = next(r for r in rows if r["variant"] == "onnx-fp32")["p50_ms"]
    runs_out = {}
    for backend in ("onnxruntime", "openvino"):
        rois = [f"--roi={x},{y},{w},{h}" for x, y, w, h in video["rois"]]
        runs_out[backend] = _edgecam_json(
            "run", str(bundle), "--source", str(work / "shelf.mp4"), "--backend", backend, *rois
        )
    m = manifest["model"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {dt.date.today().isoformat()}: {_cpu_name()}, "
        f"{_nproc()} cores, Python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in _versions().items())
        + ". Each variant timed in its own process, batch 1, "
        f"{runs} runs after warm-up; medians and p95. Timings on shared machines are noisy: compare ratios "
        "within one run.",
        "",
        f"## Shelf-slot classifier ({m['name']}, {manifest['preprocess']['height']}x{manifest['preprocess']['width']}, "
        f"{m['gflops']:.4f} GFLOPs, {m['params_m'] * 1000:.0f} k params)",
        "",
        "| variant | backend | engine precision | val top-1 | p50 ms | p95 ms | FPS | vs ORT FP32 | size KB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = manifest["variants"][r["variant"]]["metrics"]
        eng = r["engine"].get("engine_precision", r["precision"])
        lines.append(
            f"| {r['variant']} | {r['backend']} | {eng} | {met.get('top1', float('nan')):.4f} | {r['p50_ms']:.3f} "
            f"| {r['p95_ms']:.3f} | {r['fps']:.0f} | {base / r['p50_ms']:.2f}x | {r['size_kb']:.0f} |"
        )
    lines += [
        "",
        f"## `edgecam run` on the demo shelf video ({video['size'][0]}x{video['size'][1]}, {video['n_frames']} frames, "
        f"{len(video['rois'])} slot ROIs batched per frame)",
        "",
        "| backend | FPS | read p50 | preprocess p50 | infer p50 | infer p95 | postprocess p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend, s in runs_out.items():
        st = s["stages"]

        def p(stage: str, key: str = "p50_ms", st: dict = st) -> str:
            return f"{st[stage][key]:.3f}" if stage in st else "-"

        lines.append(
            f"| {backend} | {s['fps']:.1f} | {p('read')} | {p('preprocess')} | {p('infer')} | {p('infer', 'p95_ms')} "
            f"| {p('postprocess')} |"
        )
    lines += ["", "Stage times in ms. Reproduce with `make bench` (or `edgecam benchmark BUNDLE`).", ""]
    out.write_text("\n".join(lines))
    return out


def _nproc() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
