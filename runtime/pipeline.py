"""The run loop behind `edgecam run`: source -> model -> annotate -> sinks, every stage timed.

`run()` is the tested function; the CLI is a thin layer that prints `RunSummary.format_table()` or, with
`--json`, `RunSummary.to_dict()`. Ctrl-C ends a run cleanly: sinks are closed and the summary covers what was done.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.annotate import draw_classifications, draw_detections, draw_stats
from edgecam.runtime.bundle import Bundle, load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.prefetch import Prefetcher
from edgecam.runtime.sinks.jsonl import JsonlSink, to_jsonable
from edgecam.runtime.sinks.video import VideoSink
from edgecam.runtime.sources import is_live, open_source
from edgecam.runtime.types import Detections, Frame

ROI = tuple[int, int, int, int]
DEFAULT_VIDEO_FPS = 25.0  # for the saved video when the source does not say (image folders, some cameras)


@dataclass(frozen=True)
class TaskRunner:
    """What the loop needs from a task: results for a frame, how to draw them, the labels they count, and how
    they are recorded in the JSON lines (by default as they are)."""

    process: Callable[[Model, Frame, list[ROI] | None], list[Any]]
    draw: Callable[[np.ndarray, list[Any], Sequence[str]], np.ndarray]
    labels: Callable[[list[Any], Sequence[str]], list[str]]
    records: Callable[[list[Any], Sequence[str]], list[Any]] = lambda results, _names: results


def _box_records(results: list[Detections], class_names: Sequence[str]) -> list[Any]:
    """One JSON object per box (not one list per frame), so `results` reads the same as for classifiers."""
    return [box for dets in results for box in to_jsonable(dets, class_names)]


# One entry per bundle task.
TASK_RUNNERS: dict[str, TaskRunner] = {
    "classify": TaskRunner(
        process=lambda model, frame, rois: model.classify_frame(frame, rois),
        draw=lambda image, results, _names: draw_classifications(image, results),
        labels=lambda results, _names: [r.label for r in results],
    ),
    "detect": TaskRunner(
        process=lambda model, frame, _rois: [model.detect_frame(frame)],
        draw=lambda image, results, names: draw_detections(image, Detections.merge(results), names),
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
class RunSummary:
    """What a run did and how fast: printed as a table for people, as JSON for scripts."""

    source: str
    task: str
    variant: str
    frames: int
    seconds: float
    fps: float
    stages: dict[str, dict[str, Any]]
    source_stats: dict[str, Any]
    backend_info: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        info = self.backend_info
        engine = " ".join(str(info[k]) for k in ("backend", "version") if info.get(k))
        lines = [
            f"{self.frames} frames in {self.seconds:.2f} s = {self.fps:.1f} FPS"
            + (" (interrupted)" if self.interrupted else ""),
            f"model    {self.variant} on {engine} (threads {info.get('threads')})",
            f"source   {self.source}: "
            + ", ".join(f"{k} {v}" for k, v in self.source_stats.items() if not isinstance(v, list)),
            f"{'stage':<12}{'count':>8}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}",
        ]
        for stage, s in self.stages.items():
            lines.append(f"{stage:<12}{s['count']:>8}{s['mean_ms']:>10.2f}{s['p50_ms']:>10.2f}{s['p95_ms']:>10.2f}")
        if self.label_counts:
            lines.append("labels   " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items()))
        if self.outputs:
            lines.append("outputs  " + ", ".join(f"{k} {v}" for k, v in self.outputs.items()))
        return "\n".join(lines)


class _Progress:
    """A one-line progress display on a terminal's stderr, redrawn at most twice a second, erased at the end."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()  # carriage returns only make sense on a terminal
        self._last = 0.0

    def update(self, frames: int, elapsed: float) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.5:
            self._last = now
            print(f"\r{frames} frames  {frames / max(elapsed, 1e-9):.1f} FPS ", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self._last:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def run(
    bundle: str | Path,
    source: str,
    backend: str = "openvino",
    variant: str | None = None,
    rois: list[ROI] | None = None,
    save_video: Path | None = None,
    jsonl: Path | None = None,
    max_frames: int | None = None,
    threads: int | None = None,
    show_progress: bool = False,
    conf: float | None = None,
    iou: float | None = None,
) -> RunSummary:
    """Run a bundle on a source until it ends, `max_frames` is reached or Ctrl-C; returns the run's summary.

    `conf` / `iou` override a detector's thresholds (None = the manifest's); ROIs are for classifiers only.
    """
    loaded = load_bundle(bundle)
    runner = task_runner(loaded)  # before loading the engine: an unsupported task fails fast
    if rois and loaded.task != "classify":
        raise EdgecamError("--roi is for classifiers", path=loaded.root, fix="drop --roi to detect in whole frames")
    if (conf is not None or iou is not None) and loaded.task != "detect":
        raise EdgecamError("--conf and --iou are for detectors", path=loaded.root, fix="drop --conf / --iou")
    model = Model(loaded, backend=backend, variant=variant, threads=threads, conf=conf, iou=iou)
    times = model.times  # the model records preprocess / infer / postprocess; the loop adds the rest
    labels: Counter[str] = Counter()
    outputs = {k: str(v) for k, v in (("video", save_video), ("jsonl", jsonl)) if v is not None}
    progress = _Progress(show_progress)
    frames, interrupted, elapsed = 0, False, 0.0
    with ExitStack() as stack:
        src = stack.enter_context(open_source(str(source)))
        if rois and src.size:  # known before the first frame for files: fail before any output is created
            rois = validate_rois(rois, *src.size)
        video = stack.enter_context(VideoSink(save_video, fps=src.fps or DEFAULT_VIDEO_FPS)) if save_video else None
        sink = stack.enter_context(JsonlSink(jsonl, model.class_names)) if jsonl else None
        # Files and folders decode ahead on a thread (order kept, nothing dropped); live sources already do.
        frames_iter = iter(src) if is_live(str(source)) else stack.enter_context(Prefetcher(iter(src)))
        start = time.perf_counter()
        try:
            while max_frames is None or frames < max_frames:
                t0 = time.perf_counter()
                frame = next(frames_iter, None)
                if frame is None:
                    break
                times.add("read", time.perf_counter() - t0)
                if frames == 0 and rois:
                    rois = validate_rois(rois, frame.width, frame.height)
                results = runner.process(model, frame, rois)
                labels.update(runner.labels(results, model.class_names))
                if video is not None:
                    t0 = time.perf_counter()
                    image = runner.draw(frame.image, results, model.class_names)
                    image = draw_stats(image, fps=(frames + 1) / max(time.perf_counter() - start, 1e-9))
                    times.add("annotate", time.perf_counter() - t0)
                if video is not None or sink is not None:
                    t0 = time.perf_counter()
                    if sink is not None:
                        sink.write(frame, runner.records(results, model.class_names))
                    if video is not None:
                        video.write(image)
                    times.add("write", time.perf_counter() - t0)
                frames += 1
                progress.update(frames, time.perf_counter() - start)
        except KeyboardInterrupt:
            interrupted = True
        elapsed = time.perf_counter() - start
    progress.done()
    return RunSummary(
        source=str(source),
        task=loaded.task,
        variant=model.variant.name,
        frames=frames,
        seconds=round(elapsed, 4),
        fps=round(frames / elapsed, 2) if elapsed > 0 else 0.0,
        stages=times.summary(),
        source_stats=src.stats().to_dict(),
        backend_info=model.engine.info(),
        outputs=outputs,
        label_counts=dict(labels.most_common()),
        interrupted=interrupted,
    )
