"""Tracking quality of a run (MOTA, IDF1, ID switches) against a street video's boxes with ids, via py-motmetrics.

`edgecam score-events ... --tracks`. motmetrics is in the `bench` extra, not the device install. Only frames the run
wrote are scored (a stride or a frame limit skips the others); only boxes with a `track_id` are the tracker's output.
A run box matches a truth box of the same class with IoU >= `iou`; the distance given to motmetrics is 1 - IoU, so
its MOTP is 1 - mean IoU (reported as `mean_iou`). The IoU matrix is computed here: motmetrics 1.4's own helper
calls `np.asfarray`, which NumPy 2 removed.

A truth box less than `MIN_VISIBLE` visible (the truth's `visible`: a vehicle in front hides it) is a don't-care
region, as in the MOT challenges: it is no miss when nothing finds it, and a run box on it that matches no other
truth box is no false positive. Switches across the hidden stretch still count, as the id comes back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scoring import load_truth

METRICS = {
    "mota": "mota",
    "idf1": "idf1",
    "id_switches": "num_switches",
    "precision": "precision",
    "recall": "recall",
    "false_positives": "num_false_positives",
    "misses": "num_misses",
    "mostly_tracked": "mostly_tracked",
    "truth_ids": "num_unique_objects",
    "frames": "num_frames",
    "motp": "motp",
}
RATIOS = ("mota", "idf1", "precision", "recall", "motp")
MIN_VISIBLE = 0.3


def iou_distances(truth: np.ndarray, run: np.ndarray, same_class: np.ndarray, iou: float) -> np.ndarray:
    """1 - IoU for every (truth, run) pair of xyxy boxes; NaN (no match possible) below `iou` or across classes."""
    if not len(truth) or not len(run):
        return np.empty((len(truth), len(run)))
    lt = np.maximum(truth[:, None, :2], run[None, :, :2])
    rb = np.minimum(truth[:, None, 2:], run[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda b: np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(truth)[:, None] + area(run)[None, :] - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where((overlap >= iou) & same_class, 1.0 - overlap, np.nan)


def _run_boxes(path: Path) -> dict[int, list[tuple[int, str | None, list[float]]]]:
    """frame index -> [(track id, label, xyxy)] of the tracked boxes in a run's JSONL."""
    fix = "give the JSON lines of a detection run with a tracker (a security camera's jsonl sink)"
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecamError(f"cannot read the run: {exc}", path=path, fix="check the path") from None
    frames: dict[int, list[tuple[int, str | None, list[float]]]] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            boxes = frames.setdefault(int(record["frame"]), [])
            for r in record.get("results", []):
                if isinstance(r, dict) and "track_id" in r:
                    xyxy = [float(v) for v in r["xyxy"]]
                    if len(xyxy) != 4 or not all(math.isfinite(v) for v in xyxy):
                        raise ValueError("xyxy")
                    boxes.append((int(r["track_id"]), r.get("label"), xyxy))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise EdgecamError(f"line {n}: not a frame record with boxes", path=path, fix=fix) from None
    return frames


def score_tracks(events_path: Path, truth_path: Path, iou: float = 0.5) -> dict[str, Any]:
    """MOTA, IDF1, ID switches and friends of the run's tracks against the truth's boxes with ids."""
    try:
        import motmetrics as mm
    except ImportError:
        raise EdgecamError("tracking scores need py-motmetrics", fix="pip install 'edgecam[bench]'") from None
    if not 0 < iou <= 1:
        raise EdgecamError(f"--iou {iou} is not in (0, 1]", fix="e.g. --iou 0.5")
    truth = load_truth(truth_path)
    if truth["scene"] != "street" or truth.get("ids") is None:
        raise EdgecamError(
            "tracking needs a street truth with box ids (version 2)", path=truth_path, fix="edgecam data video"
        )
    run = _run_boxes(events_path)
    visible = truth.get("visible") or [[1.0] * len(b) for b in truth["boxes"]]
    acc = mm.MOTAccumulator(auto_id=True)
    ignored = 0
    try:
        for f, (boxes, ids, seen) in enumerate(zip(truth["boxes"], truth["ids"], visible, strict=True)):
            if f not in run:
                continue  # the run skipped this frame
            keep = [k for k, v in enumerate(seen) if float(v) >= MIN_VISIBLE]
            hidden = [k for k in range(len(boxes)) if float(seen[k]) < MIN_VISIBLE]
            gt_all = np.array([[float(v) for v in b[:4]] for b in boxes]).reshape(-1, 4)
            hyp_all = np.array([b[2] for b in run[f]]).reshape(-1, 4)
            same = np.array([[h[1] in (None, b[4]) for h in run[f]] for b in boxes], bool)
            d_all = iou_distances(gt_all, hyp_all, same.reshape(len(gt_all), len(hyp_all)), iou)
            hits = ~np.isnan(d_all)
            on_kept, on_hidden = hits[keep].any(axis=0), hits[hidden].any(axis=0)
            use = [j for j in range(len(hyp_all)) if on_kept[j] or not on_hidden[j]]
            ignored += len(hyp_all) - len(use)
            acc.update([int(ids[k]) for k in keep], [run[f][j][0] for j in use], d_all[np.ix_(keep, use)])
    except (ValueError, TypeError, IndexError) as exc:
        raise EdgecamError(f"malformed ground truth ({exc})", path=truth_path, fix="edgecam data video") from None
    if not acc.events.size:
        raise EdgecamError("the run and the truth share no frames", path=events_path, fix="score the run of this video")
    summary = mm.metrics.create().compute(acc, metrics=list(METRICS.values()), name="run")
    out: dict[str, Any] = {}
    for key, name in METRICS.items():
        value = float(summary[name].iloc[0])
        out[key] = None if math.isnan(value) else round(value, 4) if key in RATIOS else int(value)
    motp = out.pop("motp")
    out["mean_iou"] = None if motp is None else round(1.0 - motp, 4)
    out["iou"] = iou
    out["ignored_boxes"] = ignored  # run boxes on hidden truth boxes (don't-care)
    return out


def format_tracks(t: dict[str, Any]) -> str:
    return (
        f"tracking (IoU >= {t['iou']}): MOTA {t['mota']}, IDF1 {t['idf1']}, {t['id_switches']} ID switches, "
        f"{t['false_positives']} FP / {t['misses']} missed boxes, {t['mostly_tracked']} of {t['truth_ids']} ids "
        f"mostly tracked, mean IoU {t['mean_iou']} over {t['frames']} frames"
    )
