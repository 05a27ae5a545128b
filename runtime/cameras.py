"""Several cameras in one process: `MultiCameraRunner(load_cameras_config(path)).run(duration)`.

Each camera has a reader thread (a live source keeps only the newest frame and reconnects on its own) and one
processing thread: motion gate -> shared engine -> tracker -> scenario -> annotate -> its sinks, MQTT, the state
registry. Cameras running the same bundle share one loaded model (`SharedEngine`): two engines in one process slow
each other down. A camera that fails or goes offline never stops the others. Memory stays bounded: one frame slot
per live source, fixed-size windows for the statistics, no per-frame history.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import cv2
import numpy as np

from edgecam.runtime.annotate import draw_classifications, draw_detections, draw_stats
from edgecam.runtime.camera_config import CameraConfig, RuntimeConfig
from edgecam.runtime.engine import SharedEngine
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.live import LiveSource
from edgecam.runtime.model import Model
from edgecam.runtime.motion import MotionGate
from edgecam.runtime.pipeline import DEFAULT_VIDEO_FPS, task_runner, validate_rois
from edgecam.runtime.reconnect import SOURCE_LOST, SOURCE_RESTORED
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.sinks.jsonl import JsonlSink, to_jsonable
from edgecam.runtime.sinks.snapshots import SnapshotSink
from edgecam.runtime.sinks.video import VideoSink
from edgecam.runtime.sources import CaptureFactory, Source, open_source
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.stats import percentiles
from edgecam.runtime.types import Detections, Event, Frame

PUBLISH_EVERY = 0.5  # seconds between stats updates (registry, telemetry, MQTT state)
LIVE_VIEW_FPS = 10.0  # JPEG encodes for the HTTP live view at most this often per camera


class EventSink(Protocol):
    """What a camera publishes to: `MqttSink`, or an in-memory sink in tests."""

    def publish_event(self, camera: str, event: Event) -> Any: ...
    def publish_state(self, camera: str, state: dict[str, Any]) -> Any: ...
    def set_camera_online(self, camera: str, online: bool) -> Any: ...


class CameraRunner:
    """One camera's processing thread, tracker, scenario, sinks and statistics."""

    def __init__(
        self,
        cfg: CameraConfig,
        engine: SharedEngine,
        classifier: SharedEngine | None,
        registry: StateRegistry,
        sinks: list[EventSink],
        telemetry: Any = None,
        live_view: bool = False,
    ) -> None:
        self.cfg, self.engine, self.classifier_engine = cfg, engine, classifier
        self.model = engine.view()
        self.classifier = classifier.view() if classifier is not None else None
        self.runner = task_runner(self.model.bundle)
        self.state, self.sinks, self.telemetry, self.live_view = registry.camera(cfg.name), sinks, telemetry, live_view
        self.scenario = create_scenario(cfg.scenario, cfg.scenario_config, self.model.class_names, cfg.name)
        self.tracker = None
        if self.model.task == "detect":
            from edgecam.runtime.tracker import ByteTracker

            self.tracker = ByteTracker(**cfg.tracker)  # checked, with the scenario's min_track_hits, by the config
        self.rois = list(cfg.rois) or list(getattr(self.scenario, "rois", lambda: [])())
        self.gate = MotionGate(cfg.motion) if cfg.motion is not None else None
        self.times = self.model.times  # the view records preprocess / infer / postprocess; the loop adds the rest
        self.events: Counter[str] = Counter()
        self.frames_out = self.inference_errors = 0
        self.failures: Counter[str] = Counter()  # by kind: sink methods, snapshots, inference
        self.ages: deque[float] = deque(maxlen=512)
        self.error: str | None = None
        self._rates: deque[tuple[float, int, int]] = deque(maxlen=12)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reset_tracker = self._online = False
        self._last_ts = float("-inf")
        self._last_publish = self._last_jpeg = 0.0
        self._started = self._ended = 0.0
        self._stack = ExitStack()
        self.source: Source | None = None
        self.thread = threading.Thread(target=self._loop, name=f"edgecam-cam-{cfg.name}", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self, capture_factory: CaptureFactory | None = None) -> None:
        """Open the source and the file sinks on the caller's thread: a bad file fails before anything runs."""
        c = self.cfg
        options = {"resolution": c.resolution, "reconnect": c.reconnect, "on_event": self._source_event}
        src = open_source(c.source, c.max_fps, c.stride, capture_factory=capture_factory, **options)
        self.source = self._stack.enter_context(src)
        s = c.sinks
        self.jsonl = self._stack.enter_context(JsonlSink(s.jsonl, self.model.class_names)) if s.jsonl else None
        fps = self.source.fps or DEFAULT_VIDEO_FPS
        self.video = self._stack.enter_context(VideoSink(s.video, fps=fps)) if s.video else None
        max_bytes = int(s.snapshot_max_mb * 1e6)
        self.snapshots = SnapshotSink(s.snapshots, s.snapshot_max_count, max_bytes) if s.snapshots else None

    def start(self) -> None:
        self._started = time.monotonic()
        self.thread.start()

    def close(self) -> None:
        """Close the source and sinks (the loop does this itself; for a camera that never started)."""
        self._stack.close()

    def request_stop(self) -> None:
        """Ask the loop to end after the current frame; a live source is closed at once so a wait for it ends."""
        self._stop.set()
        if isinstance(self.source, LiveSource):
            self.source.close()

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self.source is not None
        live = isinstance(self.source, LiveSource)
        try:
            frames = iter(self.source)
            while not self._stop.is_set():
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                self.times.add("read", time.perf_counter() - t0)
                self._process(frame, frame.timestamp if live else time.time())
        except Exception as exc:  # one camera's failure is reported and ends that camera only
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"warning: camera {self.cfg.name}: stopped: {self.error}", file=sys.stderr, flush=True)
        finally:
            self._ended = time.monotonic()
            self.close()  # sinks flushed, source released
            self._publish(force=True, online=False)
            self._set_online(False)

    def _process(self, frame: Frame, captured: float) -> None:
        if frame.timestamp < self._last_ts:  # image folders stamp frames by mtime; trackers need time to run forward
            frame = replace(frame, timestamp=self._last_ts)
        self._last_ts = frame.timestamp
        if not self._online:
            self._online = True
            self._set_online(True)
            if self.rois:  # checked against the first real frame: a slot outside it is a config error
                self.rois = validate_rois(self.rois, frame.width, frame.height)
        t0 = time.perf_counter()
        if self.gate is not None and not self.gate.check(frame.image, frame.timestamp):
            self.times.add("motion", time.perf_counter() - t0)
            return self._publish()
        try:
            results = self.runner.process(self.model, frame, self.rois if self.model.task == "classify" else None)
            classifications = results if self.model.task == "classify" else None
            if self.classifier is not None:
                classifications = self.classifier.classify_frame(frame, self.rois or None)
        except Exception as exc:  # a failed inference skips the frame; the count shows it
            self.inference_errors += 1
            self._warn("inference", exc)
            return self._publish()
        t1 = time.perf_counter()
        detections, tracks = None, []
        if self.tracker is not None:
            if self._reset_tracker:  # after a reconnect the old tracks are meaningless
                self.tracker.reset()
                self._reset_tracker = False
            detections = self.tracker.update(results[0], frame.timestamp)
            tracks = self.tracker.tracks
        t2 = time.perf_counter()
        events = self.scenario.update(frame, detections, tracks, classifications)
        t3 = time.perf_counter()
        self.ages.append((time.time() - captured) * 1000.0)
        self.frames_out += 1
        image = None
        jpeg_due = self.live_view and time.monotonic() - self._last_jpeg >= 1.0 / LIVE_VIEW_FPS
        if self.video is not None or jpeg_due or any(e.data.get("snapshot") for e in events):
            image = self._draw(frame, detections if detections is not None else results, classifications)
        t4 = time.perf_counter()
        for event in events:
            if event.data.get("snapshot") and self.snapshots is not None and image is not None:
                try:
                    path = self.snapshots.save(image, event)
                except EdgecamError as exc:  # a full disk loses the picture, not the event or the camera
                    self._warn("snapshot", exc)
                    path = None
                if path is not None:
                    event.data["snapshot_path"] = str(path)
            self._record_event(event)
        if self.jsonl is not None:
            shown = [detections] if detections is not None else results
            extra: dict[str, Any] = {"events": [e.to_dict() for e in events]} if events else {}
            if self.classifier is not None and classifications:
                extra["classifications"] = classifications
            self.jsonl.write(frame, self.runner.records(shown, self.model.class_names), **extra)
        if self.video is not None and image is not None:
            self.video.write(image)
        if jpeg_due and image is not None:
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                self.state.set_jpeg(jpeg.tobytes())
                self._last_jpeg = time.monotonic()
        for stage, seconds in (("track", t2 - t1), ("scenario", t3 - t2), ("annotate", t4 - t3)):
            self.times.add(stage, seconds)
        self.times.add("write", time.perf_counter() - t4)
        self._publish()

    def _draw(self, frame: Frame, results: Any, classifications: Any) -> np.ndarray:
        if isinstance(results, Detections):
            image = draw_detections(frame.image, results, self.model.class_names)
        else:
            image = self.runner.draw(frame.image, results, self.model.class_names)
        if self.classifier is not None and classifications:
            image = draw_classifications(image, classifications)
        fps = self._fps()[1]
        return draw_stats(image, fps=fps or None)  # no FPS overlay until a rate is known

    # --- events, state, statistics ---------------------------------------------------------------------------
    def _source_event(self, event: Event) -> None:
        """From the reader thread: a lost or restored source."""
        if event.kind == SOURCE_RESTORED:
            self._reset_tracker = True
        self._record_event(event)
        self._set_online(event.kind != SOURCE_LOST)

    def _record_event(self, event: Event) -> None:
        with self._lock:
            self.events[event.kind] += 1
        self.state.add_event(event)
        self._to_sinks("publish_event", event)

    def _to_sinks(self, method: str, *args: Any) -> None:
        """Call every sink; a sink that raises is reported (rarely) and never stops the camera."""
        for sink in self.sinks:
            try:
                getattr(sink, method)(self.cfg.name, *args)
            except Exception as exc:
                self._warn(method, exc)

    def _warn(self, what: str, exc: Exception) -> None:
        """One stderr line for the 1st, 10th, 100th and every 1000th failure of a kind: visible, never a flood."""
        with self._lock:
            self.failures[what] += 1
            n = self.failures[what]
        if n in (1, 10, 100) or n % 1000 == 0:
            print(f"warning: camera {self.cfg.name}: {what} failed ({n}x): {exc}", file=sys.stderr, flush=True)

    def _set_online(self, online: bool) -> None:
        self.state.update(stats={"online": online})
        self._to_sinks("set_camera_online", online)

    def _fps(self) -> tuple[float, float]:
        """(in, out) frames per second over the last few seconds."""
        if len(self._rates) < 2:
            return 0.0, 0.0
        (t0, in0, out0), (t1, in1, out1) = self._rates[0], self._rates[-1]
        dt = max(t1 - t0, 1e-9)
        return round((in1 - in0) / dt, 2), round((out1 - out0) / dt, 2)

    def stats(self) -> dict[str, Any]:
        """The stats documented in runtime/state.py."""
        src = self.source.stats() if self.source is not None else None
        fps_in, fps_out = self._fps()
        last = round(self.ages[-1], 2) if self.ages else None
        return {
            "fps_in": fps_in,
            "fps_out": fps_out,
            "frames_in": src.read if src else 0,
            "frames_out": self.frames_out,
            "dropped": src.dropped if src else 0,
            "corrupt": src.corrupt if src else 0,
            "reconnects": src.reconnects if src else 0,
            "inference_errors": self.inference_errors,
            "frame_age_ms": {**percentiles(self.ages, digits=2), "last": last},
            "queue_depth": self.engine.queue_depth,
            "motion_skipped": self.gate.skipped if self.gate is not None else 0,
            "stages": {**self.times.summary(), **self._classifier_stages()},
        }

    def _classifier_stages(self) -> dict[str, Any]:
        times = self.classifier.times.summary() if self.classifier is not None else {}
        return {f"classifier_{k}": v for k, v in times.items()}

    def _publish(self, force: bool = False, online: bool | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_publish < PUBLISH_EVERY:
            return
        self._last_publish = now
        src = self.source.stats() if self.source is not None else None
        self._rates.append((now, src.read if src else 0, self.frames_out))
        stats = self.stats()
        if online is not None:
            stats["online"] = online
        scenario = self.scenario.state()
        self.state.update(stats=stats, scenario=scenario)
        if self.telemetry is not None:
            self.telemetry.record(self.cfg.name, stats)
        self._to_sinks("publish_state", {"scenario": scenario, "stats": stats})

    def summary(self) -> dict[str, Any]:
        seconds = max((self._ended or time.monotonic()) - self._started, 1e-9)
        stats = self.stats()
        with self._lock:
            events = dict(self.events.most_common())
        return {
            "camera": self.cfg.name,
            "source": self.cfg.source,
            "frames": self.frames_out,
            "seconds": round(seconds, 3),
            "frames_in": stats["frames_in"],
            "fps_in": round(stats["frames_in"] / seconds, 2),
            "fps_out": round(self.frames_out / seconds, 2),
            **{k: stats[k] for k in ("frame_age_ms", "dropped", "reconnects", "motion_skipped", "inference_errors")},
            "events": events,
            "error": self.error,
        }


@dataclass
class MultiRunSummary:
    """Per-camera results of a multi-camera run, as a table for people and JSON for scripts."""

    cameras: list[dict[str, Any]]
    seconds: float
    engines: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def format_table(self) -> str:
        head = f"{'camera':<14}{'frames':>8}{'fps in':>8}{'fps out':>8}{'age p50':>9}{'age p95':>9}{'dropped':>9}"
        lines = [
            f"{len(self.cameras)} cameras in {self.seconds:.1f} s" + (" (interrupted)" if self.interrupted else "")
        ]
        lines.append(head + f"{'reconn':>8}  events")
        for c in self.cameras:
            age = c["frame_age_ms"]
            events = ", ".join(f"{k} {v}" for k, v in c["events"].items()) or "-"
            lines.append(
                f"{c['camera']:<14}{c['frames']:>8}{c['fps_in']:>8.1f}{c['fps_out']:>8.1f}{age.get('p50', 0):>9.1f}"
                f"{age.get('p95', 0):>9.1f}{c['dropped']:>9}{c['reconnects']:>8}  {events}"
                + (f"  ERROR {c['error']}" if c["error"] else "")
            )
        return "\n".join(lines)


class MultiCameraRunner:
    """Loads each bundle once, runs every camera on its own threads, and shuts all of it down cleanly."""

    def __init__(
        self, config: RuntimeConfig, sinks: list[EventSink] | None = None, capture_factory: CaptureFactory | None = None
    ) -> None:
        """`sinks` receive events and state besides the configured MQTT; `capture_factory` opens the cameras
        (tests inject fake ones)."""
        self.config, self.capture_factory = config, capture_factory
        self.registry = StateRegistry()
        self.extra_sinks = list(sinks or [])
        self.engines: dict[tuple[str, str, str | None], SharedEngine] = {}
        self.cameras: list[CameraRunner] = []
        self._closers: list[Any] = []
        self.telemetry: Any = None  # Telemetry and HttpServer when `http` is configured
        self.http: Any = None

    def _engine(self, bundle: Any, backend: str, variant: str | None) -> SharedEngine:
        key = (str(bundle.resolve()), backend, variant)
        if key not in self.engines:
            model = Model(bundle, backend=backend, variant=variant, threads=self.config.threads, mode=self.config.mode)
            self.engines[key] = SharedEngine(model, self.config.workers)
        return self.engines[key]

    def start(self) -> None:
        """Load models, open sources and sinks, start MQTT and HTTP, then every camera's threads."""
        try:
            sinks = list(self.extra_sinks)
            if self.config.mqtt is not None:
                from edgecam.runtime.sinks.mqtt import MqttSink

                m = self.config.mqtt
                mqtt = MqttSink(host=m.host, port=m.port, prefix=m.prefix, qos=m.qos).start()
                mqtt.wait_connected(2.0)  # a moment for the broker, so the first events are not only queued
                self._closers.append(mqtt.close)
                sinks.append(mqtt)
            if self.config.http is not None:
                from edgecam.runtime.sinks.http import HttpServer
                from edgecam.runtime.telemetry import Telemetry

                self.telemetry = Telemetry()
                http = self.config.http
                self.http = HttpServer(self.registry, self.telemetry, http.host, http.port).start()
                self._closers.append(self.http.stop)
            for c in self.config.cameras:
                engine = self._engine(c.bundle, c.backend, c.variant)
                classifier = self._engine(c.classifier, c.backend, None) if c.classifier is not None else None
                live_view = self.http is not None
                cam = CameraRunner(c, engine, classifier, self.registry, sinks, self.telemetry, live_view)
                self.cameras.append(cam)
                cam.open(self.capture_factory)
            for cam in self.cameras:
                cam.start()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every camera, wait for its thread, close the engines, then MQTT (cameras offline) and HTTP."""
        for cam in self.cameras:
            cam.request_stop()
        for cam in self.cameras:
            if cam.thread.is_alive():
                cam.thread.join(timeout)
            elif not cam.thread.ident:  # opened but never started: close its files here
                cam.close()
        for engine in self.engines.values():
            engine.close()
        while self._closers:
            self._closers.pop()()

    def run(self, duration: float | None = None) -> MultiRunSummary:
        """Run until every camera has ended (files end; live sources run on), `duration` seconds, or Ctrl-C."""
        start = time.monotonic()
        interrupted = False
        self.start()
        try:
            while any(c.thread.is_alive() for c in self.cameras):
                if duration is not None and time.monotonic() - start >= duration:
                    break
                time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.stop()
        return MultiRunSummary(
            cameras=[c.summary() for c in self.cameras],
            seconds=round(time.monotonic() - start, 3),
            engines=[e.info() for e in self.engines.values()],
            interrupted=interrupted,
        )
