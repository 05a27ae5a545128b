"""Several cameras in one process: `MultiCameraRunner(load_cameras_config(path)).run(duration)`.

Each camera has a reader (a live source keeps only the newest frame on its own thread and reconnects; a file or
folder decodes ahead on a thread, nothing dropped) and one processing thread running the per-frame path of
`runtime/processor.py`; the camera adds MQTT, the state registry and its statistics. Cameras running the same bundle
share one loaded model (`SharedEngine`): two engines in one process slow each other down. A camera that fails or
goes offline never stops the others. Memory stays bounded: one frame slot per live source, fixed-size windows for
the statistics, no per-frame history. A single camera (`edgecam run --source`) runs on the caller's thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from edgecam.runtime.camera_config import CameraConfig, RuntimeConfig
from edgecam.runtime.engine import SharedEngine
from edgecam.runtime.live import LiveSource
from edgecam.runtime.model import Model
from edgecam.runtime.prefetch import Prefetcher
from edgecam.runtime.processor import FrameProcessor, FrameResult
from edgecam.runtime.reconnect import SOURCE_LOST, SOURCE_RESTORED
from edgecam.runtime.redact import mask_text, mask_url
from edgecam.runtime.shutdown import stop_hook
from edgecam.runtime.sinks.jsonl import to_jsonable
from edgecam.runtime.sources import CaptureFactory, Source, open_source
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.stats import HistogramSnapshot, LatencyHistogram, percentiles
from edgecam.runtime.types import Event, Frame

PUBLISH_EVERY = 0.5  # seconds between stats updates (registry, telemetry, MQTT state)


class EventSink(Protocol):
    """What a camera publishes to: `MqttSink`, or an in-memory sink in tests."""

    def publish_event(self, camera: str, event: Event) -> Any: ...
    def publish_state(self, camera: str, state: dict[str, Any]) -> Any: ...
    def set_camera_online(self, camera: str, online: bool) -> Any: ...


class CameraRunner:
    """One camera's source, processing loop, events, state and statistics."""

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
        self.state, self.sinks, self.telemetry = registry.camera(cfg.name), sinks, telemetry
        self.live_view = live_view
        self.processor = FrameProcessor(
            cfg,
            self.model,
            self.classifier,
            emit=self._record_event,
            on_jpeg=self.state.set_jpeg if live_view else None,
            fps=lambda: self._fps()[1],
            warn=self._warn,
        )
        self.times = self.model.times
        self.events: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # by kind: sink methods, snapshots, inference
        self.ages: deque[float] = deque(maxlen=512)
        self.latency = LatencyHistogram()  # capture to processed result, per frame, whole run (seconds)
        self.error: str | None = None
        self.exception: BaseException | None = None  # what ended the camera, for callers that re-raise it
        self.max_frames: int | None = None
        self.deadline: float | None = None  # time.monotonic() at which the camera stops
        self.progress: Callable[[int, float], None] | None = None  # a camera on the caller's thread reports here
        self._rates: deque[tuple[float, int, int]] = deque(maxlen=12)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._online = False
        self._last_publish = 0.0
        self._started = self._ended = 0.0
        self._stack = ExitStack()
        self.source: Source | None = None
        self.thread = threading.Thread(target=self.loop, name=f"edgecam-cam-{cfg.name}", daemon=True)

    @property
    def frames_out(self) -> int:
        return self.processor.frames

    @property
    def inference_errors(self) -> int:
        return self.processor.inference_errors

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self, capture_factory: CaptureFactory | None = None) -> None:
        """Open the source and the output files on the caller's thread: a bad file fails before anything runs."""
        c = self.cfg
        options = {"resolution": c.resolution, "reconnect": c.reconnect, "on_event": self._source_event, "loop": c.loop}
        src = open_source(c.source, c.max_fps, c.stride, capture_factory=capture_factory, **options)
        self.source = self._stack.enter_context(src)
        self.processor.check_size(self.source.size)  # files know their size: a bad ROI fails before any output
        self._stack.callback(self.processor.close)
        self.processor.open(self.source.fps)

    def start(self) -> None:
        self._started = time.monotonic()
        self.thread.start()

    def close(self) -> None:
        """Close the source and the outputs (the loop does this itself; for a camera that never started)."""
        self._stack.close()

    def request_stop(self) -> None:
        """Ask the loop to end after the current frame; a live source is closed at once so a wait for it ends."""
        self._stop.set()
        if isinstance(self.source, LiveSource):
            self.source.close()

    # --- the loop -------------------------------------------------------------------------------------------
    def loop(self) -> None:
        """Read and process frames until the source ends, a stop is asked for, `max_frames` are read or the
        deadline. A file read as fast as it decodes keeps two frames in flight (the engine runs one while this
        thread prepares or writes the other); a live or paced source one, the newest."""
        assert self.source is not None
        self._started = self._started or time.monotonic()
        live = isinstance(self.source, LiveSource)
        depth = 1 if live or self.cfg.max_fps else 2
        self.model.overlap = depth > 1  # one frame at a time infers on this thread, with no hand-off
        inflight: deque[FrameResult] = deque()
        read = 0
        try:
            # Files and folders decode ahead on a thread (order kept, nothing dropped); live sources already do.
            ahead = None if live else Prefetcher(iter(self.source), lower_priority=True)
            frames = iter(self.source) if ahead is None else self._stack.enter_context(ahead)
            try:
                while not self._stop.is_set():
                    if self.max_frames is not None and read >= self.max_frames:
                        break
                    if self.deadline is not None and time.monotonic() >= self.deadline:
                        break
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    if frame is None:
                        if live and not self._stop.is_set():  # a live camera has no end: it was lost for good
                            self.error = "the live stream ended and did not come back"
                        break
                    self.times.add("read", time.perf_counter() - t0)
                    read += 1
                    inflight.append(self._begin(frame))
                    while len(inflight) >= depth:
                        self._finish(inflight.popleft())
                    if self.processor.all_outputs_failed and not self.sinks and not self.live_view:
                        self.error = f"every output failed ({', '.join(self.processor.failed_outputs)})"
                        break
            finally:  # what was started is finished and written, however the loop ends
                while inflight:
                    self._finish(inflight.popleft())
        except Exception as exc:  # one camera's failure is reported and ends that camera only
            self.exception = exc
            self.error = mask_text(f"{type(exc).__name__}: {exc}")
            print(f"warning: camera {self.cfg.name}: stopped: {self.error}", file=sys.stderr, flush=True)
        finally:
            self._ended = time.monotonic()
            self.close()  # outputs flushed, source released
            if self.error is not None and self.exception is None:
                print(f"warning: camera {self.cfg.name}: stopped: {self.error}", file=sys.stderr, flush=True)
            self._publish(force=True, online=False)
            self._set_online(False)

    def _begin(self, frame: Frame) -> FrameResult:
        if not self._online:
            self._online = True
            self._set_online(True)
        return self.processor.begin(frame)

    def _finish(self, started: FrameResult) -> None:
        result = self.processor.finish(started)
        if not result.skipped and result.error is None:  # one observation per processed frame (frames_out)
            age = time.time() - result.frame.arrived
            self.ages.append(age * 1000.0)
            self.latency.observe(age)
        self._publish()
        if self.progress is not None and not self.thread.ident:
            self.progress(self.processor.frames, time.monotonic() - self._started)

    # --- events, state, statistics ---------------------------------------------------------------------------
    def _source_event(self, event: Event) -> None:
        """From the reader thread: a lost or restored source."""
        if event.kind == SOURCE_RESTORED:
            self.processor.reset_tracker = True
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
        with self._lock:
            events = dict(self.events)
        return {
            "fps_in": fps_in,
            "fps_out": fps_out,
            "frames_in": src.read if src else 0,
            "frames_out": self.frames_out,
            "dropped": src.dropped if src else 0,
            "corrupt": src.corrupt if src else 0,
            "reconnects": src.reconnects if src else 0,
            "inference_errors": self.inference_errors,
            "nonfinite": self.processor.nonfinite,
            "frame_age_ms": {**percentiles(self.ages, digits=2), "last": last},
            "queue_depth": self.engine.queue_depth,
            "motion_skipped": self.processor.gate.skipped if self.processor.gate is not None else 0,
            "stages": {**self.times.summary(), **self._classifier_stages()},
            "events": events,
        }

    def histograms(self) -> dict[str, Any]:
        """Latency histograms over the whole run, for Prometheus (kept out of `stats`: /api and MQTT need none)."""
        stages: dict[str, HistogramSnapshot] = self.times.histograms()
        if self.classifier is not None:
            stages.update({f"classifier_{k}": v for k, v in self.classifier.times.histograms().items()})
        return {"frame_latency": self.latency.snapshot(), "stages": stages}

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
        scenario = self.processor.scenario.state()
        histograms = self.histograms()
        self.state.update(stats=stats, scenario=scenario, histograms=histograms)
        if self.telemetry is not None:
            self.telemetry.record(self.cfg.name, stats, histograms)
        self._to_sinks("publish_state", {"scenario": scenario, "stats": stats})

    def summary(self) -> dict[str, Any]:
        seconds = max((self._ended or time.monotonic()) - self._started, 1e-9)
        stats = self.stats()
        with self._lock:
            events = dict(self.events.most_common())
        return {
            "camera": self.cfg.name,
            "source": mask_url(self.cfg.source),  # never the camera's password
            "frames": self.frames_out,
            "seconds": round(seconds, 3),
            "frames_in": stats["frames_in"],
            "fps_in": round(stats["frames_in"] / seconds, 2),
            "fps_out": round(self.frames_out / seconds, 2),
            **{
                k: stats[k]
                for k in ("frame_age_ms", "dropped", "reconnects", "motion_skipped", "inference_errors", "nonfinite")
            },
            "events": events,
            "labels": dict(self.processor.labels.most_common()),
            "stages": stats["stages"],
            "source_stats": self.source.stats().to_dict() if self.source is not None else {},
            "outputs": self.processor.outputs(),
            "failed_outputs": dict(self.processor.failed_outputs),
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
        for e in self.engines:  # which device each shared model really ran on
            lines.append(
                f"engine   {e.get('variant', '?')} on {e.get('backend')} {e.get('device', 'CPU')} "
                f"(threads {e.get('threads')}, workers {e.get('workers')})"
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
        self.engines: dict[tuple[Any, ...], SharedEngine] = {}
        self.cameras: list[CameraRunner] = []
        self._closers: list[Any] = []
        self.telemetry: Any = None  # Telemetry and HttpServer when `http` is configured
        self.http: Any = None
        self.stop_requested = False  # a stop signal (SIGTERM, Ctrl-C under `edgecam run`) asked every camera to end

    def _engine(
        self,
        bundle: Any,
        backend: str,
        variant: str | None,
        conf: float | None = None,
        iou: float | None = None,
        device: str | None = None,
    ) -> SharedEngine:
        """The shared engine of (bundle, backend, device, variant, thresholds), loaded on first use."""
        key = (str(bundle.resolve()), backend, device, variant, conf, iou)
        if key not in self.engines:
            c = self.config
            model = Model(bundle, backend, variant, threads=c.threads, conf=conf, iou=iou, mode=c.mode, device=device)
            self.engines[key] = SharedEngine(model, c.workers)
        return self.engines[key]

    def start(self, threads: bool = True) -> None:
        """Load models, open sources and sinks, start MQTT and HTTP, then every camera's thread (with `threads`;
        without, the caller runs the cameras' loops)."""
        try:
            sinks = list(self.extra_sinks)
            if self.config.mqtt is not None:
                from edgecam.runtime.sinks.mqtt import MqttSink

                m = self.config.mqtt
                tls = m.tls
                mqtt = MqttSink(
                    host=m.host,
                    port=m.port,
                    prefix=m.prefix,
                    device=self.config.device_id,
                    qos=m.qos,
                    username=m.username,
                    password=m.password(),  # from the environment, here and nowhere else
                    tls=tls is not None,
                    ca_certs=tls.ca if tls else None,
                    certfile=tls.cert if tls else None,
                    keyfile=tls.key if tls else None,
                ).start()
                mqtt.wait_connected(2.0)  # a moment for the broker, so the first events are not only queued
                self._closers.append(mqtt.close)
                sinks.append(mqtt)
            if self.config.http is not None:
                from edgecam.runtime.sinks.http import HttpServer
                from edgecam.runtime.telemetry import Telemetry

                self.telemetry = Telemetry(device=self.config.device_id)
                http = self.config.http
                self.http = HttpServer(
                    self.registry,
                    self.telemetry,
                    http.host,
                    http.port,
                    token=http.token(),
                    timeout=http.timeout,
                    origin=self.config.path,
                ).start()
                self._closers.append(self.http.stop)
            for c in self.config.cameras:
                engine = self._engine(c.bundle, c.backend, c.variant, c.conf, c.iou, c.device)
                classifier = (
                    self._engine(c.classifier, c.backend, None, device=c.device) if c.classifier is not None else None
                )
                live_view = self.http is not None
                cam = CameraRunner(c, engine, classifier, self.registry, sinks, self.telemetry, live_view)
                self.cameras.append(cam)
                cam.open(self.capture_factory)
            for cam in self.cameras if threads else []:
                cam.start()
        except BaseException:
            self.stop()
            raise

    def request_stop(self) -> None:
        """Ask every camera to end after its current frame. Safe in a signal handler: it sets flags and closes live
        sources, whose readers it waits for at most 2 s each (runtime/live.py)."""
        self.stop_requested = True
        for cam in self.cameras:
            cam.request_stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every camera, wait for its thread, close the engines, then MQTT (cameras offline) and HTTP."""
        for cam in self.cameras:
            cam.request_stop()
        for cam in self.cameras:
            if cam.thread.is_alive():
                cam.thread.join(timeout)
            else:  # never started, or ran on the caller's thread: close its files here (a second close is a no-op)
                cam.close()
        for engine in self.engines.values():
            engine.close()
        while self._closers:
            self._closers.pop()()

    def run(
        self,
        duration: float | None = None,
        max_frames: int | None = None,
        progress: Callable[[int, float], None] | None = None,
    ) -> MultiRunSummary:
        """Run until every camera has ended (files end; live sources run on), `duration` seconds, `max_frames`
        processed per camera, or Ctrl-C. One camera runs on this thread (Ctrl-C lands where the work is);
        several run on their own. `progress(frames, seconds)` is called as frames are processed."""
        start = time.monotonic()
        interrupted = False
        inline = len(self.config.cameras) == 1
        self.start(threads=not inline)
        for cam in self.cameras:
            cam.max_frames = max_frames
            cam.deadline = start + duration if duration is not None else None
            cam.progress = progress
        try:
            with stop_hook(self.request_stop):
                if inline:
                    self.cameras[0].loop()
                while any(c.thread.is_alive() for c in self.cameras):
                    if duration is not None and time.monotonic() - start >= duration:
                        break
                    if progress is not None:
                        progress(sum(c.frames_out for c in self.cameras), time.monotonic() - start)
                    time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.stop()
        interrupted = interrupted or self.stop_requested
        return MultiRunSummary(
            cameras=[c.summary() for c in self.cameras],
            seconds=round(time.monotonic() - start, 3),
            engines=[e.info() for e in self.engines.values()],
            interrupted=interrupted,
        )
