"""Detector decoding as tables: anchors, boxes, IoU, NMS, letterbox undo, and the whole decode of one image."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from edgecam.runtime import decode
from edgecam.runtime.decode import (
    anchor_points,
    batched_nms,
    box_iou,
    decode_boxes,
    decode_detections,
    nms,
    undo_letterbox,
)
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import Letterbox, PreprocessSpec, resize_image
from tests.runtime.detect_fixtures import RawBox, encode_preds

# --- anchors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "strides", "count"),
    [
        (64, 64, (8, 16, 32), 64 + 16 + 4),
        (320, 320, (8, 16, 32), 1600 + 400 + 100),
        (96, 64, (8, 16, 32), 12 * 8 + 6 * 4 + 3 * 2),
        (64, 96, (16,), 4 * 6),
        (32, 32, (32,), 1),
    ],
)
def test_anchor_counts_and_order(height, width, strides, count):
    points, per_point = anchor_points(height, width, strides)
    assert points.shape == (count, 2) and per_point.shape == (count,)
    offset = 0
    for s in strides:
        rows, cols = height // s, width // s
        level = points[offset : offset + rows * cols]
        assert np.all(per_point[offset : offset + rows * cols] == s)
        assert tuple(level[0]) == (s / 2, s / 2)
        if cols > 1:
            assert tuple(level[1]) == (1.5 * s, s / 2)  # x moves fastest
        assert tuple(level[-1]) == ((cols - 0.5) * s, (rows - 0.5) * s)
        offset += rows * cols


def test_anchors_are_cached_and_read_only():
    first, _ = anchor_points(64, 64, [8, 16, 32])
    second, _ = anchor_points(64, 64, (8, 16, 32))
    assert first is second
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


@pytest.mark.parametrize(("height", "width", "strides"), [(64, 64, ()), (64, 64, (0, 8)), (16, 64, (8, 32))])
def test_anchor_errors(height, width, strides):
    with pytest.raises(ValueError):
        anchor_points(height, width, strides)


# --- box decoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "stride", "box"),
    [
        ((4.0, 4.0), 8, (0.0, 0.0, 8.0, 8.0)),
        ((20.0, 36.0), 8, (8.0, 20.0, 28.0, 44.0)),
        ((56.0, 24.0), 16, (36.0, 12.0, 60.0, 40.0)),
        ((16.0, 16.0), 32, (15.0, 1.0, 300.0, 17.5)),
    ],
)
def test_decode_boxes_inverts_log_distances(point, stride, box):
    px, py = point
    x1, y1, x2, y2 = box
    raw = np.log(np.array([[px - x1, py - y1, x2 - px, y2 - py]]) / stride).astype(np.float32)
    out = decode_boxes(raw, np.array([point], np.float32), np.array([stride], np.float32))
    np.testing.assert_allclose(out[0], box, rtol=1e-5, atol=1e-4)


def test_decode_boxes_clips_raw_values():
    raw = np.array([[100.0, -100.0, 8.0, -8.0]], np.float32)
    out = decode_boxes(raw, np.array([[0.0, 0.0]], np.float32), np.array([2.0], np.float32))
    big, small = math.exp(8) * 2, math.exp(-8) * 2
    np.testing.assert_allclose(out[0], (-big, -small, big, small), rtol=1e-5)


# --- IoU ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # contained
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # no area: no IoU, not NaN
    ],
)
def test_box_iou_cases(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)
    assert box_iou(np.array([b]), np.array([a]))[0, 0] == pytest.approx(expected)


def test_box_iou_shape():
    assert box_iou(np.zeros((2, 4)), np.ones((3, 4))).shape == (2, 3)
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)


# --- NMS ---------------------------------------------------------------------------------------------------

OVERLAPPING = [(0, 0, 10, 10), (1, 1, 11, 11), (50, 50, 60, 60)]  # IoU(0, 1) = 81 / 119
CHAIN = [(0, 0, 10, 10), (4, 0, 14, 10), (8, 0, 18, 10)]  # neighbours overlap (0.43), the ends barely (0.11)
AT_HALF = [(0, 0, 3, 1), (1, 0, 4, 1)]  # IoU exactly 0.5


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "expected", "expected_agnostic"),
    [
        (OVERLAPPING, [0.9, 0.8, 0.7], [0, 0, 0], 0.5, [0, 2], [0, 2]),
        (OVERLAPPING, [0.9, 0.8, 0.7], [0, 1, 0], 0.5, [0, 1, 2], [0, 2]),  # other class survives
        (OVERLAPPING, [0.7, 0.9, 0.8], [0, 0, 0], 0.5, [1, 2], [1, 2]),  # order follows score
        (OVERLAPPING, [0.9, 0.8, 0.7], [0, 0, 0], 0.7, [0, 1, 2], [0, 1, 2]),  # 0.68 < 0.7: kept
        (CHAIN, [0.9, 0.8, 0.7], [0, 0, 0], 0.3, [0, 2], [0, 2]),  # a suppressed box suppresses nothing
        (AT_HALF, [0.9, 0.8], [0, 0], 0.5, [0, 1], [0, 1]),  # IoU == threshold is kept
        (AT_HALF, [0.9, 0.8], [0, 0], 0.49, [0], [0]),
        ([(5, 5, 9, 9)], [0.1], [3], 0.5, [0], [0]),  # single box
        (np.zeros((0, 4)), [], [], 0.5, [], []),  # empty
    ],
)
def test_nms_table(boxes, scores, classes, iou, expected, expected_agnostic):
    boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)
    assert batched_nms(boxes, scores, np.asarray(classes), iou).tolist() == expected
    assert nms(boxes, scores, iou).tolist() == expected_agnostic


def test_nms_max_output_and_errors():
    boxes = np.array([(i * 20, 0, i * 20 + 10, 10) for i in range(5)], np.float32)
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.5, max_output=3).tolist() == [3, 4, 1]
    assert nms(boxes.astype(np.int64), scores, 0.5).tolist() == [3, 4, 1, 2, 0]  # integer boxes work too
    with pytest.raises(ValueError, match="must match"):
        nms(boxes, scores[:4], 0.5)
    with pytest.raises(ValueError, match="must match"):
        batched_nms(boxes, scores, np.zeros(3), 0.5)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Textbook greedy NMS, one box at a time."""
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        rivals = [k for k in keep if classes[k] == classes[i]]
        if not rivals or box_iou(boxes[i], boxes[rivals]).max() <= iou:
            keep.append(int(i))
    return keep


