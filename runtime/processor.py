"""The one per-frame path: motion gate -> model -> tracker -> scenario -> annotate -> the camera's outputs.

Every way of running goes through `FrameProcessor.process`: `edgecam run --source` (a one-camera configuration),
`edgecam run --config` (one processor per camera) and the runtime benchmark. A behaviour written here (what is
drawn, what a JSON line holds, which stages are timed, how a failed inference is counted) is the same everywhere.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.annotate import draw_classifications, draw_detections, draw_stats
from edgecam.runtime.bundle import Bundle
from edgecam.runtime.camera_config import CameraConfig
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model, Pending
from edgecam.runtime.motion import MotionGate
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.sinks.images import ImageSink
from edgecam.runtime.sinks.jsonl import JsonlSink, to_jsonable
from edgecam.runtime.sinks.snapshots import SnapshotSink
from edgecam.runtime.sinks.video import VideoSink
from edgecam.runtime.types import Classification, Detections, Event, Frame

ROI = tuple[int, int, int, int]
DEFAULT_VIDEO_FPS = 25.0  # for the saved video when the source does not say (image folders, some cameras)
LIVE_VIEW_FPS = 10.0  # JPEG encodes for the HTTP live view at most this often per camera


@dataclass(frozen=True)
class TaskRunner:
    """What the processor needs from a task: the start of a frame's inference, the labels its results count, and
    how they are recorded in the JSON lines (by default as they are)."""

    start: Callable[[Model, Frame, list[ROI] | None], Pending]
    labels: Callable[[list[Any], Sequence[str]], list[str]]
    records: Callable[[list[Any], Sequence[str]], list[Any]] = lambda results, _names: results


def _box_records(results: list[Detections], class_names: Sequence[str]) -> list[Any]:
    """One JSON object per box (not one list per frame), so `results` reads the same as for classifiers."""
    return [box for dets in results for box in to_jsonable(dets, class_names)]


# One entry per bundle task.
TASK_RUNNERS: dict[str, TaskRunner] = {
    "classify": TaskRunner(
        start=lambda model, frame, rois: model.start_classify_frame(frame, rois),
        labels=lambda results, _names: [r.label for r in results],
    ),
    "detect": TaskRunner(
        start=lambda model, frame, _rois: model.start_detect([frame.image]),
        labels=lambda results, names: [
            names[c] if 0 <= c < len(names) else str(c) for d in results for c in d.class_ids
        ],
        records=_box_records,
    ),
}


def task_runner(bundle: Bundle) -> TaskRunner:
    """The runner for the bundle's task, or a clear error for tasks this version cannot run yet."""
    runner = TASK_RUNNERS.get(bundle.task)
    if runner is None:
        raise EdgecamError(
            f"{bundle.task!r} bundles are not supported by this version of edgecam run yet",
            path=bundle.root,
            fix=f"use a bundle with task {' or '.join(sorted(TASK_RUNNERS))}, or upgrade edgecam",
        )
    return runner


def validate_rois(rois: Sequence[ROI], width: int, height: int) -> list[ROI]:
    """Every ROI must be (x, y, w, h) wholly inside the frame: a region cut off by the edge is a typo, not a wish."""
    out = []
    for i, roi in enumerate(rois):
        if len(roi) != 4:
            raise EdgecamError(f"ROI #{i} {tuple(roi)} is not x,y,w,h", fix="give four integers per ROI")
        x, y, w, h = (int(v) for v in roi)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise EdgecamError(
                f"ROI #{i} (x={x}, y={y}, w={w}, h={h}) lies outside the {width}x{height} frame",
                fix=f"give w, h > 0 with x + w <= {width} and y + h <= {height}",
            )
        out.append((x, y, w, h))
    return out


@dataclass
class FrameResult:
    """What one frame produced. `detections` are the detector's boxes (tracked when the camera tracks);
    `classifications` the classifier's (the camera's model, or its second classifier bundle)."""

    frame: Frame
    detections: Detections | None = None
    classifications: list[Classification] | None = None
    events: list[Event] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: bool = False  # the motion gate saw nothing worth a look
    error: Exception | None = None  # the inference failed; the frame was counted and dropped
    image: np.ndarray | None = None  # the annotated frame, when an output needed one
    pending: Pending | None = None  # between `begin` and `finish`: the inference in flight


