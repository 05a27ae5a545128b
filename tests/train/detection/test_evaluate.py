"""Tests for COCO detection metrics: every expected value is worked out by hand from the boxes below.

pycocotools' AP is the mean over 101 recall thresholds (0.00, 0.01, ..., 1.00) of the precision interpolated as
"best precision at this recall or higher"; a threshold beyond the highest recall reached gets 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Detections
from edgecam.train.detection.evaluate import coco_evaluate, format_detection_report, plot_pr_curves
from edgecam.train.detection.samples import DetSample

NAMES = ("a", "b", "c")
# 40x40 boxes: area 1600 is COCO "medium" (32^2 < area <= 96^2), far apart so they never overlap
A = [10, 10, 50, 50]
B = [100, 10, 140, 50]
C = [200, 10, 240, 50]
SMALL = [300, 300, 320, 320]  # 20x20 = 400 < 32^2
LARGE = [400, 100, 520, 220]  # 120x120 = 14400 > 96^2

# Shift a 40-wide box along x by dx: IoU = (40 - dx) * 40 / ((40 + dx) * 40) = (40 - dx) / (40 + dx).
# IoU 0.63 sits between the COCO thresholds 0.60 and 0.65, away from float ties on the grid.
IOU = 0.63
DX = 40 * (1 - IOU) / (1 + IOU)
A_SHIFTED = [A[0] + DX, A[1], A[2] + DX, A[3]]


def _gt(*boxes_and_classes: tuple[list[float], int]) -> DetSample:
    boxes = [b for b, _ in boxes_and_classes]
    return DetSample(
        Path("img.jpg"), 640, 480, np.array(boxes, np.float32).reshape(-1, 4), [c for _, c in boxes_and_classes]
    )


def _pred(*rows: tuple[list[float], float, int]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def _ap(levels: list[tuple[float, float]]) -> float:
    """AP from (max recall, precision) steps: thresholds r <= max recall of a step (and above the previous) count."""
    thresholds = np.linspace(0, 1, 101)
    total, previous = 0.0, -1.0
    for recall, precision in levels:
        total += precision * np.count_nonzero((thresholds > previous) & (thresholds <= recall))
        previous = recall
    return total / 101


PERFECT_GT = [_gt((A, 0), (B, 1)), _gt((C, 0)), _gt()]
PERFECT_PRED = [_pred((A, 0.9, 0), (B, 0.8, 1)), _pred((C, 0.7, 0)), _pred()]

CASES = {
    "perfect": (
        PERFECT_GT,
        PERFECT_PRED,
        {"map50": 1.0, "map50_95": 1.0, "map75": 1.0, "a.ap50": 1.0, "a.recall50": 1.0, "b.ap50_95": 1.0},
    ),
    # matched at IoU 0.50, 0.55, 0.60 (3 of the 10 thresholds), missed from 0.65 up
    "shifted_iou_0.63": ([_gt((A, 0))], [_pred((A_SHIFTED, 0.9, 0))], {"map50": 1.0, "map75": 0.0, "map50_95": 0.3}),
    # 3 objects, the 2 found are ranked first at precision 1: recall 2/3, thresholds 0.00..0.66 score 1 -> 67/101
    "missed_object": (
        [_gt((A, 0), (B, 0), (C, 0))],
        [_pred((A, 0.9, 0), (B, 0.8, 0))],
        {"a.recall50": 2 / 3, "a.ap50": 67 / 101, "a.ap50_95": 67 / 101, "map50": 67 / 101, "a.gt": 3},
    ),
    # a predicted as b and b as a: both classes have one object and only a false positive
    "wrong_class": (
        [_gt((A, 0), (B, 1))],
        [_pred((A, 0.9, 1), (B, 0.8, 0))],
        {"a.ap50": 0.0, "b.ap50": 0.0, "a.recall50": 0.0, "b.recall50": 0.0, "map50": 0.0},
    ),
    # ranked TP, FP (duplicate on A), TP, TP: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1;
    # interpolated: 1 up to recall 1/3, then 3/4 up to recall 1
    "duplicate": (
        [_gt((A, 0), (B, 0), (C, 0))],
        [_pred((A, 0.9, 0), (A, 0.8, 0), (B, 0.7, 0), (C, 0.6, 0))],
        {"a.recall50": 1.0, "a.ap50": _ap([(1 / 3, 1.0), (1.0, 0.75)]), "n_pred": 4},
    ),
    "no_predictions": (
        PERFECT_GT,
        [_pred(), _pred(), _pred()],
        {"map50": 0.0, "map50_95": 0.0, "a.ap50": 0.0, "a.recall50": 0.0, "b.ap50": 0.0, "n_pred": 0, "n_gt": 3},
    ),
    # COCO averages over classes with ground truth only: c's false positive changes nothing but c's row
    "class_without_gt": (
        [_gt((A, 0))],
        [_pred((A, 0.9, 0), (B, 0.8, 2))],
        {"map50": 1.0, "c.ap50": None, "c.ap50_95": None, "c.recall50": None, "c.gt": 0, "b.ap50": None},
    ),
    # the small object is found, the large one missed, there is no medium object
    "size_buckets": (
        [_gt((SMALL, 0), (LARGE, 0))],
        [_pred((SMALL, 0.9, 0))],
        {"ap_small": 1.0, "ap_large": 0.0, "ap_medium": None, "a.recall50": 0.5},
    ),
    # 100 better-scored boxes of b fill the per-image cap, so a's correct box (ranked 101st) is never evaluated
    "top_100_per_image": (
        [_gt((A, 0), (B, 1))],
        [_pred(*[(SMALL, 0.99 - i * 0.001, 1) for i in range(100)], (A, 0.5, 0))],
        {"a.recall50": 0.0, "a.ap50": 0.0, "n_pred": 100},
    ),
}


def _lookup(report: dict, key: str):
    if "." not in key:
        return report[key]
    name, metric = key.split(".")
    return report["per_class"][name][metric]


@pytest.mark.parametrize(("gt", "pred", "expected"), CASES.values(), ids=CASES.keys())
def test_coco_evaluate(gt: list[DetSample], pred: list[Detections], expected: dict) -> None:
    report = coco_evaluate(gt, pred, NAMES)
    for key, value in expected.items():
        got = _lookup(report, key)
        if value is None:
            assert got is None, key
        else:
            assert got == pytest.approx(value, abs=1e-6), key
    json.dumps(report)  # the report goes into JSON training logs as is


def test_shift_gives_the_intended_iou() -> None:
    inter = (A[2] - A_SHIFTED[0]) * (A[3] - A[1])
    union = 2 * 40 * 40 - inter
    assert inter / union == pytest.approx(IOU)


def test_pr_curve_and_counts() -> None:
    report = coco_evaluate(PERFECT_GT, PERFECT_PRED, NAMES)
    curves = report["pr_curves"]
    assert len(curves["recall"]) == 101 and curves["recall"][0] == 0.0 and curves["recall"][-1] == 1.0
    assert curves["precision"]["a"] == pytest.approx([1.0] * 101)
    assert curves["precision"]["c"] is None
    assert (report["n_images"], report["n_gt"], report["n_pred"]) == (3, 3, 3)
    assert report["per_class"]["a"]["gt"] == 2 and report["per_class"]["b"]["gt"] == 1


@pytest.mark.parametrize(
    ("gt", "pred", "match"),
    [
        ([_gt((A, 0))], [], "prediction sets"),
        ([_gt((A, 3))], [_pred()], "class id 3"),
        ([_gt((A, 0))], [_pred((A, 0.9, 5))], "class id 5"),
    ],
    ids=["length_mismatch", "gt_class_out_of_range", "pred_class_out_of_range"],
)
def test_coco_evaluate_errors(gt: list[DetSample], pred: list[Detections], match: str) -> None:
    with pytest.raises(EdgecamError, match=match):
        coco_evaluate(gt, pred, NAMES)


def test_format_detection_report() -> None:
    text = format_detection_report(coco_evaluate(PERFECT_GT, PERFECT_PRED, NAMES))
    assert "mAP50 1.000" in text and "mAP50-95 1.000" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[4:]}
    assert rows["a"] == ["a", "1.000", "1.000", "1.000", "2"]
    assert rows["c"] == ["c", "-", "-", "-", "0"]


def test_plot_pr_curves(tmp_path: Path) -> None:
    report = coco_evaluate(
        [_gt((A, 0), (B, 0), (C, 0)), _gt((A, 1))], [_pred((A, 0.9, 0), (A, 0.8, 0), (B, 0.7, 0)), _pred()], NAMES
    )
    out = plot_pr_curves(report, tmp_path / "pr.png")
    assert out == tmp_path / "pr.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5_000
