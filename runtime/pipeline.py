"""`edgecam run BUNDLE --source X`: a one-camera configuration run by the same camera runner as `--config`.

So reconnect (a live URL comes back with backoff), sinks, shutdown and errors behave exactly as under `--config`;
the per-frame work is `runtime/processor.py`'s. `run()` is the tested function; the CLI prints
`RunSummary.format_table()` or, with `--json`, `RunSummary.to_dict()`. Ctrl-C ends a run cleanly: the outputs are
closed and the summary covers what was done. A camera that stopped on an error re-raises it here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.camera_config import parse_runtime_config
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.processor import ROI, task_runner, validate_rois
from edgecam.runtime.redact import mask_url
from edgecam.runtime.sources import CaptureFactory, is_image_source, is_live, source_not_found

__all__ = ["RunSummary", "run", "validate_rois"]


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
    inference_errors: int = 0  # frames dropped because their inference failed
    nonfinite: int = 0  # frames whose model output held NaN or inf (never written as NaN)
    problems: list[str] = field(default_factory=list)  # why the run did not do its whole job (the exit code is 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        info = self.backend_info
        engine = " ".join(str(info[k]) for k in ("backend", "version") if info.get(k))
        lines = [
            f"{self.frames} frames in {self.seconds:.2f} s = {self.fps:.1f} FPS"
            + (" (interrupted)" if self.interrupted else ""),
            f"model    {self.variant} on {engine}, device {info.get('device', 'CPU')} (threads {info.get('threads')})",
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
        if self.inference_errors or self.nonfinite:
            lines.append(f"failed   {self.inference_errors} inferences, {self.nonfinite} with NaN / inf outputs")
        lines.extend(f"PROBLEM  {p}" for p in self.problems)
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
    capture_factory: CaptureFactory | None = None,
    save_images: Path | None = None,
    loop: bool = False,
    device: str | None = None,
) -> RunSummary:
    """Run a bundle on a source until it ends, `max_frames` is reached or Ctrl-C; returns the run's summary.

    `conf` / `iou` override a detector's thresholds (None = the manifest's); ROIs are for classifiers only.
    Detections are not tracked (every box above `conf` is recorded); `--config` adds tracking and scenarios.
    `save_images` (image folders) writes one annotated image per input image; `loop` replays a video file until
    `max_frames` or Ctrl-C / SIGTERM. `device` is the backend's device (OpenVINO CPU, GPU, NPU...; ONNX Runtime
    cpu, cuda, ...; None: the CPU), as `device:` in cameras.yaml.
    """
    from edgecam.runtime.cameras import MultiCameraRunner  # cameras.py builds on the processor, as this does

    loaded = load_bundle(bundle)
    task_runner(loaded)  # before loading the engine: an unsupported task fails fast
    if rois and loaded.task != "classify":
        raise EdgecamError("--roi is for classifiers", path=loaded.root, fix="drop --roi to detect in whole frames")
    if (conf is not None or iou is not None) and loaded.task != "detect":
        raise EdgecamError("--conf and --iou are for detectors", path=loaded.root, fix="drop --conf / --iou")
    if not is_live(str(source)) and not Path(source).exists():  # named as the flag gave it, not as a config key
        raise source_not_found(str(source))
    if save_images is not None and (is_live(str(source)) or not is_image_source(str(source))):
        raise EdgecamError("--save-images is for image folders", fix="use --save-video for a video file or camera")
    if loop and (is_live(str(source)) or is_image_source(str(source))):
        raise EdgecamError("--loop is for video files", fix="drop --loop")
    camera: dict[str, Any] = {"name": "main", "source": str(source), "bundle": str(bundle), "backend": backend}
    if device is not None:
        camera["device"] = device
    camera.update(variant=variant, rois=[list(r) for r in rois or ()], track=False, conf=conf, iou=iou)
    outputs = (("video", save_video), ("images", save_images), ("jsonl", jsonl))
    camera["sinks"] = {k: str(v) for k, v in outputs if v is not None}
    camera["loop"] = loop
    engine = {"workers": 2, "threads": threads}
    config = parse_runtime_config({"cameras": [camera], "engine": engine}, "edgecam run", Path.cwd())
    runner = MultiCameraRunner(config, capture_factory=capture_factory)
    progress = _Progress(show_progress)
    multi = runner.run(max_frames=max_frames, progress=progress.update)
    progress.done()
    cam = runner.cameras[0]  # start() made it, or raised
    if cam.exception is not None:
        raise cam.exception
    done = multi.cameras[0]
    return RunSummary(
        source=mask_url(str(source)),
        task=loaded.task,
        variant=cam.model.variant.name,
        frames=done["frames"],
        seconds=done["seconds"],
        fps=done["fps_out"],
        stages=done["stages"],
        source_stats=done["source_stats"],
        backend_info=multi.engines[0],
        outputs=done["outputs"],
        label_counts=done["labels"],
        interrupted=multi.interrupted,
        inference_errors=done["inference_errors"],
        nonfinite=done["nonfinite"],
        problems=camera_problems(done),
    )


def camera_problems(camera: dict[str, Any]) -> list[str]:
    """What went wrong with one camera's run, from its summary: it stopped early, or an output could not be
    written. One line each, for the summary and the exit code."""
    out = [f"camera stopped: {camera['error']}"] if camera.get("error") else []
    if camera.get("inference_errors") and not camera.get("frames"):  # e.g. a model trained to NaN
        failed, nonfinite = camera["inference_errors"], camera.get("nonfinite", 0)
        out.append(f"every inference failed ({failed} frames, {nonfinite} with NaN / inf outputs)")
    return out + output_problems(camera)


def output_problems(camera: dict[str, Any]) -> list[str]:
    """One line per output of the camera that stopped (a full disk): what it was asked to keep and did not."""
    return [f"{name} output stopped: {why}" for name, why in camera.get("failed_outputs", {}).items()]
