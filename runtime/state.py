"""Live state of every camera, shared by the camera runners (writers) and the HTTP/MQTT sinks (readers).

Stats keys a runner publishes (all optional; numbers, JSON-able):
`fps_in`, `fps_out`, `frames_in`, `frames_out`, `dropped`, `corrupt`, `reconnects`, `inference_errors`, `nonfinite`,
`frame_age_ms` ({"p50", "p95", "last"}), `queue_depth`, `motion_skipped`, `online` (bool),
`stages` ({stage: {"p50_ms", "p95_ms", "count", "mean_ms"}} as from `StageTimes.summary()`), `events` ({type: count}).

Histograms a runner keeps beside them (for Prometheus only; neither /api nor MQTT state carries them):
`frame_latency` (a `HistogramSnapshot`, one observation per processed frame) and `stages` ({stage: HistogramSnapshot}).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from edgecam.runtime.types import Event


class CameraState:
    """One camera: the newest annotated JPEG, its stats, its scenario state and its recent events."""

    def __init__(self, name: str, max_events: int = 100) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._new_jpeg = threading.Condition(self._lock)
        self.stats: dict[str, Any] = {"online": False}
        self.scenario: dict[str, Any] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.histograms: dict[str, Any] = {}
        self.updated = 0.0

    def set_jpeg(self, jpeg: bytes) -> None:
        with self._new_jpeg:
            self._jpeg, self._jpeg_seq = jpeg, self._jpeg_seq + 1
            self._new_jpeg.notify_all()

    def wait_jpeg(self, after_seq: int, timeout: float = 2.0) -> tuple[bytes | None, int]:
        """Block until a frame newer than `after_seq` exists (MJPEG streaming), or the timeout passes."""
        with self._new_jpeg:
            self._new_jpeg.wait_for(lambda: self._jpeg_seq > after_seq, timeout=timeout)
            return self._jpeg, self._jpeg_seq

    def update(
        self,
        stats: dict[str, Any] | None = None,
        scenario: dict[str, Any] | None = None,
        histograms: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            if stats:
                self.stats.update(stats)
            if scenario is not None:
                self.scenario = scenario
            if histograms is not None:
                self.histograms = histograms
            self.updated = time.time()

    def metrics(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(stats, histograms) from one update, for a scrape: a histogram's count never runs ahead of its counters."""
        with self._lock:
            return dict(self.stats), self.histograms

    def add_event(self, event: Event) -> None:
        with self._lock:
            self.events.appendleft(event.to_dict())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy for /api/cameras and MQTT state messages."""
        with self._lock:
            return {
                "name": self.name,
                "stats": dict(self.stats),
                "scenario": dict(self.scenario),
                "events": list(self.events)[:20],
                "updated": self.updated,
            }


class StateRegistry:
    """All cameras by name; created once by the runner and handed to the sinks."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraState] = {}
        self._lock = threading.Lock()

    def camera(self, name: str) -> CameraState:
        with self._lock:
            if name not in self._cameras:
                self._cameras[name] = CameraState(name)
            return self._cameras[name]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def snapshot(self) -> dict[str, Any]:
        return {name: self.camera(name).snapshot() for name in self.names()}
