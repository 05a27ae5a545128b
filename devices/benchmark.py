"""Latency of every bundle variant per backend, at batch 1 or at the batch the runtime sends (a classifier gets one
crop per slot of a frame in one call): medians and p95 over many runs.

`measure_variant` is one variant's whole cost as a device sees it (load, first inference, latency, async
throughput, peak RSS); `edgecam benchmark --device PROFILE` runs it in a process of its own per variant
(`python -m edgecam.devices.benchmark SPEC`), so the load time and the peak memory are that variant's alone."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.stats import percentiles


def time_calls(fn: Any, runs: int, warmup: int) -> dict[str, float]:
    """p50/p95/mean ms of `fn()` over `runs` calls after `warmup`; only the call sits between the clock reads."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    ms = samples * 1000.0
    pct = percentiles(ms, (50, 95, 99), digits=4)
    return {
        "p50_ms": pct["p50"],
        "p95_ms": pct["p95"],
        "p99_ms": pct["p99"],
        "mean_ms": round(float(ms.mean()), 4),
        "fps": round(1000.0 / pct["p50"], 1),
    }


def time_variant(
    path: str | Path,
    backend: str,
    precision: str,
    shape: tuple[int, ...],
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = None,
    device: str = "CPU",
) -> dict[str, Any]:
    """Latency of one model file on one engine at one input shape: the engine's own call on a bound input
    (`Backend.bind`), so a 0.1 ms model is timed, not the Python around it. Adds `engine`: what really ran."""
    engine = create_backend(backend)
    engine.load(Path(path), threads=threads, precision=precision, device=device)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {**time_calls(engine.bind(x), runs, warmup), "engine": engine.info()}


def throughput(
    path: str | Path,
    backend: str,
    precision: str,
    shape: tuple[int, ...],
    seconds: float = 3.0,
    streams: int = 2,
    device: str = "CPU",
    threads: int | None = None,
) -> float:
    """Batches/s with the engine in throughput mode: `streams` streams (engines that have them), batches submitted
    asynchronously with at most twice the engine's parallel requests in flight."""
    engine = create_backend(backend)
    engine.load(Path(path), threads=threads, precision=precision, device=device, mode="throughput", streams=streams)
    parallel = engine.open_async(streams)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    window: deque[Future] = deque()

    def submit() -> None:
        if len(window) >= 2 * parallel:
            window.popleft().result()
        window.append(engine.submit(x))

    for _ in range(parallel * 4):  # warm-up
        submit()
    engine.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        submit()
        done += 1
    engine.wait_all()
    elapsed = time.perf_counter() - start
    for future in window:
        future.result()  # an engine error surfaces here rather than as a rate
    engine.close()
    return round(done / elapsed, 1)


def benchmark_bundle(
    bundle: str | Path,
    backends: tuple[str, ...] = ("onnxruntime", "openvino"),
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = None,
    batch: int = 1,
    throughput_seconds: float = 3.0,
    device: str = "CPU",
) -> list[dict[str, Any]]:
    """One row per (variant, backend whose own format it is): p50/p95 latency of inference alone on `batch` inputs
    per call; `fps` counts calls (frames, when a frame's crops go in one batch). The exported models have a dynamic
    batch dimension; a model that does not accept `batch` raises the engine's error. Engines with CPU streams
    (OpenVINO) also get `throughput_fps` from `throughput_seconds` of throughput mode (0: skipped). `device` is the
    engine's device name (give one backend with it: device names belong to one engine)."""
    if batch < 1:
        raise EdgecamError(f"--batch {batch} must be at least 1", fix="e.g. --batch 20 for 20 slot crops per frame")
    b = load_bundle(bundle)
    shape = (batch, *b.preprocess.input_shape)
    rows = []
    for vname, var in b.variants.items():
        for bname in backends:
            # An engine runs the variants of its own format (OpenVINO: the IR, not the ONNX file it can also read).
            if create_backend(bname).formats[0] != var.format:
                continue
            path = b.path_of(var)
            timed = time_variant(path, bname, var.precision, shape, runs, warmup, threads, device)
            row = {"variant": vname, "backend": bname, "precision": var.precision, "batch": batch, **timed}
            if "streams" in timed["engine"] and throughput_seconds > 0:
                row["throughput_fps"] = throughput(
                    path, bname, var.precision, shape, seconds=throughput_seconds, device=device
                )
            row["size_kb"] = round(sum(f["size_bytes"] for f in var.files.values()) / 1024, 1)
            rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<16}{'backend':<13}{'batch':>6}{'p50 ms':>9}{'p95 ms':>9}{'calls/s':>9}{'size KB':>10}"]
    for r in rows:
        lines.append(
            f"{r['variant']:<16}{r['backend']:<13}{r['batch']:>6}{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}"
            f"{r['fps']:>9.1f}{r['size_kb']:>10.1f}"
        )
    return "\n".join(lines)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB: the kernel's high-water mark (getrusage), else psutil's
    current RSS where getrusage is missing (Windows), else None."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # macOS counts bytes
    except ImportError:
        pass
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except ImportError:
        return None


def measure_variant(spec: dict[str, Any]) -> dict[str, Any]:
    """One variant as a device runs it, in this process: its files' checksums, then the model load (read and
    compile), the first inference, latency percentiles, the peak RSS up to here (latency mode, what `edgecam run`
    holds), then async throughput on a second, throughput-mode load (not counted in the peak).

    `spec`: bundle, variant, backend, device, threads, batch, runs, warmup, throughput_seconds, streams."""
    bundle = load_bundle(spec["bundle"])
    var = bundle.variants[spec["variant"]]
    bundle.check_variant_files(var)  # a changed model file is refused, not measured
    path, backend, device, threads = bundle.path_of(var), spec["backend"], spec["device"], spec.get("threads")
    shape = (int(spec.get("batch", 1)), *bundle.preprocess.input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    engine = create_backend(backend)
    t0 = time.perf_counter()
    engine.load(path, threads=threads, precision=var.precision, device=device)
    t1 = time.perf_counter()
    engine.infer(x)
    t2 = time.perf_counter()
    row: dict[str, Any] = {"load_ms": round((t1 - t0) * 1000, 2), "first_inference_ms": round((t2 - t1) * 1000, 2)}
    row.update(time_calls(engine.bind(x), int(spec.get("runs", 200)), int(spec.get("warmup", 20))))
    row["peak_rss_mb"] = peak_rss_mb()
    row["engine"] = engine.info()
    engine.close()
    del engine
    seconds = float(spec.get("throughput_seconds", 3.0))
    if seconds > 0:
        streams = int(spec.get("streams", 2))
        row["throughput_fps"] = throughput(path, backend, var.precision, shape, seconds, streams, device, threads)
    return row


def _worker(argv: list[str]) -> int:
    """`python -m edgecam.devices.benchmark SPEC_JSON`: one JSON line on stdout, the row or {"error": ...}."""
    from edgecam.runtime.errors import EdgecamError

    try:
        out: dict[str, Any] = measure_variant(json.loads(argv[0]))
    except EdgecamError as exc:
        out = {"error": exc.message, "path": exc.path, "fix": exc.fix}
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
