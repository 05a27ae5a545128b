"""Latency of a plain model file (.onnx or OpenVINO .xml), for models that are not edgecam bundles.

The reference models (Ultralytics YOLOv8n, torchvision MobileNetV3-Small) come out of another virtualenv as bare
files; this times them with the same engines, thread counts and percentiles (``edgecam.devices.benchmark.time_calls``)
as edgecam's own bundles, at batch 1 on random input of the model's static input shape.

Each measurement runs in a fresh process (``python -m edgecam.bench.timing FILE ...``, one JSON line on stdout): the
caller may hold torch's thread pool or other compiled models, which would share the cores and skew the numbers.

    from edgecam.bench.timing import time_model_file
    time_model_file(Path("best.onnx"), "onnxruntime")   # {"p50_ms": ..., "p95_ms": ..., ...}
    time_model_file(Path("best.xml"), "openvino", f32=False)   # INT8 IR, plugin's default precision hint
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.errors import EdgecamError

ENGINES = ("onnxruntime", "openvino")


def time_model_file(
    path: Path,
    engine: str,
    runs: int = 200,
    threads: int = 2,
    f32: bool = True,
    *,
    warmup: int = 20,
    input_hw: tuple[int, int] | None = None,
    throughput_seconds: float = 3.0,
    streams: int = 2,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Time batch-1 inference of `path` with `engine` in a child process; returns its JSON result.

    `f32` (OpenVINO only) sets INFERENCE_PRECISION_HINT=f32: without it the CPU plugin runs the floating-point
    parts in bf16 on CPUs that have it. `input_hw` fills dynamic spatial dimensions (a dynamic batch is always 1).
    OpenVINO results also carry `fps_throughput` (THROUGHPUT hint, `streams` streams, `throughput_seconds`; 0: skip).
    Raises EdgecamError when the child fails.
    """
    if engine not in ENGINES:
        raise EdgecamError(f"unknown engine {engine!r}", fix=f"one of {', '.join(ENGINES)}")
    cmd = [
        sys.executable,
        "-m",
        "edgecam.bench.timing",
        str(path),
        "--engine",
        engine,
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
        "--threads",
        str(threads),
        "--f32" if f32 else "--no-f32",
        "--throughput-seconds",
        str(throughput_seconds),
        "--streams",
        str(streams),
    ]
    if input_hw:
        cmd += ["--input-hw", f"{input_hw[0]},{input_hw[1]}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EdgecamError(f"timing failed (exit {proc.returncode}): {' | '.join(tail)}", path=path)
    return json.loads(lines[-1])


def _static_shape(dims: list[Any], input_hw: tuple[int, int] | None, path: Path) -> list[int]:
    """Model input dims -> a concrete NCHW(-like) shape: dynamic batch -> 1, dynamic H/W -> `input_hw`."""
    shape = []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == 0:
            shape.append(1)
        elif input_hw and len(dims) == 4 and i in (2, 3):
            shape.append(int(input_hw[i - 2]))
        else:
            raise EdgecamError(
                f"input dimension {i} is dynamic ({d})", path=path, fix="pass --input-hw H,W for dynamic H and W"
            )
    return shape


def _random_input(shape: list[int], dtype: np.dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _time_onnxruntime(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Same session options as edgecam's ONNX Runtime backend: ORT_ENABLE_ALL, 1 inter-op thread, no spinning."""
    import onnxruntime as ort

    from edgecam.devices.benchmark import time_calls

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(float16)": np.float16}.get(inp.type)
    if dtype is None:
        raise EdgecamError(f"unsupported input type {inp.type}", path=path)
    shape = _static_shape(list(inp.shape), args.input_hw, path)
    x = _random_input(shape, np.dtype(dtype))
    feed = {inp.name: x}
    stats = time_calls(lambda: sess.run(None, feed), args.runs, args.warmup)
    return {**stats, "input_shape": shape, "engine_version": ort.__version__, "precision_hint": None}


def _time_openvino(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """LATENCY hint with `threads` threads; then THROUGHPUT hint with `streams` streams for `fps_throughput`."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    from edgecam.devices.benchmark import time_calls
    from edgecam.runtime.backends.openvino import conv_precisions

    core = ov.Core()
    model = core.read_model(str(path))
    port = model.inputs[0]
    pshape = port.get_partial_shape()
    dims = [d.get_length() if d.is_static else None for d in pshape]
    shape = _static_shape(dims, args.input_hw, path)
    if pshape.is_dynamic:
        model.reshape({port.get_any_name(): ov.PartialShape(shape)})
    x = _random_input(shape, np.dtype(port.get_element_type().to_dtype()))
    precision = {hints.inference_precision: "f32"} if args.f32 else {}

    config = {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: args.threads}
    compiled = core.compile_model(model, "CPU", {**config, **precision})
    request = compiled.create_infer_request()
    stats = time_calls(lambda r=request: r.infer({0: x}), args.runs, args.warmup)
    result = {
        **stats,
        "input_shape": shape,
        "engine_version": ov.get_version(),
        "precision_hint": "f32" if args.f32 else "default",
        "engine_precision": compiled.get_property(hints.inference_precision).to_string(),
        "conv_precisions": conv_precisions(compiled),
    }
    del request, compiled

    if args.throughput_seconds > 0:
        tput = core.compile_model(
            model,
            "CPU",
            {hints.performance_mode: hints.PerformanceMode.THROUGHPUT, "NUM_STREAMS": args.streams, **precision},
        )
        jobs = max(args.streams, int(tput.get_property(props.optimal_number_of_infer_requests)))
        queue = ov.AsyncInferQueue(tput, jobs)
        for _ in range(jobs * 4):  # warm-up
            queue.start_async({0: x})
        queue.wait_all()
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.throughput_seconds:
            queue.start_async({0: x})  # blocks while all `jobs` requests are busy
            done += 1
        queue.wait_all()
        result["fps_throughput"] = round(done / (time.perf_counter() - start), 1)
        result["throughput_streams"] = args.streams
        result["throughput_requests"] = jobs
    return result


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.replace("x", ",").split(","))
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Batch-1 latency of a plain .onnx or OpenVINO .xml; one JSON line.")
    ap.add_argument("path", type=Path)
    ap.add_argument("--engine", choices=ENGINES, required=True)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f32", action=argparse.BooleanOptionalAction, default=True, help="OpenVINO: f32 precision hint")
    ap.add_argument("--input-hw", type=_hw, default=None, help="H,W for dynamic spatial input dims")
    ap.add_argument("--throughput-seconds", type=float, default=3.0, help="OpenVINO throughput run (0: skip)")
    ap.add_argument("--streams", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.path.is_file():
        print(f"{args.path}: no such file", file=sys.stderr)
        return 2
    try:
        timed = _time_onnxruntime(args.path, args) if args.engine == "onnxruntime" else _time_openvino(args.path, args)
    except EdgecamError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    result = {"path": str(args.path), "engine": args.engine, "threads": args.threads, "batch": 1, **timed}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
