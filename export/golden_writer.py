"""Golden frames into a staged bundle: a few validation frames and each variant's validated output on them.

`edgecam verify` on the device re-runs these frames through the one preprocessing and compares with the stored
outputs, so a tampered, swapped or mis-running model is caught before the camera serves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.bundle import TASKS, sha256_file
from edgecam.runtime.golden import DEFAULT_COUNT, FRAMES_FILE, GOLDEN_DIR, default_tolerance, save_frames


def golden_indices(n_available: int, count: int = DEFAULT_COUNT) -> np.ndarray:
    """`count` indices spread evenly over the available frames, so every class / scene type tends to appear."""
    if n_available < 1 or count < 1:
        raise ValueError(f"need at least one frame and count >= 1, got {n_available} frames and count {count}")
    return np.unique(np.linspace(0, n_available - 1, min(count, n_available)).round().astype(int))


def write_golden(
    stage_dir: Path,
    images: Sequence[np.ndarray],
    outputs_by_variant: Mapping[str, np.ndarray],
    task: str,
    precisions: Mapping[str, str] | None = None,
    engines: Mapping[str, str] | None = None,
    count: int = DEFAULT_COUNT,
    tolerance: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Write `golden/` under `stage_dir`; return the manifest's `"golden"` entry (with sha256 of every file).

    `images` are the original BGR uint8 frames; `outputs_by_variant[v][i]` is variant v's raw first output on
    image i through the engine that validated v (`engines[v]`, recorded for the report). When more images than
    `count` are given, `count` evenly spaced ones are kept, with their outputs. `precisions` picks each
    variant's default tolerance (fp32 when absent); `tolerance` overrides it per variant.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not outputs_by_variant:
        raise ValueError("no variant outputs given")
    bad = [i for i, im in enumerate(images) if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3]
    if bad:
        raise ValueError(f"golden images must be HxWx3 uint8 BGR; images {bad[:5]} are not")
    for name, out in outputs_by_variant.items():
        if len(out) != len(images):
            raise ValueError(f"variant {name!r} has {len(out)} outputs for {len(images)} images")
    keep = golden_indices(len(images), count)
    stage_dir = Path(stage_dir)
    (stage_dir / GOLDEN_DIR).mkdir(parents=True, exist_ok=True)
    save_frames(stage_dir / FRAMES_FILE, [images[i] for i in keep])
    outputs: dict[str, str] = {}
    for name, out in outputs_by_variant.items():
        rel = f"{GOLDEN_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.npy"
        if rel in outputs.values():
            raise ValueError(f"variant names {sorted(outputs_by_variant)} collide as golden file names")
        np.save(stage_dir / rel, np.ascontiguousarray(np.asarray(out)[keep], np.float32))
        outputs[name] = rel
    precisions, tolerance = precisions or {}, tolerance or {}
    entry: dict[str, Any] = {
        "frames": FRAMES_FILE,
        "count": int(len(keep)),
        "outputs": outputs,
        "tolerance": {n: dict(tolerance.get(n) or default_tolerance(task, precisions.get(n, "fp32"))) for n in outputs},
    }
    if engines:
        entry["engines"] = {n: engines[n] for n in outputs if n in engines}
    files = [FRAMES_FILE, *outputs.values()]
    entry["files"] = {
        rel: {"sha256": sha256_file(stage_dir / rel), "size_bytes": (stage_dir / rel).stat().st_size} for rel in files
    }
    return entry
