"""Does `edgecam benchmark` measure the engine? Its median latency next to OpenVINO's `benchmark_app` on the same IR,
precision and input shape.

`benchmark_app` reports the engine's own per-request latency (measured inside OpenVINO), so Python overhead in our
timing shows up as a ratio above 1. Each side runs in its own process, the two alternating for a few rounds (the
machine's load changes while they run); the result is the median of each side's per-round medians.

    python -m edgecam.bench.engine_fidelity IR.xml int8 1,3,64,64 [--rounds 3 --niter 2000]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgecam.runtime.backends.openvino import INFERENCE_PRECISION
from edgecam.runtime.errors import EdgecamError

_MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*(ms|us)")


def benchmark_app_command() -> list[str]:
    """`benchmark_app` run by this interpreter, so it is this OpenVINO (a console script may name another Python)."""
    try:
        import openvino.tools.benchmark.main  # noqa: F401
    except ImportError:
        raise EdgecamError("benchmark_app is not installed", fix="pip install openvino") from None
    code = "import sys; sys.argv[0] = 'benchmark_app'; from openvino.tools.benchmark.main import main; main()"
    return [sys.executable, "-c", code]


def _shape_arg(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def benchmark_app_median(
    ir: str | Path,
    precision: str,
    shape: tuple[int, ...],
    niter: int = 1000,
    threads: int | None = None,
    static: bool = True,
) -> float:
    """Median latency in ms from `benchmark_app -hint latency` on the CPU with a float32 input, as edgecam feeds
    it, and the inference precision edgecam's OpenVINO backend sets for this variant precision (f32 for
    fp32/fp16/int8 IRs). `static`: `-shape` reshapes the
    model to `shape`; else `-data_shape` keeps a dynamic-batch IR dynamic, as edgecam loads it (inputs set once)."""
    cmd = [*benchmark_app_command(), "-m", str(ir), "-d", "CPU", "-hint", "latency", "-niter", str(int(niter))]
    # -ip f32: benchmark_app otherwise turns an image-like input into u8 (a different, smaller model input).
    cmd += ["-ip", "f32", "-infer_precision", INFERENCE_PRECISION.get(precision, "f32")]
    cmd += ["-shape", _shape_arg(shape)] if static else ["-data_shape", _shape_arg(shape), "-inference_only", "true"]
    with tempfile.TemporaryDirectory() as tmp:
        if threads:  # benchmark_app refuses -nthreads with a hint; a config file sets what edgecam sets
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(int(threads))}}))
            cmd += ["-load_config", str(config)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    median = parse_median(done.stdout)
    if done.returncode != 0 or median is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EdgecamError(f"benchmark_app failed: {' | '.join(tail)}", path=ir, fix="check the IR and the shape")
    return median


def parse_median(stdout: str) -> float | None:
    """The "Median:" latency of benchmark_app's report in ms (it prints us or ms), None when missing."""
    found = _MEDIAN.search(stdout)
    if not found:
        return None
    value = float(found.group(1))
    return value / 1000.0 if found.group(2) == "us" else value


def edgecam_median(
    ir: str | Path, precision: str, shape: tuple[int, ...], runs: int = 1000, threads: int | None = None
) -> float:
    """Median latency in ms of `edgecam benchmark`'s timing (`devices.benchmark.time_variant`) on the OpenVINO
    backend, in a fresh process like benchmark_app's."""
    args = json.dumps([str(ir), precision, list(shape), int(runs), threads])
    code = (
        "import json, sys\n"
        "from edgecam.devices.benchmark import time_variant\n"
        "ir, precision, shape, runs, threads = json.loads(sys.argv[1])\n"
        "print(json.dumps(time_variant(ir, 'openvino', precision, tuple(shape), runs, 20, threads)['p50_ms']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise EdgecamError(f"edgecam's timing failed: {tail[0]}", path=ir)
    return float(done.stdout.strip().splitlines()[-1])


def engine_fidelity(
    ir: str | Path,
    precision: str,
    shape: tuple[int, ...],
    rounds: int = 3,
    niter: int = 1000,
    threads: int | None = None,
    label: str | None = None,
    static: bool = True,
) -> dict[str, Any]:
    """Both medians (ms) and their ratio (ours / benchmark_app) over `rounds` alternating rounds of `niter`
    inferences each; the side that goes first switches every round. Ours runs the IR as edgecam loads it (a
    dynamic batch stays dynamic); `static` gives benchmark_app `-shape` (the model reshaped to `shape`: the
    reference the brief names, its ratio includes what the dynamic batch costs the engine), else `-data_shape`
    (the same dynamic model: the ratio is the timing's own overhead)."""
    ours: list[float] = []
    app: list[float] = []
    for r in range(rounds):
        first_app = r % 2 == 0
        if not first_app:
            ours.append(edgecam_median(ir, precision, shape, niter, threads))
        app.append(benchmark_app_median(ir, precision, shape, niter, threads, static))
        if first_app:
            ours.append(edgecam_median(ir, precision, shape, niter, threads))
    ours_ms, app_ms = statistics.median(ours), statistics.median(app)
    return {
        "model": label or Path(ir).parent.name,
        "ir": str(ir),
        "precision": precision,
        "shape": list(shape),
        "benchmark_app_shape": "-shape (static)" if static else "-data_shape (dynamic)",
        "edgecam_ms": round(ours_ms, 4),
        "benchmark_app_ms": round(app_ms, 4),
        "ratio": round(ours_ms / app_ms, 3),
        "rounds": {"edgecam_ms": ours, "benchmark_app_ms": app},
        "niter": niter,
    }


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per `engine_fidelity` result."""
    lines = [
        "| model | precision | shape | benchmark_app shape | benchmark_app ms | edgecam benchmark ms | ratio |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"])
        lines.append(
            f"| {r['model']} | {r['precision']} | {shape} | {r['benchmark_app_shape']} | "
            f"{r['benchmark_app_ms']:.3f} | {r['edgecam_ms']:.3f} | {r['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ir", help="OpenVINO IR (.xml)")
    parser.add_argument("precision", help="the variant's precision: fp32, fp16, int8, bf16")
    parser.add_argument("shape", help="input shape, e.g. 1,3,64,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--niter", type=int, default=1000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--label")
    parser.add_argument("--dynamic", action="store_true", help="benchmark_app -data_shape: the model stays dynamic")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shape = tuple(int(d) for d in args.shape.split(","))
    row = engine_fidelity(
        args.ir, args.precision, shape, args.rounds, args.niter, args.threads, args.label, not args.dynamic
    )
    print(json.dumps(row, indent=2) if args.json else fidelity_table([row]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
