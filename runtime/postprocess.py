"""Engine outputs -> typed results."""

from __future__ import annotations

import numpy as np

from edgecam.runtime.types import Classification


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def classifications(
    logits: np.ndarray, class_names: tuple[str, ...], rois: list[tuple[int, int, int, int]] | None = None
) -> list[Classification]:
    """(N, C) logits -> N `Classification`s, one per image or ROI."""
    probs = softmax(np.asarray(logits, np.float32).reshape(len(logits), -1))
    rois = rois if rois is not None else [None] * len(probs)
    return [Classification(p, class_names, roi) for p, roi in zip(probs, rois, strict=True)]
