"""A loaded bundle variant on one backend: preprocess -> infer -> postprocess, timed per stage."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import create_backend
from edgecam.runtime.backends.base import PERFORMANCE_MODES, Backend
from edgecam.runtime.bundle import Bundle, Variant, load_bundle, warn_unsealed
from edgecam.runtime.decode import decode_detections_counted
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.postprocess import classifications
from edgecam.runtime.preprocess import crop_roi, preprocess_batch
from edgecam.runtime.stats import StageTimes
from edgecam.runtime.types import Classification, Detections, Frame

ROI = tuple[int, int, int, int]


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True)
class DetectSettings:
    """How a detector's raw output is decoded: the manifest's `detect` entry, thresholds overridable per run."""

    strides: tuple[int, ...]
    conf: float = 0.25
    iou: float = 0.5
    max_det: int = 300


def detect_settings(bundle: Bundle, conf: float | None = None, iou: float | None = None) -> DetectSettings:
    """Read and check `manifest["detect"]`; `conf` / `iou` replace the manifest's thresholds when given."""
    raw: Any = bundle.manifest.get("detect")
    if not isinstance(raw, dict) or "strides" not in raw:
        raise EdgecamError(
            "detection bundles are not supported without a 'detect' entry with 'strides' in the manifest",
            path=bundle.root,
            fix='re-export the bundle; its edgecam.json needs "detect": {"strides": [8, 16, 32], ...}',
        )
    try:
        settings = DetectSettings(
            tuple(int(s) for s in raw["strides"]),
            float(raw.get("conf", 0.25)),
            float(raw.get("iou", 0.5)),
            int(raw.get("max_det", 300)),
        )
        settings = replace(settings, **{k: float(v) for k, v in (("conf", conf), ("iou", iou)) if v is not None})
    except (TypeError, ValueError) as exc:
        raise EdgecamError(f"malformed 'detect' entry in the manifest: {exc}", path=bundle.root) from None
    problems = []
    if not settings.strides or min(settings.strides) <= 0:
        problems.append(f"strides {list(settings.strides)} must be positive")
    elif bundle.preprocess.height % max(settings.strides) or bundle.preprocess.width % max(settings.strides):
        problems.append(f"the input size is not a multiple of the largest stride {max(settings.strides)}")
    if not (0 <= settings.conf <= 1 and 0 <= settings.iou <= 1):
        problems.append(f"conf {settings.conf} and iou {settings.iou} must lie in [0, 1]")
    if settings.max_det < 1:
        problems.append(f"max_det {settings.max_det} must be at least 1")
    if problems:
        raise EdgecamError("invalid detection settings: " + "; ".join(problems), path=bundle.root)
    return settings