class FrameProcessor:
    """One camera's per-frame work and its file outputs (JSON lines, video, per-image pictures, snapshots).

    `emit` receives every event (the camera publishes it to MQTT and the live state); `on_jpeg`, when given,
    receives an annotated JPEG at most `LIVE_VIEW_FPS` times a second; `fps` tells the overlay the current rate.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        model: Model,
        classifier: Model | None = None,
        emit: Callable[[Event], None] = lambda _event: None,
        on_jpeg: Callable[[bytes], None] | None = None,
        fps: Callable[[], float] = lambda: 0.0,
        warn: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.cfg, self.model, self.classifier = cfg, model, classifier
        self.runner = task_runner(model.bundle)
        self.emit, self.on_jpeg, self.fps, self.warn = emit, on_jpeg, fps, warn or (lambda _what, _exc: None)
        self.scenario = create_scenario(cfg.scenario, cfg.scenario_config, model.class_names, cfg.name)
        self.tracker = None
        if model.task == "detect" and cfg.track:
            from edgecam.runtime.tracker import ByteTracker

            self.tracker = ByteTracker(**cfg.tracker)  # checked, with the scenario's min_track_hits, by the config
        self.rois: list[ROI] = list(cfg.rois) or list(getattr(self.scenario, "rois", lambda: [])())
        self.gate = MotionGate(cfg.motion) if cfg.motion is not None else None
        self.times = model.times  # the model records preprocess / infer / postprocess; this adds the rest
        self.labels: Counter[str] = Counter()
        self.frames = self.inference_errors = 0
        self.reset_tracker = False  # set after a reconnect: the old tracks are meaningless
        self.jsonl: JsonlSink | None = None
        self.video: VideoSink | None = None
        self.images: ImageSink | None = None
        self.snapshots: SnapshotSink | None = None
        self.failed_outputs: dict[str, str] = {}  # output -> why it stopped (a full disk): the run reports it
        self._stack = ExitStack()
        self._checked = False
        self._last_ts = float("-inf")
        self._last_jpeg = 0.0

    @property
    def nonfinite(self) -> int:
        """Frames whose model output held NaN or inf (each also an inference error for a classifier), and JSON
        lines refused for such a value."""
        models = [m for m in (self.model, self.classifier) if m is not None]
        return sum(m.nonfinite for m in models) + (self.jsonl.rejected if self.jsonl is not None else 0)

    # --- outputs ----------------------------------------------------------------------------------------------
    def check_size(self, size: tuple[int, int] | None) -> None:
        """Check the ROIs and the scenario's zones and lines against the frame size once it is known (before any
        output exists, for files)."""
        if size and not self._checked:
            if self.rois:
                self.rois = validate_rois(self.rois, *size)
            self.scenario.check_frame(*size)
            self._checked = True

    def open(self, source_fps: float | None) -> None:
        """Create the configured files; a folder that cannot be written fails here, before a frame is read."""
        s = self.cfg.sinks
        if s.jsonl:
            self.jsonl = self._stack.enter_context(JsonlSink(s.jsonl, self.model.class_names))
        if s.video:
            self.video = self._stack.enter_context(VideoSink(s.video, fps=source_fps or DEFAULT_VIDEO_FPS))
        if s.images:
            self.images = ImageSink(s.images)
        if s.snapshots:
            self.snapshots = SnapshotSink(s.snapshots, s.snapshot_max_count, int(s.snapshot_max_mb * 1e6))

    def outputs(self) -> dict[str, str]:
        s = self.cfg.sinks
        named = (("video", s.video), ("images", s.images), ("jsonl", s.jsonl), ("snapshots", s.snapshots))
        return {k: str(v) for k, v in named if v}

    @property
    def all_outputs_failed(self) -> bool:
        """Every file output that was configured has stopped (a full disk): nothing is written any more."""
        files = (self.jsonl, self.video, self.images, self.snapshots)
        return bool(self.failed_outputs) and all(f is None for f in files)

    def close(self) -> None:
        """Flush and close the files (the video is finalised): safe to call twice; a failure is reported, not
        raised, so closing one file never stops the others from being closed."""
        try:
            self._stack.close()
        except Exception as exc:
            self._output_failed("close", exc)

    def _output_failed(self, name: str, exc: Exception) -> None:
        """An output that cannot be written any more is closed and dropped; the camera runs on with the others."""
        self.failed_outputs.setdefault(name, str(exc))
        self.warn(name, exc)
        if name == "video" and self.video is not None:
            self.video.close()
            self.video = None
        elif name == "jsonl":
            self.jsonl = None
        elif name == "images":
            self.images = None

    # --- the frame --------------------------------------------------------------------------------------------
    def process(self, frame: Frame) -> FrameResult:
        """The whole per-frame path for one frame."""
        return self.finish(self.begin(frame))

    def begin(self, frame: Frame) -> FrameResult:
        """Motion gate, preprocessing and the start of inference. Until `finish`, the engine may run this frame
        while the caller prepares the next (files read as fast as they decode keep two frames in flight)."""
        if frame.timestamp < self._last_ts:  # image folders stamp frames by mtime; trackers need time to run forward
            frame = replace(frame, timestamp=self._last_ts)
        self._last_ts = frame.timestamp
        self.check_size((frame.width, frame.height))
        result = FrameResult(frame)
        t0 = time.perf_counter()
        if self.gate is not None and not self.gate.check(frame.image, frame.timestamp):
            self.times.add("motion", time.perf_counter() - t0)
            result.skipped = True
            return result
        try:
            result.pending = self.runner.start(self.model, frame, self.rois if self.model.task == "classify" else None)
        except Exception as exc:  # a failed inference drops the frame; the count shows it
            self._failed(result, exc)
        return result

    def finish(self, result: FrameResult) -> FrameResult:
        """Inference results -> tracker -> scenario -> outputs. A frame the gate skipped or that failed is as is."""
        pending, result.pending = result.pending, None
        if pending is None:
            return result
        frame = result.frame
        try:
            results = self.model.finish(pending)
            if self.model.task == "classify":
                result.classifications = results
            if self.classifier is not None:
                result.classifications = self.classifier.classify_frame(frame, self.rois or None)
        except Exception as exc:
            self._failed(result, exc)
            return result
        result.labels = self.runner.labels(results, self.model.class_names)
        self.labels.update(result.labels)
        tracks: list[Any] = []
        if self.model.task == "detect":
            result.detections = results[0]
            if self.tracker is not None:
                t1 = time.perf_counter()
                if self.reset_tracker:
                    self.tracker.reset()
                    self.reset_tracker = False
                result.detections = self.tracker.update(results[0], frame.timestamp)
                tracks = self.tracker.tracks
                self.times.add("track", time.perf_counter() - t1)
        if self.cfg.scenario != "none":
            t1 = time.perf_counter()
            result.events = self.scenario.update(frame, result.detections, tracks, result.classifications)
            self.times.add("scenario", time.perf_counter() - t1)
        self.frames += 1
        self._write(result, [result.detections] if result.detections is not None else results)
        return result

    def _failed(self, result: FrameResult, exc: Exception) -> None:
        self.inference_errors += 1
        self.warn("inference", exc)
        result.error = exc

    def _write(self, result: FrameResult, shown: list[Any]) -> None:
        frame, events = result.frame, result.events
        jpeg_due = self.on_jpeg is not None and time.monotonic() - self._last_jpeg >= 1.0 / LIVE_VIEW_FPS
        wants_snapshot = self.snapshots is not None and any(e.data.get("snapshot") for e in events)
        if self.video is not None or self.images is not None or jpeg_due or wants_snapshot:
            t0 = time.perf_counter()
            result.image = self._draw(result)
            self.times.add("annotate", time.perf_counter() - t0)
        t0 = time.perf_counter()
        wrote = False
        for event in events:
            if event.data.get("snapshot") and self.snapshots is not None and result.image is not None:
                wrote = True
                try:
                    path = self.snapshots.save(result.image, event)
                except EdgecamError as exc:  # a full disk loses the picture, not the event or the camera
                    self.warn("snapshot", exc)
                    path = None
                if path is not None:
                    event.data["snapshot_path"] = str(path)
            self.emit(event)
        if self.jsonl is not None:
            extra: dict[str, Any] = {"events": [e.to_dict() for e in events]} if events else {}
            if self.classifier is not None and result.classifications:
                extra["classifications"] = result.classifications
            try:
                self.jsonl.write(frame, self.runner.records(shown, self.model.class_names), **extra)
                wrote = True
            except EdgecamError as exc:
                self._output_failed("jsonl", exc)
        if self.video is not None and result.image is not None:
            try:
                self.video.write(result.image)
                wrote = True
            except EdgecamError as exc:
                self._output_failed("video", exc)
        if self.images is not None and result.image is not None and frame.file is not None:
            try:
                self.images.save(result.image, frame.file)
                wrote = True
            except EdgecamError as exc:
                self._output_failed("images", exc)
        if jpeg_due and result.image is not None and self.on_jpeg is not None:
            ok, jpeg = cv2.imencode(".jpg", result.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                self.on_jpeg(jpeg.tobytes())
                self._last_jpeg = time.monotonic()
                wrote = True
        if wrote:
            self.times.add("write", time.perf_counter() - t0)

    def _draw(self, result: FrameResult) -> np.ndarray:
        image = result.frame.image
        if result.detections is not None:
            image = draw_detections(image, result.detections, self.model.class_names)
        if result.classifications:
            image = draw_classifications(image, result.classifications)
        fps = self.fps()
        return draw_stats(image, fps=fps or None)  # no FPS overlay until a rate is known