@pytest.mark.parametrize(
    ("n", "pairwise_limit"),
    [(40, decode.PAIRWISE_NMS_LIMIT), (600, decode.PAIRWISE_NMS_LIMIT), (120, 50)],
    ids=["pairs", "many-pairs", "loop"],
)
def test_nms_paths_agree_with_reference(n, pairwise_limit, monkeypatch):
    monkeypatch.setattr(decode, "PAIRWISE_NMS_LIMIT", pairwise_limit)
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], axis=1).astype(np.float32)
    scores, classes = rng.random(n).astype(np.float32), rng.integers(0, 3, n)
    assert batched_nms(boxes, scores, classes, 0.45).tolist() == reference_nms(boxes, scores, classes, 0.45)
    assert nms(boxes, scores, 0.45).tolist() == reference_nms(boxes, scores, np.zeros(n), 0.45)


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clusters of jittered boxes (what NMS sees), plus exact duplicates and boxes without area."""
    centres = rng.uniform(0, 300, (max(1, n // 6), 2))[rng.integers(0, max(1, n // 6), n)]
    half = rng.uniform(2, 40, (n, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1) + rng.normal(0, 3, (n, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    if n >= 4:
        boxes[rng.integers(0, n, n // 4)] = boxes[rng.integers(0, n, n // 4)]  # duplicates
        flat = rng.integers(0, n, n // 8)
        boxes[flat, 2] = boxes[flat, 0]  # zero width
    return boxes.astype(np.float32)


@pytest.mark.parametrize("seed", range(40))
def test_nms_matches_reference_on_random_boxes(seed):
    """Ties (scores on a coarse grid), duplicates, zero-area boxes, 1 to 6 classes, 0 to 300 boxes."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([0, 1, 2, 5, 30, 100, 255, 256, 257, 300]))
    boxes = random_boxes(rng, n)
    scores = np.round(rng.random(n), 1).astype(np.float32)  # many equal scores: ties by index
    classes = rng.integers(0, int(rng.integers(1, 7)), n)
    iou = float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0]))
    expected = reference_nms(boxes, scores, classes, iou)
    assert batched_nms(boxes, scores, classes, iou).tolist() == expected
    assert nms(boxes, scores, iou).tolist() == reference_nms(boxes, scores, np.zeros(n), iou)
    for k in (1, 3):
        assert batched_nms(boxes, scores, classes, iou, max_output=k).tolist() == expected[:k]


