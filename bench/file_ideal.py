"""File mode against what the cores allow: `edgecam run` on a 720p file next to the ideal rate, the cores divided by
the sum of every stage's CPU time per frame (decoding included), each stage measured alone in this process.

    python -m edgecam.bench.file_ideal BUNDLE VARIANT VIDEO      # one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("decode", "preprocess", "infer", "postprocess")


def _cpu() -> float:
    """This process's CPU seconds, every thread (a decoder's and the engine's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_ms(fn: Callable[[], Any], n: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    start = _cpu()
    for _ in range(n):
        fn()
    return (_cpu() - start) * 1000.0 / n


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def stage_cpu_ms(bundle: Path, variant: str, video: Path, n: int = 300) -> dict[str, float]:
    """CPU ms per frame of each stage, alone, as `edgecam run` configures it (the model's default threads)."""
    import cv2

    from edgecam.runtime.model import Model
    from edgecam.runtime.preprocess import preprocess_batch

    cap = cv2.VideoCapture(str(video))
    images = []

    def read() -> None:
        ok, image = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = cap.read()
        if len(images) < 1:
            images.append(image)

    decode = _cpu_ms(read, n)
    cap.release()
    model = Model(bundle, variant=variant)
    frame = images[0]
    batch, _ = preprocess_batch([frame], model.spec)
    preprocess = _cpu_ms(lambda: preprocess_batch([frame], model.spec), n)
    infer = _cpu_ms(lambda: model.infer(batch), n)
    pending = model.start_detect([frame])  # inferred at once: finishing it again only decodes
    postprocess = _cpu_ms(lambda: model.finish(pending), n)
    lean = Model(bundle, variant=variant, threads=1)  # the least CPU an inference costs here: no second thread
    infer_one_thread = _cpu_ms(lambda: lean.infer(batch), n)
    return {
        "decode": decode,
        "preprocess": preprocess,
        "infer": infer,
        "postprocess": postprocess,
        "infer_one_thread": infer_one_thread,
    }


def file_vs_ideal(bundle: Path, variant: str, video: Path, repeats: int = 3) -> dict[str, Any]:
    """The ideal rate from the stages' CPU, and `edgecam run`'s rate on the whole file (median of `repeats`)."""
    from edgecam.runtime.pipeline import run

    cpu = stage_cpu_ms(bundle, variant, video)
    total = sum(cpu[k] for k in STAGES)
    strict = total - cpu["infer"] + min(cpu["infer"], cpu["infer_one_thread"])
    n = cores()
    ideal = n * 1000.0 / total
    runs = []
    for _ in range(repeats):
        start = _cpu()
        summary = run(bundle, str(video), variant=variant)
        runs.append({"fps": summary.fps, "cpu_ms": (_cpu() - start) * 1000.0 / max(summary.frames, 1)})
    fps = statistics.median(r["fps"] for r in runs)
    return {
        "variant": variant,
        "cores": n,
        "stage_cpu_ms": {k: round(v, 3) for k, v in cpu.items()},
        "sum_cpu_ms": round(total, 3),
        "ideal_fps": round(ideal, 1),
        "e2e_fps": round(fps, 1),
        "e2e_fps_runs": [r["fps"] for r in runs],
        "e2e_cpu_ms_per_frame": round(statistics.median(r["cpu_ms"] for r in runs), 3),
        "share_of_ideal": round(fps / ideal, 3),
        "strict_ideal_fps": round(n * 1000.0 / strict, 1),
        "share_of_strict_ideal": round(fps * strict / (n * 1000.0), 3),
    }


def markdown(r: dict[str, Any]) -> str:
    stages = " + ".join(f"{k} {r['stage_cpu_ms'][k]:.2f}" for k in STAGES)
    one = r["stage_cpu_ms"]["infer_one_thread"]
    return "\n".join(
        [
            f"| variant | stage CPU ms per frame, each alone | ideal on {r['cores']} cores | `edgecam run` | share "
            "| strict ideal (inference on one thread) | share | `edgecam run` CPU ms per frame |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
            f"| {r['variant']} | {stages} = {r['sum_cpu_ms']:.2f} | {r['ideal_fps']:.0f} FPS | {r['e2e_fps']:.0f} FPS "
            f"| {r['share_of_ideal']:.0%} | {r['strict_ideal_fps']:.0f} FPS (infer {one:.2f}) "
            f"| {r['share_of_strict_ideal']:.0%} | {r['e2e_cpu_ms_per_frame']:.2f} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecam.bench.file_ideal")
    p.add_argument("bundle", type=Path)
    p.add_argument("variant")
    p.add_argument("video", type=Path)
    a = p.parse_args(argv)
    print(json.dumps(file_vs_ideal(a.bundle, a.variant, a.video)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
