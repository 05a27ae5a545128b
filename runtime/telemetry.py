"""Prometheus metrics for the camera runners, on a private registry.

A private `CollectorRegistry` (not prometheus-client's global one) lets tests and several runners in one process each
own their metrics without "Duplicated timeseries" errors.

Runners publish *cumulative* stats (see `runtime/state.py`); Prometheus counters only move forward, so `record()`
increments each counter by the change since the previous call for that camera. Recording the same stats twice is a
no-op, which is what makes `sync(registry)` on every scrape safe. A cumulative value that goes down means the runner
restarted its counts; the counter then moves by the new value (Prometheus' own reset semantics).

The process's own resident memory, CPU seconds and open files are exported too (`edgecam_process_resident_memory_bytes`
...): a slow memory leak on a device shows there long before the box runs out.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest

from edgecam.runtime.state import StateRegistry

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


class Telemetry:
    """Per-camera metrics (label `camera`); `record()` from the runners, `exposition()` for /metrics."""

    def __init__(self, namespace: str = "edgecam") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(namespace=namespace, registry=self.registry)  # RSS, CPU, fds (Linux /proc; else nothing)
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
        self._stage_p50 = Gauge(
            "stage_latency_p50_seconds",
            "Median latency of a pipeline stage (sliding window)",
            ["camera", "stage"],
            namespace=namespace,
            registry=self.registry,
        )
        self._stage_p95 = Gauge(
            "stage_latency_p95_seconds",
            "95th percentile latency of a pipeline stage (sliding window)",
            ["camera", "stage"],
            namespace=namespace,
            registry=self.registry,
        )

    def record(self, camera: str, stats: dict[str, Any]) -> None:
        """Apply one camera's stats dict (the keys documented in `runtime/state.py`; missing keys are left alone)."""
        with self._lock:
            self._record(camera, stats)

    def sync(self, registry: StateRegistry) -> None:
        """Record every camera's current stats; HttpServer calls this per scrape so runners need not call record().

        The snapshot is read under the telemetry lock, so two concurrent scrapes cannot apply an older snapshot after a
        newer one (which would look like a counter reset). A runner that also calls `record()` must update the
        registry first, for the same reason.
        """
        with self._lock:
            for name in registry.names():
                self._record(name, registry.camera(name).snapshot()["stats"])

    def _record(self, camera: str, stats: dict[str, Any]) -> None:
        for key, counter in self._counters.items():
            value = _number(stats.get(key))
            if value is None:
                continue
            previous = self._previous.get((camera, key), 0.0)
            delta = value - previous if value >= previous else value
            if delta > 0:
                counter.labels(camera=camera).inc(delta)
            else:
                counter.labels(camera=camera)  # the series exists (at 0) from the first report on
            self._previous[(camera, key)] = value
        for key, gauge in self._gauges.items():
            value = _number(stats.get(key))
            if value is not None:
                gauge.labels(camera=camera).set(value)
        age = stats.get("frame_age_ms")
        if isinstance(age, dict) and _number(age.get("last")) is not None:
            self._frame_age.labels(camera=camera).set(float(age["last"]) / 1000.0)
        if "online" in stats:
            self._online.labels(camera=camera).set(1.0 if stats["online"] else 0.0)
        stages = stats.get("stages")
        if isinstance(stages, dict):
            for stage, summary in stages.items():
                if not isinstance(summary, dict):
                    continue
                for key, gauge in (("p50_ms", self._stage_p50), ("p95_ms", self._stage_p95)):
                    value = _number(summary.get(key))
                    if value is not None:
                        gauge.labels(camera=camera, stage=str(stage)).set(value / 1000.0)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (serve with `prometheus_client.CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)