def test_nms_long_suppression_chain():
    """Each box overlaps only its neighbours: greedy keeps every other one, the case that needs most rounds."""
    n = 60
    boxes = np.array([(4.0 * i, 0, 4.0 * i + 10, 10) for i in range(n)], np.float32)  # neighbours: IoU 0.43
    scores = np.linspace(1, 0.1, n).astype(np.float32)
    assert nms(boxes, scores, 0.4).tolist() == list(range(0, n, 2))
    assert nms(boxes, scores, 0.4).tolist() == reference_nms(boxes, scores, np.zeros(n), 0.4)
    assert nms(boxes, scores[::-1].copy(), 0.4).tolist() == list(range(n - 1, -1, -2))


def test_nms_classes_never_suppress_each_other():
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (12, 1))  # twelve copies of one box
    classes = np.arange(12) % 4
    scores = np.linspace(0.9, 0.3, 12).astype(np.float32)
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0]


HW_320, STRIDES_320 = (320, 320), (8, 16, 32)


def reference_decode(preds, conf, iou, letterbox, orig_size, max_det=300):
    """decode_detections spelled out: sigmoid every score, keep > conf, decode, reference NMS, map back."""
    points, strides = anchor_points(*HW_320, STRIDES_320)
    scores = 1.0 / (1.0 + np.exp(-preds[:, 4:].astype(np.float64)))
    best, classes = scores.max(axis=1), scores.argmax(axis=1)
    idx = np.flatnonzero(best > conf)
    dist = np.exp(np.clip(preds[idx, :4].astype(np.float64), -8, 8)) * strides[idx, None]
    boxes = np.concatenate([points[idx] - dist[:, :2], points[idx] + dist[:, 2:]], axis=1)
    keep = reference_nms(boxes.astype(np.float32), best[idx].astype(np.float32), classes[idx], iou)[:max_det]
    boxes = boxes[keep]
    boxes[:, 0::2] = np.clip((boxes[:, 0::2] - letterbox.pad_x) / letterbox.scale_x, 0, orig_size[0])
    boxes[:, 1::2] = np.clip((boxes[:, 1::2] - letterbox.pad_y) / letterbox.scale_y, 0, orig_size[1])
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[visible], best[idx][keep][visible], classes[idx][keep][visible]


@pytest.mark.parametrize("seed", range(12))
def test_decode_matches_reference_on_detector_like_output(seed):
    from edgecam.bench.frame_costs import synthetic_detector_output

    preds = synthetic_detector_output(boxes=int(np.random.default_rng(seed).integers(1, 250)), seed=seed)
    letterbox, orig = Letterbox(0.25, 0.25, 0.0, 70.0), (1280, 720)
    dets = decode_detections(preds, STRIDES_320, HW_320, letterbox=letterbox, orig_size=orig)
    boxes, scores, classes = reference_decode(preds, 0.25, 0.5, letterbox, orig)
    assert dets.class_ids.tolist() == classes.tolist()
    np.testing.assert_allclose(dets.scores, scores, rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy, boxes, rtol=1e-5, atol=1e-3)


# --- letterbox undo ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_wh", "rect"),
    [
        ((90, 160), (20, 30, 70, 120)),  # portrait
        ((160, 90), (30, 10, 140, 60)),  # landscape
        ((100, 100), (0, 0, 50, 40)),  # square, touching the corner
    ],
)
def test_undo_letterbox_round_trip(frame_wh, rect):
    width, height = frame_wh
    x1, y1, x2, y2 = rect
    frame = np.zeros((height, width, 3), np.uint8)
    frame[y1:y2, x1:x2] = 255
    image, box = resize_image(frame, PreprocessSpec.square(64, resize="letterbox"))
    ys, xs = np.nonzero(image[:, :, 0] > 160)  # the rectangle; the padding is 114, the background 0
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = undo_letterbox(found, box, width, height)[0]
    np.testing.assert_allclose(back, rect, atol=1 / box.scale_x + 0.5)


@pytest.mark.parametrize(
    ("xyxy", "letterbox", "size", "expected"),
    [
        ((0, 8, 64, 56), Letterbox(0.4, 0.4, 0, 8), (160, 120), (0, 0, 160, 120)),
        ((-10, 0, 70, 64), Letterbox(0.4, 0.4, 0, 8), (160, 120), (0, 0, 160, 120)),  # clipped to the frame
        ((10, 10, 20, 20), Letterbox(2.0, 0.5, 0, 0), (100, 100), (5, 20, 10, 40)),  # stretch: per-axis scale
    ],
)
def test_undo_letterbox_table(xyxy, letterbox, size, expected):
    np.testing.assert_allclose(undo_letterbox(np.array([xyxy], np.float32), letterbox, *size)[0], expected)


# --- the whole decode --------------------------------------------------------------------------------------

