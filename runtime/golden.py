"""Golden frames, and the one comparison of a variant's output with a reference, at export and on the device.

The bundle keeps the original BGR frames (so the device exercises its own preprocessing too) and, per variant,
the raw output of the engine that validated that variant at export. `edgecam verify` re-runs the frames and
compares with the functions here; export parity (the variant against PyTorch) calls the same functions with the
`parity` column of the same table. Pure numpy apart from `load_frames`.
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
CHECKS = ("golden", "parity")
# task -> precision -> column -> limit: every tolerance of every comparison. Two checks read it:
#   golden: on the device, a variant re-run against its own output stored at export (`edgecam verify`);
#   parity: at export, a variant against PyTorch on the parity frames (export/parity.py, export/det_parity.py).
# A `parity_` column is the parity check's own value where the two differ; otherwise both read the same column.
TOLERANCE: dict[str, dict[str, dict[str, float]]] = {
    "classify": {
        # max_prob_diff: largest |Δ softmax probability| on the device. The golden output is the variant's own, so
        #   this only absorbs engine / CPU-ISA differences (summation order, AVX2 vs AVX-512 kernels): 1e-3 at fp32,
        #   then the rounding step of fewer mantissa bits (fp16 11, bf16 8); int8 5e-2 for u8 kernels that saturate
        #   differently with and without VNNI.
        # parity_max_prob_diff: the same measure against PyTorch, which adds the precision's own rounding. INT8 is not
        #   bounded (1.0): quantization moves probabilities by whole scale steps; the accuracy gate (export/gates.py)
        #   judges INT8 and bf16 variants, their parity is information.
        # min_top1_agreement: on the device every golden frame keeps its class (8 frames, the same variant: any
        #   change is drift). parity_min_top1_agreement: against PyTorch on up to 1000 frames, near-ties between two
        #   classes may flip under rounding, 1 in 200 at most.
        "fp32": {
            "max_prob_diff": 1e-3,
            "parity_max_prob_diff": 1e-3,
            "min_top1_agreement": 1.0,
            "parity_min_top1_agreement": 0.995,
        },
        "fp16": {
            "max_prob_diff": 2e-2,
            "parity_max_prob_diff": 2e-2,
            "min_top1_agreement": 1.0,
            "parity_min_top1_agreement": 0.995,
        },
        "bf16": {
            "max_prob_diff": 5e-2,
            "parity_max_prob_diff": 5e-2,
            "min_top1_agreement": 1.0,
            "parity_min_top1_agreement": 0.995,
        },
        "int8": {
            "max_prob_diff": 5e-2,
            "parity_max_prob_diff": 1.0,
            "min_top1_agreement": 1.0,
            "parity_min_top1_agreement": 0.995,
        },
    },
    "detect": {
        # min_matched: share of confident boxes found again, both ways, at IoU >= min_iou: a share, not every box,
        #   because where two boxes of one object score alike NMS may keep either one (flicker).
        # min_iou: how far a found box may move; max_score_diff: how far its score may move. Both widen with fewer
        #   mantissa bits; int8 (0.8 / 0.1) stays loose enough for quantized box regression, which the gate judges.
        "fp32": {"min_matched": 0.99, "min_iou": 0.95, "max_score_diff": 0.01},
        "fp16": {"min_matched": 0.97, "min_iou": 0.9, "max_score_diff": 0.05},
        "bf16": {"min_matched": 0.95, "min_iou": 0.85, "max_score_diff": 0.08},
        "int8": {"min_matched": 0.9, "min_iou": 0.8, "max_score_diff": 0.1},
    },
}
MATCH_MARGIN = 0.05  # a box is looked for on the other side down to conf - margin: no threshold flicker
MATCH_IOU = 0.5  # below this IoU two boxes are not the same object
TIE_IOU = 0.02  # boxes whose IoU with the looked-for box is this close to the best one are ties, settled by score


def default_tolerance(task: str, precision: str, check: str = "golden") -> dict[str, float]:
    """One check's limits for a variant of this task and precision (an unknown precision gets fp32's, the strictest);
    the golden ones are what the manifest stores per variant."""
    if task not in TOLERANCE or check not in CHECKS:
        raise ValueError(f"no tolerance for task {task!r}, check {check!r}")
    row = TOLERANCE[task].get(precision, TOLERANCE[task]["fp32"])
    own = {k.removeprefix("parity_"): v for k, v in row.items() if k.startswith("parity_")}
    return {k: v for k, v in row.items() if not k.startswith("parity_")} | (own if check == "parity" else {})


@dataclass
class Comparison:
    """One variant against a reference: figures for the report, one line per problem."""

    metrics: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def compare_classify(
    reference: np.ndarray, candidate: np.ndarray, tolerance: dict[str, float], what: str = "golden"
) -> Comparison:
    """Logits against reference logits: top-1 must agree on the tolerance's share of frames (every frame when it
    does not say) and no softmax probability may move more than the tolerance. `what` names the frames in problems."""
    ref, cand = np.asarray(reference, np.float32), np.asarray(candidate, np.float32)
    if ref.shape != cand.shape:
        return Comparison({}, [f"output shape {cand.shape} differs from the stored {ref.shape}"])
    allowed = float(tolerance["max_prob_diff"])
    need_top1 = float(tolerance.get("min_top1_agreement", 1.0))  # bundles written before the column: every frame
    changed = np.flatnonzero(ref.argmax(1) != cand.argmax(1))
    agreement = 1.0 - len(changed) / len(ref) if len(ref) else 1.0
    max_prob_diff = float(np.abs(softmax(ref) - softmax(cand)).max()) if ref.size else 0.0
    metrics = {
        "frames": int(len(ref)),
        "top1_same": int(len(ref) - len(changed)),
        "top1_agreement": agreement,
        "max_prob_diff": max_prob_diff,
        "max_abs_logit_diff": float(np.abs(ref - cand).max()) if ref.size else 0.0,
        "tolerance": dict(tolerance),
    }
    problems = []
    if agreement < need_top1:
        problems.append(
            f"top-1 class changed on {len(changed)} of {len(ref)} {what} frames {changed[:10].tolist()} "
            f"(agreement {agreement:.4f}, need >= {need_top1})"
        )
    if not max_prob_diff <= allowed:  # NaN fails too: a NaN output never agrees with anything
        problems.append(f"max |Δ prob| {max_prob_diff:.2e} exceeds the tolerance {allowed:.0e}")
    return Comparison(metrics, problems)


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
    what: str = "golden",
) -> Comparison:
    """Decoded boxes both ways: every box scoring >= conf looked for on the other side (same class, IoU >= MATCH_IOU
    is the same object); the tolerance's share of them must be found, and that share again at IoU >= min_iou. Scores
    are compared on those close matches, plus `score_diff_all`: the largest |Δ sigmoid score| over every anchor,
    which catches drift even when no box passes `conf`. `what` names the boxes in problems."""
    need_matched, need_iou, allowed = (float(tolerance[k]) for k in ("min_matched", "min_iou", "max_score_diff"))
    total = 0
    ious: list[float] = []
    diffs: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        for a, b in ((ref, cand), (cand, ref)):
            n, _, i, d = match_detections(a, b, conf, min_iou=MATCH_IOU)
            total, ious, diffs = total + n, ious + i, diffs + d
    close = [d for i, d in zip(ious, diffs, strict=True) if i >= need_iou]
    found = len(ious) / total if total else 1.0
    matched = len(close) / total if total else 1.0
    min_iou = float(min(ious)) if ious else 1.0
    max_diff = float(max([*close, score_diff_all]))
    metrics = {
        "frames": len(reference),
        "boxes": total // 2,
        "found": found,
        "matched": matched,
        "mean_iou": float(np.mean(ious)) if ious else 1.0,
        "min_iou": min_iou,
        "max_score_diff": max_diff,
        "tolerance": dict(tolerance),
    }
    problems = []
    if found < need_matched:
        problems.append(f"only {found:.3f} of {total // 2} {what} boxes found again (need >= {need_matched})")
    elif matched < need_matched:
        problems.append(
            f"a {what} box moved: min IoU {min_iou:.3f}; {matched:.3f} of boxes at IoU >= {need_iou} "
            f"(need >= {need_matched})"
        )
    if not max_diff <= allowed:  # NaN fails too
        problems.append(f"max |Δ score| {max_diff:.3f} exceeds the tolerance {allowed}")
    return Comparison(metrics, problems)


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
