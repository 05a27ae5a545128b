"""Stopping a run the way service managers do: SIGTERM (systemd, Docker, Kubernetes) as well as Ctrl-C.

The first SIGTERM or SIGINT asks the running cameras to stop (`stop_hook`): each finishes the frames in flight
between two frames, never in the middle of one, then every output is closed (the MP4 gets its index, the JSON lines
are flushed, MQTT says "offline") and the summary is printed, exit 0. Before the cameras run (models loading) there
is nothing to drain and the signal raises `KeyboardInterrupt` as Ctrl-C always did. The drain is bounded: a second
signal, or a drain longer than `drain_seconds`, ends the process at once with a non-zero code and one line saying
so, because a supervisor that asked twice, or a stop stuck on a hung camera, must not wait forever.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

DRAIN_SECONDS = 8.0  # far above a clean drain (well under 1 s), below Docker's 10 s before it sends SIGKILL
EXIT_DRAIN_TIMEOUT = 124  # the drain outlived its limit (the code `timeout` uses)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


_hooks: list[Callable[[], None]] = []


@contextmanager
def stop_hook(hook: Callable[[], None]) -> Iterator[None]:
    """While inside, a stop signal calls `hook` (which must not wait long or take a lock the
    interrupted code may hold: set flags, wake waits) instead of raising."""
    _hooks.append(hook)
    try:
        yield
    finally:
        _hooks.remove(hook)


class GracefulStop:
    """`install()` in the main thread before a run; the first signal interrupts it, a second exits at once."""

    def __init__(self, drain_seconds: float = DRAIN_SECONDS, name: str = "edgecam run") -> None:
        self.drain_seconds, self.name = drain_seconds, name
        self.received: int | None = None  # the first signal's number
        self._timer: threading.Timer | None = None

    def install(self) -> GracefulStop:
        """Take SIGINT and SIGTERM, even when the run was started with them ignored (a shell's background job)."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self._exit(128 + signum, f"{name} again: exiting without finishing the outputs")
        self.received = signum
        self._timer = threading.Timer(self.drain_seconds, self._drain_expired)
        self._timer.daemon = True
        self._timer.start()
        print(f"{self.name}: {name}: stopping (a second signal exits at once)", file=sys.stderr, flush=True)
        if not _hooks:
            raise KeyboardInterrupt
        for hook in list(_hooks):
            hook()

    def _drain_expired(self) -> None:
        self._exit(EXIT_DRAIN_TIMEOUT, f"still stopping after {self.drain_seconds:g} s: exiting without finishing")

    def _exit(self, code: int, message: str) -> None:
        print(f"{self.name}: {message}", file=sys.stderr, flush=True)
        os._exit(code)  # not sys.exit: the threads still draining must not hold the process

    def done(self) -> None:
        """The drain finished: the limit no longer applies (the summary may take its time to print)."""
        if self._timer is not None:
            self._timer.cancel()