HW, STRIDES, CLASSES = (64, 64), (8, 16, 32), 3
A = RawBox((8, 20, 28, 44), 0, 3.0, 8)
A_DUP = RawBox((9, 21, 29, 45), 0, 0.5, 16)  # same object, weaker, other level
A_OTHER = RawBox((9, 21, 29, 45), 2, 1.0, 16)  # same place, other class
B = RawBox((36, 12, 60, 40), 1, 2.0, 16)
WEAK = RawBox((0, 0, 30, 30), 1, -3.0, 32)
ROW = [RawBox((x, 50, x + 6, 58), 0, 0.5 + x / 10, 8) for x in (1, 17, 33, 49)]  # four disjoint boxes


@pytest.mark.parametrize(
    ("raw", "kwargs", "expected"),
    [
        ([A, B], {}, [A, B]),
        ([A, A_DUP, B, WEAK], {}, [A, B]),  # duplicate suppressed, weak box under conf
        ([A, A_DUP, B, WEAK], {"conf": 0.01}, [A, B, WEAK]),
        ([A, B], {"conf": 0.9}, [A]),
        ([A, A_OTHER, B], {}, [A, B, A_OTHER]),  # class-aware: both classes at one place
        ([A, A_OTHER, B], {"class_agnostic": True}, [A, B]),
        (ROW, {}, ROW[::-1]),
        (ROW, {"max_det": 2}, ROW[:1:-1]),
        (ROW, {"pre_nms_topk": 3}, ROW[:0:-1]),
        ([WEAK], {}, []),  # everything below conf
        ([], {}, []),
    ],
)
def test_decode_detections_table(raw, kwargs, expected):
    preds = encode_preds(raw, *HW, STRIDES, CLASSES)
    dets = decode_detections(preds, STRIDES, HW, **kwargs)
    assert len(dets) == len(expected)
    np.testing.assert_allclose(dets.xyxy, np.array([b.xyxy for b in expected]).reshape(-1, 4), atol=1e-3)
    np.testing.assert_allclose(dets.scores, [b.score for b in expected], rtol=1e-5)
    assert dets.class_ids.tolist() == [b.class_id for b in expected]
    assert dets.xyxy.dtype == np.float32 and dets.track_ids.tolist() == [-1] * len(expected)


def test_decode_detections_maps_to_the_original_frame():
    frame = np.zeros((120, 160, 3), np.uint8)
    _, box = resize_image(frame, PreprocessSpec.square(64, resize="letterbox"))
    in_padding = RawBox((40, 0, 56, 6), 1, 4.0, 8)  # wholly in the top padding band (pad_y = 8): dropped
    preds = encode_preds([A, B, in_padding], *HW, STRIDES, CLASSES)
    dets = decode_detections(preds, STRIDES, HW, letterbox=box, orig_size=(160, 120))
    s, px, py = box.scale_x, box.pad_x, box.pad_y
    assert box.scale_y == s and (px, py) == (0, 8)
    expected = [((x1 - px) / s, (y1 - py) / s, (x2 - px) / s, (y2 - py) / s) for x1, y1, x2, y2 in (A.xyxy, B.xyxy)]
    np.testing.assert_allclose(dets.xyxy, expected, atol=1e-2)
    assert dets.class_ids.tolist() == [0, 1]


def test_all_below_threshold_is_empty():
    dets = decode_detections(encode_preds([WEAK], *HW, STRIDES, CLASSES), STRIDES, HW)
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    ("shape", "kwargs", "error"),
    [
        ((84 - 4, 4 + CLASSES), {}, EdgecamError),  # anchors do not match the strides
        ((84, 4), {}, EdgecamError),  # no class columns
        ((1, 84, 4 + CLASSES), {}, EdgecamError),  # a batch, not one image
        ((84, 4 + CLASSES), {"conf": 1.5}, ValueError),
        ((84, 4 + CLASSES), {"max_det": 0}, ValueError),
    ],
)
def test_decode_detections_errors(shape, kwargs, error):
    with pytest.raises(error):
        decode_detections(np.zeros(shape, np.float32), STRIDES, HW, **kwargs)


def test_decode_is_fast_at_320():
    """About 0.2 ms on one core for 2100 anchors x 10 classes; the bound leaves room for slow CI machines."""
    rng = np.random.default_rng(0)
    preds = rng.normal(0, 0.5, (2100, 14)).astype(np.float32)
    preds[:, 4:] = rng.normal(-6, 1.5, (2100, 10))
    preds[rng.choice(2100, 50, replace=False), 4] = 2.0
    decode_detections(preds, STRIDES, (320, 320))
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        decode_detections(preds, STRIDES, (320, 320))
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.005
