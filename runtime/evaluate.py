"""Evaluate any classifier (checkpoint or exported variant) on an ImageFolder with the same code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import load_images, scan
from edgecam.runtime.metrics import classification_report
from edgecam.runtime.preprocess import PreprocessSpec, preprocess_batch

Predict = Callable[[np.ndarray], np.ndarray]  # float32 NxCxHxW -> (N, num_classes) logits


def evaluate_classifier(
    predict: Predict,
    data: str | Path,
    spec: PreprocessSpec,
    class_names: tuple[str, ...],
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Top-1, per-class accuracy and confusion matrix of `predict` on `data` (its `val/` folder if present)."""
    split = scan(split_root(Path(data)), tuple(class_names))  # class folders map onto the model's order
    images, targets, bad = load_images(split, "validation images")
    preds = []
    for start in range(0, len(images), batch_size):
        batch, _ = preprocess_batch(images[start : start + batch_size], spec)
        logits = np.asarray(predict(batch))
        preds.append(np.argmax(logits.reshape(len(batch), -1), axis=1))
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    report = classification_report(np.asarray(targets), np.concatenate(preds), tuple(class_names))
    report["skipped"] = len(bad)
    return report


def split_root(data: Path) -> Path:
    return data / "val" if (data / "val").is_dir() else data


def evaluate_bundle(
    bundle: str | Path, data: str | Path, backend: str = "openvino", variant: str | None = None
) -> dict[str, Any]:
    """`edgecam val BUNDLE`: the chosen variant on the chosen engine, through the same evaluation code."""
    from edgecam.runtime.model import Model

    model = Model(bundle, backend=backend, variant=variant)
    if model.task != "classify":
        raise EdgecamError(f"validation of {model.task} bundles is not supported yet", path=bundle)
    report = evaluate_classifier(model.infer, data, model.spec, model.class_names)
    report.update(model=str(bundle), variant=model.variant.name, backend=backend)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable table of a classification report."""
    lines = [f"top-1 accuracy: {report['top1']:.4f} on {report['n']} images"]
    if report.get("skipped"):
        lines.append(f"skipped unreadable images: {report['skipped']}")
    lines.append(f"{'class':<16}{'accuracy':>10}{'images':>8}")
    for name, acc in report["per_class"].items():
        shown = "-" if acc is None else f"{acc:.4f}"
        lines.append(f"{name:<16}{shown:>10}{report['support'][name]:>8}")
    names = report["class_names"]
    lines.append("confusion matrix (rows true, columns predicted): " + " ".join(names))
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"  {name:<14}" + " ".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
