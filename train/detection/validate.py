"""Detection validation: any predictor (PyTorch, ONNX Runtime, OpenVINO) -> runtime decode -> COCO mAP.

The same function serves the trainer's per-epoch validation, `edgecam val` and the export's per-variant metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.decode import decode_detections
from edgecam.runtime.imagefolder import read_image
from edgecam.runtime.preprocess import PreprocessSpec, preprocess_batch
from edgecam.runtime.types import Detections
from edgecam.train.detection.evaluate import coco_evaluate
from edgecam.train.detection.samples import DetDataset

Predict = Callable[[np.ndarray], np.ndarray]  # float32 NxCxHxW -> raw preds (N, A, 4 + C)

VAL_CONF = 0.001  # mAP integrates over all thresholds: keep low-score boxes, as every COCO evaluation does
VAL_IOU = 0.6


def load_val_images(det: DetDataset) -> list[np.ndarray]:
    return [read_image(s.path) for s in det.samples]


def predict_detections(
    predict: Predict,
    images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    strides: Sequence[int],
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = 100,
    batch_size: int = 16,
) -> list[Detections]:
    """Original-frame detections for every image, through the shared preprocessing and the runtime decoder."""
    out: list[Detections] = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        batch, boxes = preprocess_batch(chunk, spec)
        preds = np.asarray(predict(batch))
        for img, raw, lb in zip(chunk, preds, boxes, strict=True):
            out.append(
                decode_detections(
                    raw,
                    strides,
                    (spec.height, spec.width),
                    conf=conf,
                    iou=iou,
                    max_det=max_det,
                    letterbox=lb,
                    orig_size=(img.shape[1], img.shape[0]),
                )
            )
    return out


def evaluate_detector(
    predict: Predict,
    det: DetDataset,
    spec: PreprocessSpec,
    strides: Sequence[int],
    images: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, Any], list[Detections]]:
    """COCO metrics (pycocotools) of `predict` on a dataset split; images are read when not given."""
    images = images if images is not None else load_val_images(det)
    predictions = predict_detections(predict, images, spec, strides)
    return coco_evaluate(det.samples, predictions, det.class_names), predictions


def evaluate_detection_checkpoint(checkpoint: str | Path, data: str | Path) -> dict[str, Any]:
    """`edgecam val CHECKPOINT --data data.yaml` for a detector."""
    import torch

    from edgecam.train.checkpoint import load_checkpoint
    from edgecam.train.detection.datasets import load_detection_data

    model, meta = load_checkpoint(checkpoint)

    @torch.no_grad()
    def predict(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch)).numpy()

    det = load_detection_data(data, "val")
    report, _ = evaluate_detector(predict, det, meta["preprocess_spec"], meta["detect"]["strides"])
    return {**report, "model": str(checkpoint), "variant": "pytorch", "backend": "pytorch"}


def evaluate_detection_bundle(
    bundle: str | Path, data: str | Path, backend: str = "openvino", variant: str | None = None
) -> dict[str, Any]:
    """`edgecam val BUNDLE --data data.yaml`: the variant on the engine, through the same decode and COCO code."""
    from edgecam.runtime.model import Model
    from edgecam.train.detection.datasets import load_detection_data

    model = Model(bundle, backend=backend, variant=variant)
    det = load_detection_data(data, "val")
    strides = model.bundle.manifest["detect"]["strides"]
    report, _ = evaluate_detector(model.infer, det, model.spec, strides)
    return {**report, "model": str(bundle), "variant": model.variant.name, "backend": backend}
