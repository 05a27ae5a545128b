"""Detector outputs -> `Detections`: anchor points, box decoding, NMS, letterbox undo.

The one implementation: validation during training and the device runtime both call `decode_detections`, so a
box the trainer scores is the box the camera draws. Pure numpy.

Output contract of an exported detector: one tensor `preds` [N, A, 4 + C], raw. Anchors are the points of
feature levels with the manifest's `strides`, level by level (ascending stride), row-major inside a level; the
point of cell (x, y) sits at ((x + 0.5) * s, (y + 0.5) * s). Columns 0:4 are log-distances (l, t, r, b) in
stride units, columns 4: are class logits whose sigmoid is the (quality-aware) score.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import Letterbox
from edgecam.runtime.types import Detections

LOG_DISTANCE_CLIP = 8.0  # exp(8) strides: far beyond any image, yet never overflows


@functools.lru_cache(maxsize=32)
def _anchor_points(height: int, width: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    points, per_point = [], []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(height // s), np.arange(width // s), indexing="ij")  # y outer, x inner
        points.append(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * s + s / 2)
        per_point.append(np.full(xs.size, s, dtype=np.float32))
    pts, stride_arr = np.concatenate(points), np.concatenate(per_point)
    pts.flags.writeable = False  # shared by every call through the cache
    stride_arr.flags.writeable = False
    return pts, stride_arr


def anchor_points(height: int, width: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres (A, 2) as (x, y) in model-input pixels and the stride of each (A,); cached, read-only."""
    key = tuple(int(s) for s in strides)
    if not key or min(key) <= 0:
        raise ValueError(f"strides must be positive integers, got {list(strides)}")
    if height < max(key) or width < max(key):
        raise ValueError(f"input {height}x{width} is smaller than the largest stride {max(key)}")
    return _anchor_points(int(height), int(width), key)


def decode_boxes(raw_ltrb: np.ndarray, points: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Raw log-distances (A, 4) at `points` (A, 2) with `strides` (A,) -> xyxy boxes (A, 4) float32."""
    dist = np.exp(np.clip(raw_ltrb, -LOG_DISTANCE_CLIP, LOG_DISTANCE_CLIP)) * strides[:, None]
    return np.concatenate([points - dist[:, :2], points + dist[:, 2:]], axis=1).astype(np.float32, copy=False)


def box_area(xyxy: np.ndarray) -> np.ndarray:
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4) -> (N, M); boxes without area give 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


MATRIX_NMS_LIMIT = 1024  # up to this many boxes, NMS builds the full IoU matrix (4 MB); beyond, it loops
SPLIT_CLASSES_ABOVE = 256  # class-aware NMS on more boxes than this runs class by class


def _pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU matrix of one set of boxes with itself: outer products on columns, in place (the hot path of NMS)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    inter = np.minimum.outer(x2, x2)
    inter -= np.maximum.outer(x1, x1)
    np.maximum(inter, 0, out=inter)
    h = np.minimum.outer(y2, y2)
    h -= np.maximum.outer(y1, y1)
    np.maximum(h, 0, out=h)
    inter *= h
    union = np.add.outer(area, area)
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _greedy(boxes: np.ndarray, iou_threshold: float, groups: np.ndarray | None) -> np.ndarray:
    """Positions kept by greedy NMS over boxes already sorted best first; `groups` confines suppression."""
    n = boxes.shape[0]
    if n <= MATRIX_NMS_LIMIT:
        over = np.triu(_pairwise_iou(boxes) > iou_threshold, k=1)  # over[i, j]: i outranks j and overlaps it
        if groups is not None:
            over &= groups[:, None] == groups[None, :]
        suppressed = np.zeros(n, dtype=bool)
        # Only rows that overlap something can suppress; their status is final when reached (upper triangle).
        for i in np.flatnonzero(over.any(axis=1)):
            if not suppressed[i]:
                suppressed |= over[i]
        return np.flatnonzero(~suppressed)
    keep, order = [], np.arange(n)  # memory stays O(n) for very large inputs
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iou = box_iou(boxes[i], boxes[rest])[0]
        drop = iou > iou_threshold
        if groups is not None:
            drop &= groups[rest] == groups[i]
        order = rest[~drop]
    return np.asarray(keep, dtype=np.int64)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_output: int | None = None) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first. A box is dropped when IoU > threshold (not ==)."""
    return _sorted_nms(xyxy, scores, None, iou_threshold, max_output)


def batched_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_output: int | None = None,
) -> np.ndarray:
    """NMS within each class only: boxes of different classes never suppress each other."""
    return _sorted_nms(xyxy, scores, np.asarray(class_ids).reshape(-1), iou_threshold, max_output)