def output_problem(bundle: Bundle, shape: tuple[int, ...], batch: int) -> str | None:
    """Why a model output of `shape` for `batch` images does not fit the manifest, or None when it fits: a
    classifier gives one logit per class name, a detector (batch, anchors, 4 + classes) (see runtime/decode.py)."""
    names = len(bundle.class_names)
    shape = tuple(int(d) for d in shape)
    if bundle.task == "classify":
        logits = int(np.prod(shape[1:])) if len(shape) >= 2 else None
        if len(shape) >= 2 and shape[0] == batch and logits == names:
            return None
        return (
            f"the model gives {logits if logits is not None else 'no'} logits per image (output shape {list(shape)}) "
            f"while the manifest names {names} classes"
        )
    spec, strides = bundle.preprocess, detect_settings(bundle).strides
    expected = (batch, sum((spec.height // s) * (spec.width // s) for s in strides), 4 + names)
    if shape == expected:
        return None
    return (
        f"the model gives output shape {list(shape)}, while the manifest expects {list(expected)} ({names} class "
        f"names, strides {list(strides)}, input {spec.height}x{spec.width})"
    )


@dataclass
class Pending:
    """A batch on its way through the engine (`Model.start_*`), to be decoded by `Model.finish`: its `future`
    when it was submitted to run while the caller works on, else the `output` inferred at once."""

    future: Future | None
    output: np.ndarray | None
    started: float  # perf_counter() when preprocessing ended
    rois: list[ROI] | None = None
    letterboxes: list[Any] | None = None  # detectors: each image's letterbox and (width, height)
    sizes: list[tuple[int, int]] | None = None
    conf: float | None = None
    iou: float | None = None


class Model:
    """What the runtime, `edgecam val` on a bundle and the benchmark all call.

    `backend` is an engine name, loaded here on `device` (OpenVINO: CPU, GPU, NPU, AUTO...; ONNX Runtime: an
    execution provider, cpu, cuda, ...; None: the CPU), or an already loaded `Backend` to share (a per-camera view of
    one model: see `view`). A device this host lacks raises EdgecamError naming what it has. `infer` replaces the
    inference call, e.g. with a shared engine's; `submit`, when given, starts a batch that runs while the caller
    works on (used with `overlap`).
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        backend: str | Backend = "openvino",
        variant: str | None = None,
        threads: int | None = None,
        conf: float | None = None,
        iou: float | None = None,
        mode: str = "latency",
        infer: Callable[[np.ndarray], np.ndarray] | None = None,
        submit: Callable[[np.ndarray], Future] | None = None,
        device: str | None = None,
    ) -> None:
        if mode not in PERFORMANCE_MODES:
            raise EdgecamError(f"unknown engine mode {mode!r}", fix=f"use one of {', '.join(PERFORMANCE_MODES)}")
        self.mode = mode
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        # Checked before the engine loads, so a bundle the detector cannot decode fails fast.
        self.detect_settings = detect_settings(self.bundle, conf, iou) if self.bundle.task == "detect" else None
        shared = isinstance(backend, Backend)
        self.engine: Backend = backend if isinstance(backend, Backend) else create_backend(backend)
        self.variant: Variant = self.bundle.variant(variant, self.engine.formats)
        self.spec = self.bundle.preprocess
        self.class_names = self.bundle.class_names
        self.task = self.bundle.task
        self.threads = threads or default_threads()
        self.device = device
        if not shared:
            warn_unsealed(self.bundle)
            self.bundle.check_variant_files(self.variant)  # what the engine reads is what was exported
            path = self.bundle.path_of(self.variant)
            self.engine.load(
                path, threads=self.threads, precision=self.variant.precision, device=device or "CPU", mode=mode
            )
            self._check_output()
        self._infer = infer if infer is not None else self._engine_infer
        self._submit = submit
        self.overlap = False  # True: `start_*` returns while the engine runs (for a caller with work to overlap)
        self.times = StageTimes()
        self.nonfinite = 0  # batches whose output held NaN or inf (a classifier's fail; a detector's lose the boxes)

    def view(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        submit: Callable[[np.ndarray], Future] | None = None,
    ) -> Model:
        """A Model on the same bundle, variant, loaded backend and settings, with its own `StageTimes`, that infers
        through `infer` (and `submit`, for batches started before the previous one is finished): one per camera on
        a shared engine, since the timers are not thread-safe."""
        settings = self.detect_settings
        return Model(
            self.bundle,
            self.engine,
            self.variant.name,
            self.threads,
            conf=settings.conf if settings else None,
            iou=settings.iou if settings else None,
            mode=self.mode,
            infer=infer,
            submit=submit,
            device=self.device,
        )

    def info(self) -> dict[str, Any]:
        """The engine's own report (version, device, threads, precision) and the variant it runs."""
        return {**self.engine.info(), "variant": self.variant.name}

    def _check_output(self) -> None:
        """One blank image through the loaded engine: its output must fit the manifest's class names (a manifest
        with a class cut off would otherwise run, and mislabel or fail on every frame)."""
        path = self.bundle.path_of(self.variant)
        try:
            shape = np.shape(self._engine_infer(np.zeros((1, *self.spec.input_shape), np.float32)))
        except EdgecamError:
            raise
        except Exception as exc:  # an engine's own error type, with a long native message
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgecamError(f"the model cannot run a test image: {first}", path=path, fix="re-export") from None
        problem = output_problem(self.bundle, shape, 1)
        if problem:
            raise EdgecamError(problem, path=path, fix="re-export the bundle: its manifest does not describe the model")

    def _engine_infer(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.infer(batch)[0]

    def _start(self, batch: np.ndarray, started: float, **about: Any) -> Pending:
        if self.overlap and self._submit is not None:
            return Pending(self._submit(batch), None, started, **about)
        return Pending(None, self._infer(batch), started, **about)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 NxCxHxW -> the first output (logits for a classifier)."""
        return self._infer(batch)

    # --- two phases: start (preprocess, submit) and finish (wait, decode) ---------------------------------------
    def start_classify(self, images: Sequence[np.ndarray], rois: list[ROI] | None = None) -> Pending:
        """Preprocess BGR images (or crops) and start their inference; `finish` gives one Classification each."""
        if self.task != "classify":
            raise EdgecamError(f"this bundle is a {self.task} model, not a classifier", path=self.bundle.root)
        t0 = time.perf_counter()
        batch, _ = preprocess_batch(list(images), self.spec)
        t1 = time.perf_counter()
        self.times.add("preprocess", t1 - t0)
        return self._start(batch, t1, rois=rois)

    def start_detect(
        self, images: Sequence[np.ndarray], conf: float | None = None, iou: float | None = None
    ) -> Pending:
        """Preprocess BGR images and start their inference; `finish` gives one Detections each, in image pixels."""
        if self.detect_settings is None:
            raise EdgecamError(f"this bundle is a {self.task} model, not a detector", path=self.bundle.root)
        images = list(images)
        t0 = time.perf_counter()
        batch, letterboxes = preprocess_batch(images, self.spec)
        t1 = time.perf_counter()
        self.times.add("preprocess", t1 - t0)
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        return self._start(batch, t1, letterboxes=letterboxes, sizes=sizes, conf=conf, iou=iou)

    def finish(self, pending: Pending) -> list[Any]:
        """Wait for a started batch and decode it: `infer` is timed from the end of preprocessing to the result."""
        out = pending.future.result() if pending.future is not None else pending.output
        t2 = time.perf_counter()
        if pending.sizes is not None:
            results = self._decode(out, pending)
        else:
            if not np.isfinite(out).all():  # a few logits: softmax would turn them into NaN scores
                self.nonfinite += 1
                raise EdgecamError(
                    "the model's output holds NaN or inf: the frame is dropped",
                    path=self.bundle.path_of(self.variant),
                    fix="the model is broken (trained to NaN, or a damaged export): re-export a good checkpoint",
                )
            results = classifications(out, self.class_names, pending.rois)
        self.times.add("infer", t2 - pending.started)
        self.times.add("postprocess", time.perf_counter() - t2)
        return results

    def _decode(self, preds: np.ndarray, pending: Pending) -> list[Detections]:
        settings = self.detect_settings
        assert settings is not None and pending.sizes is not None and pending.letterboxes is not None
        n = len(pending.sizes)
        if preds.ndim != 3 or preds.shape[0] != n or preds.shape[2] != 4 + len(self.class_names):
            raise EdgecamError(
                f"detector output has shape {tuple(preds.shape)}, expected ({n}, anchors, "
                f"4 + {len(self.class_names)} classes)",
                path=self.bundle.path_of(self.variant),
                fix="re-export the model: its output does not match the manifest's class names",
            )
        decoded = [
            decode_detections_counted(
                p,
                settings.strides,
                (self.spec.height, self.spec.width),
                conf=settings.conf if pending.conf is None else pending.conf,
                iou=settings.iou if pending.iou is None else pending.iou,
                max_det=settings.max_det,
                letterbox=box,
                orig_size=size,
            )
            for p, box, size in zip(preds, pending.letterboxes, pending.sizes, strict=True)
        ]
        if any(dropped for _, dropped in decoded):
            self.nonfinite += 1
        return [dets for dets, _ in decoded]

    # --- one call -------------------------------------------------------------------------------------------
    def classify(self, images: Sequence[np.ndarray], rois: list[ROI] | None = None) -> list[Classification]:
        """BGR images (or crops) -> one Classification each; timed as preprocess / infer / postprocess."""
        return self.finish(self.start_classify(images, rois))

    def start_classify_frame(self, frame: Frame, rois: list[ROI] | None = None) -> Pending:
        """The whole frame, or each (x, y, w, h) region of it batched into one inference."""
        if not rois:
            return self.start_classify([frame.image])
        return self.start_classify([crop_roi(frame.image, r) for r in rois], rois)

    def classify_frame(self, frame: Frame, rois: list[ROI] | None = None) -> list[Classification]:
        return self.finish(self.start_classify_frame(frame, rois))

    def detect(
        self, images: Sequence[np.ndarray], conf: float | None = None, iou: float | None = None
    ) -> list[Detections]:
        """BGR images -> one Detections each, in that image's pixels; timed as preprocess / infer / postprocess."""
        return self.finish(self.start_detect(images, conf, iou))

    def detect_frame(self, frame: Frame, conf: float | None = None, iou: float | None = None) -> Detections:
        """Detections for a whole frame, boxes in frame pixels."""
        return self.detect([frame.image], conf, iou)[0]
