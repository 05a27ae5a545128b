"""Detector outputs -> `Detections`: anchor points, box decoding, NMS, letterbox undo.

The one implementation: validation during training and the device runtime both call `decode_detections`, so a
box the trainer scores is the box the camera draws. numpy, and cv2 for one transpose.

Output contract of an exported detector: one tensor `preds` [N, A, 4 + C], raw. Anchors are the points of
feature levels with the manifest's `strides`, level by level (ascending stride), row-major inside a level; the
point of cell (x, y) sits at ((x + 0.5) * s, (y + 0.5) * s). Columns 0:4 are log-distances (l, t, r, b) in
stride units, columns 4: are class logits whose sigmoid is the (quality-aware) score.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
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
    dist = np.exp(np.minimum(np.maximum(raw_ltrb, -LOG_DISTANCE_CLIP), LOG_DISTANCE_CLIP))  # np.clip, less overhead
    dist *= strides[:, None]
    out = np.empty((dist.shape[0], 4), np.float32)
    np.subtract(points, dist[:, :2], out=out[:, :2])
    np.add(points, dist[:, 2:], out=out[:, 2:])
    return out


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


PAIRWISE_NMS_LIMIT = 1024  # up to this many boxes NMS takes all pairs at once (~40 MB at the limit); beyond, loops
_CACHED_PAIRS = 256  # the pairs of up to this many boxes stay cached (0.5 MB)
_TINY = {t: np.finfo(t).smallest_subnormal for t in (np.float32, np.float64)}


def _build_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    second = np.repeat(np.arange(n), np.arange(n))
    return np.arange(second.size) - second * (second - 1) // 2, second


@functools.lru_cache(maxsize=1)
def _cached_pairs() -> tuple[np.ndarray, np.ndarray]:
    first, second = _build_pairs(_CACHED_PAIRS)
    first.flags.writeable = second.flags.writeable = False  # shared by every call through the cache
    return first, second


def _pairs_of(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with i < j < n, column by column: (0, 1), (0, 2), (1, 2), (0, 3), ... In that order the pairs
    of n boxes are the first n (n - 1) / 2 pairs of any larger n, so one cached set serves every smaller size."""
    if n > _CACHED_PAIRS:
        return _build_pairs(n)
    first, second = _cached_pairs()
    count = n * (n - 1) // 2
    return first[:count], second[:count]


def _class_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j), i < j, with groups[i] == groups[j], for sorted `groups`, built directly: only boxes of one
    class can suppress each other, a tenth of all pairs with ten classes."""
    positions = np.arange(groups.size)
    partners = positions - np.searchsorted(groups, groups)  # earlier members of the box's group
    ends = np.cumsum(partners)
    second = np.repeat(positions, partners)
    first = np.arange(ends[-1]) - np.repeat(ends - positions, partners)
    return first, second


def _over_threshold(boxes: np.ndarray, first: np.ndarray, second: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Whether IoU(boxes[first[k]], boxes[second[k]]) > threshold for every k, with `box_iou`'s arithmetic element
    for element (boxes without area give IoU 0)."""
    table = np.empty((5, boxes.shape[0]), boxes.dtype)  # x1, y1, x2, y2, area: one gather per side for all five
    table[:4] = boxes.T
    size = table[2:4] - table[:2]
    np.maximum(size, 0, out=size)
    np.multiply(size[0], size[1], out=table[4])
    a, b = np.take(table, first, axis=1), np.take(table, second, axis=1)
    wh = np.minimum(a[2:4], b[2:4])
    wh -= np.maximum(a[:2], b[:2])
    np.maximum(wh, 0, out=wh)
    inter = wh[0] * wh[1]
    union = a[4] + b[4]
    union -= inter
    np.maximum(union, _TINY[union.dtype.type], out=union)  # 0 / 0 -> 0 / tiny = 0, no warning
    inter /= union
    return inter > iou_threshold


