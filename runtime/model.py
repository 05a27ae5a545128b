"""A loaded bundle variant on one backend: preprocess -> infer -> postprocess, timed per stage."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import Bundle, Variant, load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.postprocess import classifications
from edgecam.runtime.preprocess import crop_roi, preprocess_batch
from edgecam.runtime.stats import StageTimes
from edgecam.runtime.types import Classification, Frame

ROI = tuple[int, int, int, int]


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


class Model:
    """What the runtime, `edgecam val` on a bundle and the benchmark all call."""

    def __init__(
        self,
        bundle: Bundle | str | Path,
        backend: str = "openvino",
        variant: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.engine = create_backend(backend)
        self.variant: Variant = self.bundle.variant(variant, self.engine.formats)
        self.spec = self.bundle.preprocess
        self.class_names = self.bundle.class_names
        self.task = self.bundle.task
        self.threads = threads or default_threads()
        self.engine.load(self.bundle.path_of(self.variant), threads=self.threads, precision=self.variant.precision)
        self.times = StageTimes()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 NxCxHxW -> the first output (logits for a classifier)."""
        return self.engine.infer(batch)[0]

    def classify(self, images: Sequence[np.ndarray], rois: list[ROI] | None = None) -> list[Classification]:
        """BGR images (or crops) -> one Classification each; timed as preprocess / infer / postprocess."""
        if self.task != "classify":
            raise EdgecamError(f"this bundle is a {self.task} model, not a classifier", path=self.bundle.root)
        t0 = time.perf_counter()
        batch, _ = preprocess_batch(list(images), self.spec)
        t1 = time.perf_counter()
        logits = self.infer(batch)
        t2 = time.perf_counter()
        out = classifications(logits, self.class_names, rois)
        t3 = time.perf_counter()
        self.times.add("preprocess", t1 - t0)
        self.times.add("infer", t2 - t1)
        self.times.add("postprocess", t3 - t2)
        return out

    def classify_frame(self, frame: Frame, rois: list[ROI] | None = None) -> list[Classification]:
        """The whole frame, or each (x, y, w, h) region of it batched into one inference."""
        if not rois:
            return self.classify([frame.image])
        return self.classify([crop_roi(frame.image, r) for r in rois], rois)
