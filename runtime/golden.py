"""Golden frames: a few stored frames and each variant's exported output on them, compared again on the device.

The bundle keeps the original BGR frames (so the device exercises its own preprocessing too) and, per variant,
the raw output of the engine that validated that variant at export. `edgecam verify` re-runs the frames and
compares with the functions here. Pure numpy apart from `load_frames`; export reuses the tolerances and matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.decode import box_iou
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.postprocess import softmax
from edgecam.runtime.types import Detections

GOLDEN_DIR = "golden"
FRAMES_FILE = f"{GOLDEN_DIR}/frames.npz"
DEFAULT_COUNT = 8
# The golden output is the variant's own output, so these only absorb engine / CPU-ISA differences.
CLASSIFY_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2, "int8": 5e-2}
# precision -> (min fraction of boxes matched, min IoU of a match, max score difference)
DETECT_TOLERANCE = {
    "fp32": (0.99, 0.95, 0.01),
    "fp16": (0.97, 0.9, 0.05),
    "bf16": (0.95, 0.85, 0.08),
    "int8": (0.9, 0.8, 0.1),
}
MATCH_MARGIN = 0.05  # a box is looked for on the other side down to conf - margin: no threshold flicker
MATCH_IOU = 0.5  # below this IoU two boxes are not the same object
TIE_IOU = 0.02  # boxes whose IoU with the looked-for box is this close to the best one are ties, settled by score


def default_tolerance(task: str, precision: str) -> dict[str, float]:
    """The manifest's tolerance entry for a variant of this task and precision."""
    if task == "classify":
        return {"max_prob_diff": CLASSIFY_TOLERANCE.get(precision, CLASSIFY_TOLERANCE["fp32"])}
    matched, iou, score = DETECT_TOLERANCE.get(precision, DETECT_TOLERANCE["fp32"])
    return {"min_matched": matched, "min_iou": iou, "max_score_diff": score}


@dataclass
class GoldenComparison:
    """One variant on one backend against its stored output: figures for the report, one line per problem."""

    metrics: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def compare_classify(reference: np.ndarray, candidate: np.ndarray, tolerance: dict[str, float]) -> GoldenComparison:
    """Top-1 must be identical on every frame and no softmax probability may move more than the tolerance."""
    ref, cand = np.asarray(reference, np.float32), np.asarray(candidate, np.float32)
    if ref.shape != cand.shape:
        return GoldenComparison({}, [f"output shape {cand.shape} differs from the stored {ref.shape}"])
    allowed = float(tolerance["max_prob_diff"])
    changed = np.flatnonzero(ref.argmax(1) != cand.argmax(1))
    max_prob_diff = float(np.abs(softmax(ref) - softmax(cand)).max()) if ref.size else 0.0
    metrics = {
        "frames": int(len(ref)),
        "top1_same": int(len(ref) - len(changed)),
        "max_prob_diff": max_prob_diff,
        "max_abs_logit_diff": float(np.abs(ref - cand).max()) if ref.size else 0.0,
        "tolerance": dict(tolerance),
    }
    problems = []
    if len(changed):
        problems.append(f"top-1 class changed on {len(changed)} of {len(ref)} golden frames {changed.tolist()}")
    if max_prob_diff > allowed:
        problems.append(f"max |Δ prob| {max_prob_diff:.2e} exceeds the tolerance {allowed:.0e}")
    return GoldenComparison(metrics, problems)


def match_detections(
    ref: Detections, cand: Detections, conf: float, min_iou: float = MATCH_IOU, margin: float = MATCH_MARGIN
) -> tuple[int, int, list[float], list[float]]:
    """Each box of `ref` scoring >= conf against same-class boxes of `cand` scoring >= conf - margin.

    The partner is the most overlapping box; boxes that overlap (nearly) as much are ties, and the closest score
    wins them. A weak model's boxes often clip to the same rectangle (the whole frame): taking the first of those
    ties paired boxes of unrelated scores and failed a correct export. This measures agreement, not quality.
    Returns (boxes looked for, boxes found at IoU >= min_iou, IoU of each found box, |score difference| of each).
    """
    r, c = ref[ref.scores >= conf], cand[cand.scores >= conf - margin]
    if len(r) == 0 or len(c) == 0:
        return len(r), 0, [], []
    iou = box_iou(r.xyxy, c.xyxy) * (r.class_ids[:, None] == c.class_ids[None, :])
    rows = np.arange(len(r))
    ties = iou >= iou.max(1, keepdims=True) - TIE_IOU
    score_diff = np.abs(r.scores[:, None] - c.scores[None, :])
    best = np.where(ties, score_diff, np.inf).argmin(1)
    best_iou = iou[rows, best]
    ok = best_iou >= min_iou
    return len(r), int(ok.sum()), best_iou[ok].tolist(), score_diff[rows, best][ok].tolist()


def compare_detect(
    reference: Sequence[Detections],
    candidate: Sequence[Detections],
    tolerance: dict[str, float],
    conf: float,
    score_diff_all: float = 0.0,
) -> GoldenComparison:
    """Decoded boxes both ways (every confident box found on the other side), plus `score_diff_all`: the
    largest |Δ sigmoid score| over every anchor, which catches drift even when no box passes `conf`."""
    total = matched = 0
    ious: list[float] = []
    diffs: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        for a, b in ((ref, cand), (cand, ref)):
            n, m, i, d = match_detections(a, b, conf, min_iou=MATCH_IOU)
            total, matched, ious, diffs = total + n, matched + m, ious + i, diffs + d
    frac = matched / total if total else 1.0
    min_iou = float(min(ious)) if ious else 1.0
    max_diff = max([*diffs, score_diff_all])
    need_matched, need_iou, allowed = (float(tolerance[k]) for k in ("min_matched", "min_iou", "max_score_diff"))
    metrics = {
        "frames": len(reference),
        "boxes": total // 2,
        "matched": frac,
        "min_iou": min_iou,
        "max_score_diff": float(max_diff),
        "tolerance": dict(tolerance),
    }
    problems = []
    if frac < need_matched:
        problems.append(f"only {frac:.3f} of {total // 2} golden boxes found again (need >= {need_matched})")
    if min_iou < need_iou:
        problems.append(f"a golden box moved: min IoU {min_iou:.3f} (need >= {need_iou})")
    if max_diff > allowed:
        problems.append(f"max |Δ score| {max_diff:.3f} exceeds the tolerance {allowed}")
    return GoldenComparison(metrics, problems)


def sigmoid_scores(raw: np.ndarray) -> np.ndarray:
    """Class scores of a detector's raw (N, A, 4 + C) output."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(raw, np.float32)[..., 4:], -50, 50)))


def save_frames(path: Path, images: Sequence[np.ndarray]) -> None:
    """BGR uint8 frames of any sizes, compressed, in order (`frame_000`, ...)."""
    np.savez_compressed(path, **{f"frame_{i:03d}": np.ascontiguousarray(im) for i, im in enumerate(images)})


def load_frames(path: Path) -> list[np.ndarray]:
    """The frames `save_frames` wrote; a damaged file is an EdgecamError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = [data[k] for k in sorted(data.files)]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise EdgecamError(f"golden frames unreadable: {exc}", path=path, fix="re-export the bundle") from None
    bad = [i for i, f in enumerate(frames) if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3]
    if not frames or bad:
        raise EdgecamError(f"golden frames are not HxWx3 uint8 images (frames {bad})", path=path)
    return frames


def load_output(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise EdgecamError(f"golden output unreadable: {exc}", path=path, fix="re-export the bundle") from None