def _resolve(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy NMS on a suppression graph (edge k: box first[k] outranks box second[k] and overlaps it), in a few
    array rounds instead of one Python step per box. Greedy keeps a box iff no kept box suppresses it.

    Each round, an alive box without an alive suppressor is surely kept, and whatever a kept box suppresses is
    surely dropped. The best alive box that is neither has only dropped suppressors, so it is kept next round:
    rounds follow the longest suppression chain, one on typical detections (every overlap hits a kept box)."""
    alive = np.ones(n, dtype=bool)
    while True:
        kept = alive.copy()
        kept[second] = False  # every edge joins two alive boxes (see the pruning below): its target is blocked
        alive[second[kept[first]]] = False
        if np.count_nonzero(alive) == np.count_nonzero(kept):  # kept is a subset of alive: equal counts, equal sets
            return kept
        live = alive[first] & alive[second]  # an edge with a dropped end can no longer decide anything
        first, second = first[live], second[live]


def _greedy(boxes: np.ndarray, iou_threshold: float, groups: np.ndarray | None) -> np.ndarray:
    """Positions kept by greedy NMS over boxes already sorted best first; `groups` confines suppression."""
    n = boxes.shape[0]
    if n <= PAIRWISE_NMS_LIMIT:
        if groups is None:
            first, second = _pairs_of(n)
            by_class = None
        else:  # class blocks, best first inside each: positions keep the ranking within a class
            by_class = np.argsort(groups, kind="stable")
            first, second = _class_pairs(groups[by_class])
            boxes = boxes[by_class]
        over = _over_threshold(boxes, first, second, iou_threshold)
        kept = np.flatnonzero(_resolve(n, first[over], second[over]))
        return kept if by_class is None else np.sort(by_class[kept])
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
    if not scores.size:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    kept = _greedy(boxes[order], iou_threshold, None if groups is None else groups[order])
    return order[kept[:max_output]].astype(np.int64)


def undo_letterbox(xyxy: np.ndarray, letterbox: Letterbox, orig_width: float, orig_height: float) -> np.ndarray:
    """Boxes in model-input pixels -> original-frame pixels, clipped to the frame (the inverse of `resize_image`)."""
    out = np.array(xyxy, np.float32).reshape(-1, 4)
    # Per column (x1, y1, x2, y2): pad, scale, limit, in float32 as the scalars would be: the same values, one call.
    pad, scale, limit = np.array(
        [
            [letterbox.pad_x, letterbox.pad_y] * 2,
            [letterbox.scale_x, letterbox.scale_y] * 2,
            [orig_width, orig_height] * 2,
        ],
        np.float32,
    )
    out -= pad
    out /= scale
    np.maximum(out, 0, out=out)
    np.minimum(out, limit, out=out)
    return out


def _best_logit(logits: np.ndarray) -> np.ndarray:
    """Row maxima of a narrow (A, C) matrix. numpy's max(axis=1) crawls over short rows; a transposed copy
    (cv2, float32) reduced over its long rows, or a column-by-column maximum, is 5-15x faster."""
    if logits.dtype == np.float32:
        return cv2.transpose(logits).max(axis=0)
    best = logits[:, 0].copy()
    for c in range(1, logits.shape[1]):
        np.maximum(best, logits[:, c], out=best)
    return best


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
    are decoded, so the cost follows the number of candidates, not of anchors. Anchors with NaN or inf in their
    row never give a box (`decode_detections_counted` also says how many there were).
    """
    detections, _ = decode_detections_counted(
        preds, strides, input_hw, conf, iou, max_det, letterbox, orig_size, pre_nms_topk, class_agnostic
    )
    return detections


def _as_float(preds: np.ndarray) -> np.ndarray:
    """float32 / float64 as they are; any other dtype (float16, integers) as float32; non-numbers are an error."""
    preds = np.asarray(preds)
    if preds.dtype in (np.float32, np.float64):
        return preds
    if preds.dtype.kind not in "fiub":
        raise EdgecamError(f"detector output has dtype {preds.dtype}, not a number", fix="re-export the model")
    return preds.astype(np.float32)


def decode_detections_counted(
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
) -> tuple[Detections, int]:
    """`decode_detections` and the number of anchors dropped for NaN / inf: a NaN class logit (the row's best
    is then NaN, never a candidate) or a non-finite value in a candidate's row. Only candidates' rows are checked
    in full, so the check costs one pass over the best logits, not over the whole output."""
    if not (0.0 <= conf <= 1.0 and 0.0 <= iou <= 1.0) or max_det < 1 or pre_nms_topk < 1:
        raise ValueError(f"need 0 <= conf, iou <= 1 and max_det, pre_nms_topk >= 1; got {conf}, {iou}, {max_det}")
    preds = _as_float(preds)
    points, point_strides = anchor_points(input_hw[0], input_hw[1], strides)
    if preds.ndim != 2 or preds.shape[0] != points.shape[0] or preds.shape[1] < 5:
        raise EdgecamError(
            f"detector output has shape {preds.shape}, expected ({points.shape[0]}, 4 + classes) for a "
            f"{input_hw[0]}x{input_hw[1]} input with strides {list(strides)}",
            fix="check the bundle's detect.strides and input size, or re-export the model",
        )
    logits = preds[:, 4:]
    best = _best_logit(logits)
    dropped = int(np.count_nonzero(np.isnan(best)))  # any NaN logit makes the row's maximum NaN
    # Threshold in logit space (sigmoid is monotonic) with a little slack; the exact test follows on few rows.
    candidates = np.flatnonzero(best > _logit(conf) - 1e-4)
    scores = best[candidates]
    if scores.dtype != np.float32:  # clipped before the cast: a float64 beyond float32's range would warn
        scores = np.clip(scores, -50, 50)
    scores = scores.astype(np.float32)  # sigmoid in float32, in place: 1 / (1 + exp(-clip(x, -50, 50)))
    np.maximum(scores, -50, out=scores)
    np.minimum(scores, 50, out=scores)
    np.negative(scores, out=scores)
    np.exp(scores, out=scores)
    scores += 1.0
    np.reciprocal(scores, out=scores)
    passing = scores > conf
    if not passing.all():
        candidates, scores = candidates[passing], scores[passing]
    if candidates.size > pre_nms_topk:
        top = np.argpartition(-scores, pre_nms_topk)[:pre_nms_topk]
        candidates, scores = candidates[top], scores[top]
    rows = preds[candidates]  # one gather of the few candidate rows, then views of it
    finite = np.isfinite(rows).all(axis=1)  # an inf logit passes any threshold; NaN / inf box distances
    if not finite.all():
        dropped += int(np.count_nonzero(~finite))
        candidates, scores, rows = candidates[finite], scores[finite], rows[finite]
    if not candidates.size:
        return Detections.empty(), dropped
    class_ids = rows[:, 4:].argmax(axis=1)
    boxes = decode_boxes(rows[:, :4], points[candidates], point_strides[candidates])
    groups = None if class_agnostic else class_ids
    keep = _sorted_nms(boxes, scores, groups, iou, max_det)
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    if letterbox is not None:
        width, height = orig_size if orig_size is not None else (math.inf, math.inf)
        boxes = undo_letterbox(boxes, letterbox, width, height)
    else:
        width, height = orig_size if orig_size is not None else (input_hw[1], input_hw[0])
        np.maximum(boxes, 0, out=boxes)
        np.minimum(boxes, np.array([width, height] * 2, np.float32), out=boxes)
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # wholly in the padding or off-frame
    if not visible.all():
        boxes, scores, class_ids = boxes[visible], scores[visible], class_ids[visible]
    return Detections(boxes, scores, class_ids), dropped
