"""Live sources (camera index, RTSP/HTTP URL): read on their own daemon thread into a one-slot buffer.

The consumer always gets the newest frame, so latency never builds up behind a slow model; a frame replaced
before the consumer took it counts as dropped. Given a `ReconnectPolicy`, a live source that fails to open or
stops delivering is reopened with backoff (`runtime/reconnect.py`) instead of ending.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.priority import lower_own_priority
from edgecam.runtime.reconnect import EventCallback, Reconnector, ReconnectPolicy
from edgecam.runtime.redact import mask_text, mask_url
from edgecam.runtime.sources import (
    Capture,
    CaptureFactory,
    Resolution,
    Source,
    SourceStats,
    as_frame,
    default_capture,
    warn,
)
from edgecam.runtime.types import Frame


class LiveReader:
    """Reads a live capture on a daemon thread into a one-slot buffer that always holds the newest frame.

    After `max_failures` failed reads in a row `_on_lost()` runs: without a `reconnector` the stream ends; with
    one the capture is reopened with backoff (the reconnector also counts no-frame stalls as losses), and
    reading resumes. With `capture=None` the reconnector opens the first capture on this thread, so an
    unreachable camera never blocks the caller.
    """

    def __init__(
        self,
        capture: Capture | None,
        source_id: str,
        stride: int = 1,
        max_failures: int = 25,
        reconnector: Reconnector | None = None,
    ) -> None:
        self.capture, self.stride, self.max_failures = capture, stride, max_failures
        self.source_id = mask_url(source_id)  # names frames, warnings and the thread: never the password
        self.reconnector = reconnector
        self.stats = SourceStats()
        self.error: Exception | None = None
        self._slot: Frame | None = None
        self._ended = False
        self._stop = reconnector.stop if reconnector is not None else threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"edgecam-live-{self.source_id}", daemon=True)

    @property
    def online(self) -> bool:
        """Frames are flowing (False before the first frame, while reconnecting and after the end)."""
        if self.reconnector is not None:
            return self.reconnector.online and not self._ended
        return self._thread.is_alive() and self.stats.read > 0

    def start(self) -> LiveReader:
        self._thread.start()
        return self

    def _read(self) -> tuple[bool, Any]:
        try:
            return self.capture.read()  # type: ignore[union-attr]
        except Exception as exc:  # a backend error: a lost stream to reconnect, or the end without reconnection
            if self.reconnector is None:
                raise
            self.error = exc
            return False, None

    def _lost(self, failures: int, since_frame: float) -> bool:
        if self.reconnector is not None:
            return self.reconnector.policy.is_lost(failures, since_frame)
        return failures >= self.max_failures

    def _run(self) -> None:
        lower_own_priority()  # and the decoder threads a reconnect opens here inherit it (runtime/priority.py)
        captured, failures, last_frame = 0, 0, time.monotonic()
        try:
            if self.capture is None and self.reconnector is not None:
                self.capture = self.reconnector.open()
            while self.capture is not None and not self._stop.is_set():
                ok, image = self._read()
                frame = as_frame(image, time.time(), self.source_id, captured) if ok else None
                if frame is None:
                    failures += 1
                    if self._lost(failures, time.monotonic() - last_frame):
                        self._on_lost()
                        failures, last_frame = 0, time.monotonic()
                    else:
                        time.sleep(0.01)
                    continue
                self.stats.corrupt += failures  # failures followed by a good frame were corrupt frames, not the end
                failures, last_frame = 0, time.monotonic()
                if self.reconnector is not None:
                    self.reconnector.frame()
                    self.stats.reconnects = self.reconnector.reconnects
                captured += 1
                if (captured - 1) % self.stride:
                    continue
                with self._cond:
                    if self._slot is not None:
                        self.stats.dropped += 1
                    self._slot = frame
                    self.stats.read += 1
                    self._cond.notify_all()
        except Exception as exc:  # a backend error must end the stream visibly, not kill the thread silently
            self.error = exc
            warn(f"{self.source_id}: capture failed: {mask_text(exc)}")
        finally:
            if self.capture is not None:
                self.capture.release()  # the thread owns the capture: never released while a read is in flight
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _on_lost(self) -> None:
        """Release the dead capture; reopen it through the reconnector, or end the stream (capture = None)."""
        assert self.capture is not None
        self.capture.release()
        self.capture = None
        if self.reconnector is None:
            warn(f"{self.source_id}: stream lost after {self.max_failures} failed reads")
            return
        reason = "no frames" if self.error is None else f"capture error: {mask_text(self.error)}"
        self.capture = self.reconnector.lost(reason)
        self.error = None

    def get(self) -> Frame | None:
        """The newest frame not yet taken (waits for one); None once the stream has ended or the reader is
        stopped and nothing is left."""
        with self._cond:
            while self._slot is None and not self._ended and not self._stop.is_set():
                self._cond.wait(0.1)  # a timeout keeps Ctrl-C responsive
            frame, self._slot = self._slot, None
            return frame

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._cond:
            if self._slot is not None:  # never taken by the consumer
                self.stats.dropped += 1
                self._slot = None


class LiveSource(Source):
    """A camera index or an RTSP/HTTP URL, read by a `LiveReader`.

    Without `reconnect` the capture is opened here and a failure is an EdgecamError. With it, the reader thread
    opens (and reopens) the capture, so a camera that is down at start-up or later does not stop the caller;
    `on_event` gets the `source_lost` / `source_restored` events.
    """

    def __init__(
        self,
        spec: str,
        max_fps: float | None = None,
        stride: int = 1,
        capture_factory: CaptureFactory = default_capture,
        resolution: Resolution | None = None,
        reconnect: ReconnectPolicy | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        super().__init__(spec, max_fps, stride, resolution)  # self.spec: the masked name (runtime/redact.py)
        target: str | int = int(spec) if spec.isdigit() else spec  # the real URL: only the opener holds it
        if reconnect is not None:
            reconnector = Reconnector(self.spec, lambda: capture_factory(target), reconnect, on_event)
            self.reader = LiveReader(None, self.spec, stride, reconnect.max_failures, reconnector).start()
            self._stats = self.reader.stats
            return
        cap = capture_factory(target)
        if not cap.isOpened():
            cap.release()
            where = self.spec
            if isinstance(target, int):
                raise EdgecamError("cannot open the camera", path=where, fix="check the camera index: ls /dev/video*")
            raise EdgecamError("cannot open the stream", path=where, fix="check the URL, credentials and network")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        self._set_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
        self.reader = LiveReader(cap, self.spec, stride).start()
        self._stats = self.reader.stats

    def _frames(self) -> Iterator[Frame]:
        while not self._closed:
            self._pace()
            frame = self.reader.get()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        if not self._closed:
            self.reader.stop()
        super().close()
