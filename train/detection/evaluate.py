"""COCO-style detection metrics via pycocotools, so our numbers match what papers and other tools report."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Detections
from edgecam.train.detection.samples import DetSample

MAX_DETS = 100  # COCO's per-image cap; the largest of maxDets [1, 10, 100]


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _check_classes(class_ids: np.ndarray, n_classes: int, what: str, index: int) -> None:
    bad = class_ids[(class_ids < 0) | (class_ids >= n_classes)]
    if len(bad):
        raise EdgecamError(
            f"{what} of image {index} has class id {int(bad[0])} outside 0..{n_classes - 1}",
            fix="evaluate with the class names the model was trained on",
        )


def _build_gt(samples: Sequence[DetSample], class_names: Sequence[str]) -> COCO:
    images, annotations = [], []
    for i, sample in enumerate(samples):
        _check_classes(sample.classes, len(class_names), "ground truth", i)
        images.append(
            {"id": i, "width": int(sample.width), "height": int(sample.height), "file_name": str(sample.path)}
        )
        for box, cls in zip(_xywh(sample.xyxy), sample.classes, strict=True):
            # ids start at 1: COCOeval treats a match with annotation id 0 as "unmatched"
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": int(cls) + 1, "bbox": box.tolist()}
            annotations.append({**ann, "area": float(box[2] * box[3]), "iscrowd": 0})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    gt.createIndex()
    return gt


def _build_dt(gt: COCO, predictions: Sequence[Detections], n_classes: int) -> tuple[COCO, int]:
    results = []
    for i, det in enumerate(predictions):
        _check_classes(det.class_ids, n_classes, "predictions", i)
        keep = np.argsort(-det.scores, kind="stable")[:MAX_DETS]
        for box, score, cls in zip(_xywh(det.xyxy[keep]), det.scores[keep], det.class_ids[keep], strict=True):
            results.append({"image_id": i, "category_id": int(cls) + 1, "bbox": box.tolist(), "score": float(score)})
    if results:
        return gt.loadRes(results), len(results)
    # loadRes cannot take an empty list; an empty result set still evaluates to zeros
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "annotations": [], "categories": gt.dataset["categories"]}
    dt.createIndex()
    return dt, 0


def _stat(value: float) -> float | None:
    return None if value < 0 else float(value)


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def coco_evaluate(
    samples: Sequence[DetSample], predictions: Sequence[Detections], class_names: Sequence[str]
) -> dict[str, Any]:
    """COCO bbox mAP plus per-class AP/recall and PR curves; metrics pycocotools leaves undefined (-1) become None.

    Image ids are sample indices and category ids are class id + 1. Each image keeps its top-100 predictions by score
    (COCO's cap), so `n_pred` counts the predictions actually evaluated.
    """
    if len(samples) != len(predictions):
        raise EdgecamError(f"{len(predictions)} prediction sets for {len(samples)} images", fix="predict every image")
    if not class_names:
        raise EdgecamError("no class names to evaluate")
    names = [str(n) for n in class_names]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _build_gt(samples, names)
        dt, n_pred = _build_dt(gt, predictions, len(names))
        coco_eval = COCOeval(gt, dt, "bbox")
        coco_eval.params.maxDets = [1, 10, MAX_DETS]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats
    # precision: [iou thresholds, recall grid, class, area range, maxDets]; area 0 = all, maxDets 2 = 100
    precision = coco_eval.eval["precision"][:, :, :, 0, 2]
    recall = coco_eval.eval["recall"][:, :, 0, 2]
    gt_counts = np.bincount(
        np.concatenate([s.classes for s in samples]) if samples else np.zeros(0, np.int64), minlength=len(names)
    )
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[float] | None] = {}
    for k, name in enumerate(names):
        has_gt = bool(gt_counts[k])
        per_class[name] = {
            "ap50": _mean_valid(precision[0, :, k]) if has_gt else None,
            "ap50_95": _mean_valid(precision[:, :, k]) if has_gt else None,
            "recall50": _stat(recall[0, k]) if has_gt else None,
            "gt": int(gt_counts[k]),
        }
        curves[name] = precision[0, :, k].tolist() if has_gt else None
    return {
        "map50_95": _stat(stats[0]),
        "map50": _stat(stats[1]),
        "map75": _stat(stats[2]),
        "ap_small": _stat(stats[3]),
        "ap_medium": _stat(stats[4]),
        "ap_large": _stat(stats[5]),
        "per_class": per_class,
        "n_images": len(samples),
        "n_gt": int(gt_counts.sum()),
        "n_pred": n_pred,
        "pr_curves": {"recall": coco_eval.params.recThrs.tolist(), "precision": curves},
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_detection_report(report: dict[str, Any]) -> str:
    """A short table for the terminal and the training log; '-' marks a metric with no ground truth behind it."""
    lines = [
        f"images {report['n_images']}  ground truth {report['n_gt']}  predictions {report['n_pred']}",
        f"mAP50 {_fmt(report['map50'])}  mAP50-95 {_fmt(report['map50_95'])}  mAP75 {_fmt(report['map75'])}",
        f"AP small {_fmt(report['ap_small'])}  medium {_fmt(report['ap_medium'])}  large {_fmt(report['ap_large'])}",
    ]
    width = max([5, *(len(n) for n in report["per_class"])])
    lines.append(f"{'class':<{width}}  {'AP50':>6}  {'AP50-95':>7}  {'recall':>6}  {'gt':>5}")
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}  {_fmt(row['ap50']):>6}  {_fmt(row['ap50_95']):>7}  {_fmt(row['recall50']):>6}"
            f"  {row['gt']:>5}"
        )
    return "\n".join(lines)


def plot_pr_curves(report: dict[str, Any], path: str | Path) -> Path:
    """Precision-recall at IoU 0.5 per class and their mean, to show where each class loses precision."""
    from matplotlib.figure import Figure  # the train extra: `edgecam val` on a device needs no plotting

    path = Path(path)
    recall = np.asarray(report["pr_curves"]["recall"])
    curves = {n: np.asarray(p) for n, p in report["pr_curves"]["precision"].items() if p is not None}
    fig = Figure(figsize=(7, 5))  # no pyplot: no global backend state, safe off the main thread
    ax = fig.subplots()
    for name, prec in curves.items():
        ax.plot(recall, prec, linewidth=1, label=f"{name} {_fmt(report['per_class'][name]['ap50'])}")
    if curves:
        mean = np.mean(list(curves.values()), axis=0)
        ax.plot(recall, mean, color="black", linewidth=2.5, label=f"all {_fmt(report['map50'])}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (IoU 0.5), legend: AP50")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
