"""Latency of every bundle variant per backend, at batch 1 or at the batch the runtime sends (a classifier gets one
crop per slot of a frame in one call): medians and p95 over many runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.stats import percentiles


def time_calls(fn: Any, runs: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    ms = samples * 1000.0
    pct = percentiles(ms, digits=4)
    return {
        "p50_ms": pct["p50"],
        "p95_ms": pct["p95"],
        "mean_ms": round(float(ms.mean()), 4),
        "fps": round(1000.0 / pct["p50"], 1),
    }


def openvino_throughput(path: Path, precision: str, seconds: float = 3.0, streams: int = 2, batch: int = 1) -> float:
    """Requests/s with the CPU plugin in throughput mode: `streams` streams, as many async requests of `batch`."""
    import openvino as ov
    import openvino.properties.hint as hints

    from edgecam.runtime.backends.openvino import _HINT, core

    compiled = core().compile_model(
        core().read_model(str(path)),
        "CPU",
        {
            hints.performance_mode: hints.PerformanceMode.THROUGHPUT,
            hints.inference_precision: _HINT.get(precision, "f32"),
            "NUM_STREAMS": streams,
        },
    )
    shape = [batch, *list(compiled.inputs[0].get_partial_shape().get_min_shape())[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    queue = ov.AsyncInferQueue(compiled, streams)
    for _ in range(streams * 4):  # warm-up
        queue.start_async({0: x})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: x})
        done += 1
    queue.wait_all()
    return round(done / (time.perf_counter() - start), 1)


def benchmark_bundle(
    bundle: str | Path,
    backends: tuple[str, ...] = ("onnxruntime", "openvino"),
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = None,
    batch: int = 1,
    throughput_seconds: float = 3.0,
) -> list[dict[str, Any]]:
    """One row per (variant, backend that can run it): p50/p95 latency of inference alone on `batch` inputs per
    call; `fps` counts calls (frames, when a frame's crops go in one batch). The exported models have a dynamic
    batch dimension; a model that does not accept `batch` raises the engine's error. OpenVINO IR variants also get
    `throughput_fps` from `throughput_seconds` of throughput mode (0: skipped)."""
    if batch < 1:
        raise EdgecamError(f"--batch {batch} must be at least 1", fix="e.g. --batch 20 for 20 slot crops per frame")
    b = load_bundle(bundle)
    x = np.random.default_rng(0).standard_normal((batch, *b.preprocess.input_shape)).astype(np.float32)
    rows = []
    for vname, var in b.variants.items():
        for bname in backends:
            engine = create_backend(bname)
            if var.format not in engine.formats or (bname == "openvino" and var.format == "onnx"):
                continue
            engine.load(b.path_of(var), threads=threads, precision=var.precision)
            row = {
                "variant": vname,
                "backend": bname,
                "precision": var.precision,
                "batch": batch,
                **time_calls(lambda e=engine: e.infer(x), runs, warmup),
            }
            row["engine"] = engine.info()
            if bname == "openvino" and var.format == "openvino" and throughput_seconds > 0:
                row["throughput_fps"] = openvino_throughput(
                    b.path_of(var), var.precision, seconds=throughput_seconds, batch=batch
                )
            row["size_kb"] = round(sum(f["size_bytes"] for f in var.files.values()) / 1024, 1)
            rows.append(row)
            del engine
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<16}{'backend':<13}{'batch':>6}{'p50 ms':>9}{'p95 ms':>9}{'calls/s':>9}{'size KB':>10}"]
    for r in rows:
        lines.append(
            f"{r['variant']:<16}{r['backend']:<13}{r['batch']:>6}{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}"
            f"{r['fps']:>9.1f}{r['size_kb']:>10.1f}"
        )
    return "\n".join(lines)
