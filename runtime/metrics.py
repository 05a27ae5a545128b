"""Classification metrics in numpy, the same for a PyTorch checkpoint and every exported variant."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are the true class, columns the predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Top-1 accuracy, per-class accuracy (recall) and the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    support = cm.sum(axis=1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)}
    return {
        "top1": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "per_class": per_class,
        "support": {name: int(support[i]) for i, name in enumerate(class_names)},
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }
