"""What differs between exporting a classifier and a detector: frames, outputs, parity and metrics.

The bundle writer drives either through the same four calls, so parity and per-variant metrics are computed the
same way for every engine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.export.det_parity import compare_detections
from edgecam.export.parity import compare_logits
from edgecam.runtime.imagefolder import load_images, scan
from edgecam.runtime.metrics import classification_report
from edgecam.runtime.preprocess import PreprocessSpec, preprocess_batch
from edgecam.runtime.types import Detections

Infer = Callable[[np.ndarray], np.ndarray]


def run_batches(fn: Infer, batch: np.ndarray, size: int = 32) -> np.ndarray:
    return np.concatenate([np.asarray(fn(batch[i : i + size])) for i in range(0, len(batch), size)])


def _random_frames(spec: PreprocessSpec, n: int) -> list[np.ndarray]:
    print("warning: no --data and the checkpoint's data is gone: parity runs on random frames", file=sys.stderr)
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8) for _ in range(n)]


class ClassifyTask:
    output_names = ["logits"]

    def __init__(self, class_names: tuple[str, ...], spec: PreprocessSpec, meta: dict[str, Any]):
        self.class_names, self.spec = class_names, spec
        self.targets: np.ndarray | None = None
        self.frames_from = "random"

    def load_frames(self, data: str | Path | None, limit: int) -> np.ndarray:
        """Validation images through the shared preprocessing (labels kept for per-variant accuracy)."""
        if not data:
            self.images = _random_frames(self.spec, 64)
            return preprocess_batch(self.images, self.spec)[0]
        root = Path(data)
        root = root / "val" if (root / "val").is_dir() else root
        split = scan(root, self.class_names)
        step = max(1, len(split.samples) // limit)
        split.samples = split.samples[::step][:limit]
        images, targets, _ = load_images(split, "parity images")
        self.images = images
        self.targets, self.frames_from = np.asarray(targets), str(root)
        return preprocess_batch(images, self.spec)[0]

    @property
    def labelled(self) -> bool:
        return self.targets is not None

    def metrics(self, raw: np.ndarray) -> dict[str, Any]:
        """Top-1 and per-class accuracy of raw logits on the loaded frames ({} without labels)."""
        if self.targets is None:
            return {}
        report = classification_report(self.targets, raw.argmax(1), self.class_names)
        return {"top1": report["top1"], "per_class": report["per_class"], "eval_frames": report["n"]}

    def score(self, raw: np.ndarray, indices: list[int]) -> float:
        """Top-1 of the logits `raw` of frames `indices`: the metric INT8 accuracy control keeps."""
        assert self.targets is not None
        return float((raw.argmax(1) == self.targets[indices]).mean()) if indices else 0.0

    def check(self, raw: np.ndarray, reference: np.ndarray, variant: str, backend: str, precision: str):
        result = compare_logits(reference, raw, variant=variant, backend=backend, precision=precision)
        return result, {"parity": result.to_dict(), **self.metrics(raw)}

    def reference_metrics(self, reference: np.ndarray) -> dict[str, Any]:
        if self.targets is None:
            return {}
        return {"top1": classification_report(self.targets, reference.argmax(1), self.class_names)["top1"]}

    def manifest(self, frames: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        return {"outputs": [{"name": "logits", "shape": [-1, len(self.class_names)]}]}


class DetectTask:
    output_names = ["preds"]
    defaults = {"conf": 0.25, "iou": 0.5, "max_det": 300}

    def __init__(self, class_names: tuple[str, ...], spec: PreprocessSpec, meta: dict[str, Any]):
        self.class_names, self.spec = class_names, spec
        self.strides = list(meta["detect"]["strides"])
        self.samples: list | None = None
        self.frames_from = "random"

    def load_frames(self, data: str | Path | None, limit: int) -> np.ndarray:
        from edgecam.train.detection.datasets import load_detection_data
        from edgecam.train.detection.validate import load_val_images

        if data:
            det = load_detection_data(data, "val")
            step = max(1, len(det.samples) // limit)
            det.samples = det.samples[::step][:limit]
            images = load_val_images(det)
            self.samples, self.frames_from = det.samples, str(data)
        else:
            images = _random_frames(self.spec, 16)
        self.images = images
        batch, self.letterboxes = preprocess_batch(images, self.spec)
        self.sizes = [(im.shape[1], im.shape[0]) for im in images]
        return batch

    @property
    def labelled(self) -> bool:
        return self.samples is not None

    def decode(self, raw: np.ndarray, conf: float, indices: list[int] | None = None) -> list[Detections]:
        from edgecam.runtime.decode import decode_detections

        hw = (self.spec.height, self.spec.width)
        index = range(len(raw)) if indices is None else indices
        letterboxes, sizes = [self.letterboxes[i] for i in index], [self.sizes[i] for i in index]
        return [
            decode_detections(
                r,
                self.strides,
                hw,
                conf=conf,
                iou=0.6 if conf < 0.01 else self.defaults["iou"],
                max_det=100 if conf < 0.01 else 300,
                letterbox=lb,
                orig_size=size,
            )
            for r, lb, size in zip(raw, letterboxes, sizes, strict=True)
        ]

    def _map(self, raw: np.ndarray) -> dict[str, Any]:
        from edgecam.train.detection.evaluate import coco_evaluate

        report = coco_evaluate(self.samples, self.decode(raw, 0.001), self.class_names)
        keys = ("map50", "map50_95", "map75", "ap_small", "ap_medium", "ap_large", "per_class")
        return {k: report[k] for k in keys} | {"eval_frames": report["n_images"]}

    def metrics(self, raw: np.ndarray) -> dict[str, Any]:
        """COCO mAP and per-class AP/recall of raw predictions on the loaded frames ({} without labels)."""
        return self._map(raw) if self.samples is not None else {}

    def score(self, raw: np.ndarray, indices: list[int]) -> float:
        """mAP@0.5 of the raw predictions `raw` of frames `indices`: the metric INT8 accuracy control keeps."""
        from edgecam.train.detection.evaluate import coco_evaluate

        assert self.samples is not None
        samples = [self.samples[i] for i in indices]
        report = coco_evaluate(samples, self.decode(raw, 0.001, indices), self.class_names)
        return float(report["map50"] or 0.0)

    def check(self, raw: np.ndarray, reference: np.ndarray, variant: str, backend: str, precision: str):
        conf = self.defaults["conf"]
        lo = conf - 0.05
        result = compare_detections(
            self.decode(reference, lo),
            self.decode(raw, lo),
            variant=variant,
            backend=backend,
            precision=precision,
            conf=conf,
            max_abs_raw_diff=float(np.abs(reference - raw).max()),
        )
        return result, {"parity": result.to_dict(), **self.metrics(raw)}

    def reference_metrics(self, reference: np.ndarray) -> dict[str, Any]:
        if self.samples is None:
            return {}
        m = self._map(reference)
        return {"map50": m["map50"], "map50_95": m["map50_95"]}

    def manifest(self, frames: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        return {
            "outputs": [{"name": "preds", "shape": [-1, int(reference.shape[1]), 4 + len(self.class_names)]}],
            "detect": {"strides": self.strides, **self.defaults},
        }


TASKS = {"classify": ClassifyTask, "detect": DetectTask}
