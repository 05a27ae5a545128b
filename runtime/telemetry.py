"""Prometheus metrics for the camera runners, on a private registry.

A private `CollectorRegistry` (not prometheus-client's global one) lets tests and several runners in one process each
own their metrics without "Duplicated timeseries" errors.

Runners publish *cumulative* stats (see `runtime/state.py`); Prometheus counters only move forward, so `record()`
increments each counter by the change since the previous call for that camera. Recording the same stats twice is a
no-op, which is what makes `sync(registry)` on every scrape safe. A cumulative value that goes down means the runner
restarted its counts; the counter then moves by the new value (Prometheus' own reset semantics).

The process's own resident memory, CPU seconds and open files are exported too (`edgecam_process_resident_memory_bytes`
...): a slow memory leak on a device shows there long before the box runs out.

Latency is exported as histograms with fixed buckets (`edgecam_stage_latency_seconds{stage}` per pipeline stage,
`edgecam_frame_latency_seconds` from capture to result, one observation per processed frame), which add up across
cameras and devices: `histogram_quantile(0.95, sum by (le) (rate(edgecam_stage_latency_seconds_bucket{stage="infer"}
[5m])))` is the fleet's p95. They replace the p50/p95 gauges of earlier versions: a percentile of one camera's window
cannot be combined with another's, and the JSON API and run summaries still give those per camera. Events are counted
by type (`edgecam_events_total{camera,type}`).

Every sample carries a `device` label (the device id, as in the MQTT topics), added to the private registry's output
at exposition, so a Prometheus scraping many devices can sum over them or pick one whatever its target is called.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edgecam.runtime.device_id import default_device_id
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.stats import HistogramSnapshot

# stats key -> (metric name without the _total suffix, help text)
_COUNTERS: dict[str, tuple[str, str]] = {
    "frames_in": ("frames_in", "Frames read from the source"),
    "frames_out": ("frames_out", "Frames fully processed (inference, scenario, sinks)"),
    "dropped": ("dropped_frames", "Frames dropped because a newer one arrived first"),
    "corrupt": ("corrupt_frames", "Frames skipped because they could not be decoded"),
    "inference_errors": ("inference_errors", "Frames whose inference raised an error"),
    "nonfinite": ("nonfinite_outputs", "Frames whose model output held NaN or inf"),
    "reconnects": ("reconnects", "Times the source was reopened after a loss"),
    "motion_skipped": ("motion_skipped", "Frames not run through the model because nothing moved"),
}
_GAUGES: dict[str, tuple[str, str]] = {
    "fps_in": ("fps_in", "Frames per second read from the source"),
    "fps_out": ("fps_out", "Frames per second fully processed"),
    "queue_depth": ("queue_depth", "Frames waiting between capture and inference"),
}


def _number(value: Any) -> float | None:
    """A stats value as a float, or None when it is missing or not a number (skipped, never a crash)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bounds(bounds: tuple[float, ...]) -> list[str]:
    """Bucket bounds as Prometheus' own clients write them (0.005, 2.0), then +Inf."""
    return [repr(float(b)) for b in bounds] + ["+Inf"]


class _Histograms(Collector):
    """The runners' latest histogram snapshots as Prometheus histograms, built at scrape time, labelled with the
    device here (they are most of the page's lines: relabelling them afterwards would cost a fifth of a scrape).

    The counts are kept by the runners (runtime/stats.py), cumulative over the run; a prometheus-client `Histogram`
    only takes single observations, so the snapshots are handed over as they are, like any exporter of counts it
    does not own."""

    def __init__(self, namespace: str, device: str) -> None:
        self.namespace, self.device = namespace, device
        self.latest: dict[str, dict[str, Any]] = {}  # camera -> {"frame_latency": ..., "stages": {...}}
        self._le: dict[tuple[float, ...], list[str]] = {}

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to check for clashes at registration: the names are fixed and unique

    def collect(self) -> Iterator[Metric]:
        stage = HistogramMetricFamily(
            f"{self.namespace}_stage_latency_seconds",
            "Time a pipeline stage took per frame (read, preprocess, infer, postprocess, track, scenario, ...)",
            labels=["camera", "device", "stage"],
        )
        frame = HistogramMetricFamily(
            f"{self.namespace}_frame_latency_seconds",
            "Time from a frame's capture to its processed result; one observation per processed frame",
            labels=["camera", "device"],
        )
        for camera, histograms in list(self.latest.items()):
            snapshot = histograms.get("frame_latency")
            if isinstance(snapshot, HistogramSnapshot):
                frame.add_metric([camera, self.device], *self._buckets(snapshot))
            stages = histograms.get("stages")
            for name, snapshot in stages.items() if isinstance(stages, dict) else ():
                if isinstance(snapshot, HistogramSnapshot):
                    stage.add_metric([camera, self.device, str(name)], *self._buckets(snapshot))
        yield stage
        yield frame

    def _buckets(self, snapshot: HistogramSnapshot) -> tuple[list[tuple[str, float]], float]:
        le = self._le.get(snapshot.bounds) or self._le.setdefault(snapshot.bounds, _bounds(snapshot.bounds))
        return [(b, float(n)) for b, (_, n) in zip(le, snapshot.cumulative(), strict=True)], snapshot.sum