def _sorted_nms(
    xyxy: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, iou_threshold: float, max_output: int | None
) -> np.ndarray:
    boxes = np.asarray(xyxy).reshape(-1, 4)
    if boxes.dtype != np.float32:
        boxes = boxes.astype(np.float64)  # integer boxes would make the in-place IoU arithmetic integer
    scores = np.asarray(scores).reshape(-1)
    if boxes.shape[0] != scores.shape[0] or (groups is not None and groups.shape[0] != scores.shape[0]):
        raise ValueError(f"{boxes.shape[0]} boxes, {scores.shape[0]} scores and class ids must match")
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    if groups is None:
        kept = _greedy(boxes, iou_threshold, None)
    elif len(order) <= SPLIT_CLASSES_ABOVE:
        kept = _greedy(boxes, iou_threshold, groups[order])
    else:  # many boxes: one small matrix per class costs far less than one big matrix
        groups = groups[order]
        parts = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        kept = np.sort(np.concatenate([part[_greedy(boxes[part], iou_threshold, None)] for part in parts]))
    return order[kept[:max_output]].astype(np.int64)


def undo_letterbox(xyxy: np.ndarray, letterbox: Letterbox, orig_width: float, orig_height: float) -> np.ndarray:
    """Boxes in model-input pixels -> original-frame pixels, clipped to the frame (the inverse of `resize_image`)."""
    out = np.asarray(xyxy, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - letterbox.pad_x) / letterbox.scale_x, 0, orig_width)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - letterbox.pad_y) / letterbox.scale_y, 0, orig_height)
    return out


def _logit(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log(p / (1 - p))


def decode_detections(
    preds: np.ndarray,
    strides: Sequence[int],
    input_hw: tuple[int, int],
    conf: float = 0.25,
    iou: float = 0.5,
    max_det: int = 300,
    letterbox: Letterbox | None = None,
    orig_size: tuple[int, int] | None = None,
    pre_nms_topk: int = 1000,
    class_agnostic: bool = False,
) -> Detections:
    """One image's raw `preds` (A, 4 + C) -> Detections, best first.

    Boxes are in original-frame pixels when `letterbox` is given (clipped to `orig_size` = (width, height)),
    else in model-input pixels clipped to `orig_size` or the input. Only anchors whose best class passes `conf`
    are decoded, so the cost follows the number of candidates, not of anchors.
    """
    if not (0.0 <= conf <= 1.0 and 0.0 <= iou <= 1.0) or max_det < 1 or pre_nms_topk < 1:
        raise ValueError(f"need 0 <= conf, iou <= 1 and max_det, pre_nms_topk >= 1; got {conf}, {iou}, {max_det}")
    preds = np.asarray(preds)
    points, point_strides = anchor_points(input_hw[0], input_hw[1], strides)
    if preds.ndim != 2 or preds.shape[0] != points.shape[0] or preds.shape[1] < 5:
        raise EdgecamError(
            f"detector output has shape {preds.shape}, expected ({points.shape[0]}, 4 + classes) for a "
            f"{input_hw[0]}x{input_hw[1]} input with strides {list(strides)}",
            fix="check the bundle's detect.strides and input size, or re-export the model",
        )
    logits = preds[:, 4:]
    best = logits[:, 0].copy()
    for c in range(1, logits.shape[1]):  # column by column: ~5x faster than max(axis=1) on a narrow matrix
        np.maximum(best, logits[:, c], out=best)
    # Threshold in logit space (sigmoid is monotonic) with a little slack; the exact test follows on few rows.
    candidates = np.flatnonzero(best > _logit(conf) - 1e-4)
    scores = 1.0 / (1.0 + np.exp(-np.clip(best[candidates], -50, 50, dtype=np.float32)))
    passing = scores > conf
    candidates, scores = candidates[passing], scores[passing]
    if not candidates.size:
        return Detections.empty()
    if candidates.size > pre_nms_topk:
        top = np.argpartition(-scores, pre_nms_topk)[:pre_nms_topk]
        candidates, scores = candidates[top], scores[top]
    class_ids = logits[candidates].argmax(axis=1)
    boxes = decode_boxes(preds[candidates, :4], points[candidates], point_strides[candidates])
    groups = None if class_agnostic else class_ids
    keep = _sorted_nms(boxes, scores, groups, iou, max_det)
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    if letterbox is not None:
        width, height = orig_size if orig_size is not None else (math.inf, math.inf)
        boxes = undo_letterbox(boxes, letterbox, width, height)
    else:
        width, height = orig_size if orig_size is not None else (input_hw[1], input_hw[0])
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # wholly in the padding or off-frame
    return Detections(boxes[visible], scores[visible], class_ids[visible])