class _DeviceLabel(Collector):
    """Every sample of `registry` with `device="<id>"` added, process metrics included (the histograms are not in
    `registry`: they are built with the label).

    The counters' `_created` samples are left out: in the text format Prometheus stores each as a series of its
    own (a fleet would keep one per camera and counter for nothing), and they doubled every counter's lines."""

    def __init__(self, registry: CollectorRegistry, device: str) -> None:
        self.registry, self.device = registry, device

    def collect(self) -> Iterator[Metric]:
        device = self.device
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s._replace(labels={"device": device, **s.labels})
                for s in family.samples
                if not s.name.endswith("_created")
            ]
            yield labelled


class Telemetry:
    """Per-camera metrics (label `camera`; `device` on every sample, by default the host name as a device id);
    `record()` from the runners, `exposition()` for /metrics."""

    def __init__(self, namespace: str = "edgecam", device: str | None = None) -> None:
        self.device = default_device_id() if device is None else device
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(namespace=namespace, registry=self.registry)  # RSS, CPU, fds (Linux /proc; else nothing)
        self._exposed = CollectorRegistry(auto_describe=False)  # what /metrics shows: all of it, with `device`
        self._exposed.register(_DeviceLabel(self.registry, self.device))
        self._lock = threading.Lock()
        self._previous: dict[tuple[str, str], float] = {}
        self._counters = {
            key: Counter(name, text, ["camera"], namespace=namespace, registry=self.registry)
            for key, (name, text) in _COUNTERS.items()
        }
        self._gauges = {
            key: Gauge(name, text, ["camera"], namespace=namespace, registry=self.registry)
            for key, (name, text) in _GAUGES.items()
        }
        self._frame_age = Gauge(
            "frame_age_seconds",
            "Age of the newest processed frame",
            ["camera"],
            namespace=namespace,
            registry=self.registry,
        )
        self._online = Gauge(
            "camera_online",
            "1 while the camera delivers frames",
            ["camera"],
            namespace=namespace,
            registry=self.registry,
        )
        self._events = Counter(
            "events", "Events emitted, by type", ["camera", "type"], namespace=namespace, registry=self.registry
        )
        self._histograms = _Histograms(namespace, self.device)
        self._exposed.register(self._histograms)

    def record(self, camera: str, stats: dict[str, Any], histograms: dict[str, Any] | None = None) -> None:
        """Apply one camera's stats dict and histograms (as documented in `runtime/state.py`; missing keys are
        left alone)."""
        with self._lock:
            self._record(camera, stats, histograms)

    def sync(self, registry: StateRegistry) -> None:
        """Record every camera's current stats; HttpServer calls this per scrape so runners need not call record().

        The snapshot is read under the telemetry lock, so two concurrent scrapes cannot apply an older snapshot after a
        newer one (which would look like a counter reset). A runner that also calls `record()` must update the
        registry first, for the same reason.
        """
        with self._lock:
            for name in registry.names():
                self._record(name, *registry.camera(name).metrics())

    def _advance(self, counter: Any, key: tuple[str, str], value: float) -> None:
        """Move `counter` (a labelled child) up to the cumulative `value`; a lower value is a restart of the count."""
        previous = self._previous.get(key, 0.0)
        delta = value - previous if value >= previous else value
        if delta > 0:
            counter.inc(delta)
        self._previous[key] = value

    def _record(self, camera: str, stats: dict[str, Any], histograms: dict[str, Any] | None = None) -> None:
        for key, counter in self._counters.items():
            value = _number(stats.get(key))
            if value is not None:  # the series exists (at 0) from the first report on
                self._advance(counter.labels(camera=camera), (camera, key), value)
        events = stats.get("events")
        for kind, count in events.items() if isinstance(events, dict) else ():
            value = _number(count)
            if value is not None:
                self._advance(self._events.labels(camera=camera, type=str(kind)), (camera, f"events:{kind}"), value)
        if histograms:
            self._histograms.latest[camera] = histograms
        for key, gauge in self._gauges.items():
            value = _number(stats.get(key))
            if value is not None:
                gauge.labels(camera=camera).set(value)
        age = stats.get("frame_age_ms")
        if isinstance(age, dict) and _number(age.get("last")) is not None:
            self._frame_age.labels(camera=camera).set(float(age["last"]) / 1000.0)
        if "online" in stats:
            self._online.labels(camera=camera).set(1.0 if stats["online"] else 0.0)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (serve with `prometheus_client.CONTENT_TYPE_LATEST`)."""
        return generate_latest(self._exposed)
