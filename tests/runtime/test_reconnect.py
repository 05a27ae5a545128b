"""Reconnection: the backoff table, and live readers that lose their camera and get it back (fake captures)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.live import LiveReader, LiveSource
from edgecam.runtime.reconnect import SOURCE_LOST, SOURCE_RESTORED, Backoff, Reconnector, ReconnectPolicy
from edgecam.runtime.sources import open_source

FAST = Backoff(initial=0.01, factor=2.0, max=0.04, jitter=0.0)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the reader thread"
        time.sleep(0.002)


def image(i: int) -> np.ndarray:
    return np.full((4, 6, 3), i % 256, dtype=np.uint8)


# --- the pure policy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "u", "expected"),
    [
        (0, 0.5, 0.5),  # u = 0.5 is the middle of the jitter band: no jitter
        (1, 0.5, 1.0),
        (2, 0.5, 2.0),
        (5, 0.5, 16.0),
        (6, 0.5, 30.0),  # 32 capped at max
        (10_000, 0.5, 30.0),  # no overflow for absurd attempt numbers
        (0, 0.0, 0.4),  # -20 %
        (3, 0.0, 3.2),
        (3, 0.75, 4.4),  # +10 %
        (6, 0.999999, 30.0),  # +20 % would pass max: still capped
        (-1, 0.5, 0.5),  # a negative attempt is treated as the first
    ],
)
def test_backoff_table_of_a_long_outage(attempt, u, expected):
    """Past `early_seconds` (5 min) the delays grow on to `max` (30 s): a camera gone for long is probed rarely."""
    assert Backoff().delay(attempt, rng=lambda: u, down_seconds=301.0) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("attempt", "u", "down", "expected"),
    [
        (0, 0.5, 0.0, 0.5),
        (1, 0.5, 1.0, 1.0),
        (2, 0.5, 3.0, 2.0),
        (3, 0.5, 5.0, 2.0),  # 4 capped at early_max: a camera expected back is probed every 2 s
        (50, 0.999999, 299.0, 2.0),  # +20 % jitter never lifts a delay above the cap
        (50, 0.0, 299.0, 1.6),  # -20 %
        (50, 0.5, 300.0, 30.0),  # the early phase is over: the long-outage cap
    ],
)
def test_backoff_table_of_a_young_outage(attempt, u, down, expected):
    assert Backoff().delay(attempt, rng=lambda: u, down_seconds=down) == pytest.approx(expected, abs=1e-4)


def test_backoff_early_phase_off_and_a_lower_max_win():
    assert Backoff(early_seconds=0).delay(5, rng=lambda: 0.5, down_seconds=0.0) == pytest.approx(16.0)
    assert Backoff(max=1.0).delay(5, rng=lambda: 0.5, down_seconds=0.0) == pytest.approx(1.0)


def test_backoff_jitter_stays_in_band_with_a_real_rng():
    import random

    rng = random.Random(0)
    delays = [Backoff().delay(2, rng.random, down_seconds=400.0) for _ in range(200)]
    assert min(delays) >= 1.6 and max(delays) <= 2.4 and len(set(delays)) > 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"factor": 0.5},
        {"initial": 5, "max": 1},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"early_max": 0},
        {"early_seconds": -1},
    ],
)
def test_invalid_backoff_is_an_error(kwargs):
    with pytest.raises(EdgecamError, match="invalid backoff"):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    ("failures", "since", "lost"),
    [(0, 100.0, False), (1, 0.1, False), (1, 5.0, True), (24, 1.0, False), (25, 0.0, True)],
)
def test_policy_declares_a_stream_lost_by_failures_or_stall(failures, since, lost):
    assert ReconnectPolicy(stall_seconds=5.0, max_failures=25).is_lost(failures, since) is lost


def test_policy_gives_up_only_with_max_attempts():
    assert not ReconnectPolicy().gives_up(10**6)
    assert [ReconnectPolicy(max_attempts=3).gives_up(a) for a in (2, 3)] == [False, True]


# --- readers with fake captures ----------------------------------------------------------------------------


class FakeCamera:
    """A capture that yields `frames` numbered images, then fails forever (the camera died)."""

    def __init__(self, start: int, frames: int, opened: bool = True, period: float = 0.002) -> None:
        self.next, self.left, self.opened, self.period = start, frames, opened, period
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        time.sleep(self.period)
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.next += 1
        return True, image(self.next - 1)

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class Factory:
    """Hands out the scripted captures in order; the last one again once the script is used up."""

    def __init__(self, *captures: FakeCamera) -> None:
        self.captures, self.calls = list(captures), 0

    def __call__(self, _target=None) -> FakeCamera:
        self.calls += 1
        return self.captures.pop(0) if len(self.captures) > 1 else self.captures[0]


def reader_with(factory: Factory, events: list, **policy) -> LiveReader:
    policy = {"stall_seconds": 5.0, "max_failures": 3, "backoff": FAST, **policy}
    reconnector = Reconnector("cam", factory, ReconnectPolicy(**policy), events.append)
    return LiveReader(None, "cam", reconnector=reconnector).start()


def test_a_camera_that_dies_and_comes_back_is_reconnected_with_events():
    first, down, second = FakeCamera(0, 5), FakeCamera(0, 0, opened=False), FakeCamera(100, 10**6)
    events: list = []
    reader = reader_with(Factory(first, down, second), events)
    try:
        wait_until(lambda: reader.stats.reconnects == 1)
        frame = reader.get()
        wait_until(lambda: reader._slot is not None)
        after = reader.get()
    finally:
        reader.stop()
    assert [e.kind for e in events] == [SOURCE_LOST, SOURCE_RESTORED]
    assert events[0].source_id == "cam" and events[1].data["reconnects"] == 1
    assert events[1].data["down_seconds"] >= 0.01  # at least the first backoff
    assert first.released and down.released  # dead and unopened captures are released by the reader thread
    assert int(after.image[0, 0, 0]) >= 100 and after.index > frame.index  # delivery resumed from the new capture
    assert not reader.online


def test_a_camera_down_at_start_is_opened_later_without_blocking():
    events: list = []
    t0 = time.monotonic()
    reader = reader_with(Factory(FakeCamera(0, 0, opened=False), FakeCamera(7, 10**6)), events)
    assert time.monotonic() - t0 < 0.5  # the caller never waits for the camera
    try:
        frame = reader.get()
        assert int(frame.image[0, 0, 0]) >= 7 and reader.online
    finally:
        reader.stop()
    assert [e.kind for e in events] == [SOURCE_LOST, SOURCE_RESTORED]
    assert events[0].data["reason"] == "cannot open"


def test_a_stalled_stream_is_declared_lost_after_stall_seconds():
    stalled = FakeCamera(0, 2, period=0.02)  # then failed reads every 20 ms: too few to reach max_failures soon
    events: list = []
    reader = reader_with(Factory(stalled, FakeCamera(50, 10**6)), events, stall_seconds=0.15, max_failures=10**6)
    try:
        wait_until(lambda: len(events) == 2)
    finally:
        reader.stop()
    assert [e.kind for e in events] == [SOURCE_LOST, SOURCE_RESTORED]


def test_reader_gives_up_after_max_attempts_and_ends_the_stream():
    factory = Factory(FakeCamera(0, 2), FakeCamera(0, 0, opened=False))
    events: list = []
    reader = reader_with(factory, events, max_attempts=3)
    wait_until(lambda: not reader._thread.is_alive())
    assert reader.get() is not None  # the frame buffered before the loss is still delivered
    assert reader.get() is None
    assert factory.calls == 1 + 3 and [e.kind for e in events] == [SOURCE_LOST]


def test_stop_interrupts_a_long_backoff():
    events: list = []
    slow = Backoff(initial=30.0, max=30.0, jitter=0.0)
    reader = reader_with(Factory(FakeCamera(0, 0, opened=False)), events, backoff=slow)
    wait_until(lambda: len(events) == 1)
    t0 = time.monotonic()
    reader.stop()
    assert time.monotonic() - t0 < 1.0 and not reader._thread.is_alive()
    assert reader.get() is None


def test_a_failing_event_handler_does_not_kill_the_reader(capsys):
    def broken(_event):
        raise RuntimeError("sink down")

    reconnector = Reconnector(
        "cam", Factory(FakeCamera(0, 1), FakeCamera(9, 10**6)), ReconnectPolicy(backoff=FAST), broken
    )
    reader = LiveReader(None, "cam", reconnector=reconnector).start()
    try:
        wait_until(lambda: reader.stats.reconnects == 1)
    finally:
        reader.stop()
    assert "handler failed" in capsys.readouterr().err


def test_open_source_with_reconnect_resizes_and_reports_events():
    events: list = []
    lock = threading.Lock()

    def record(event):
        with lock:
            events.append(event)

    factory = Factory(FakeCamera(0, 3), FakeCamera(10, 10**6))
    policy = ReconnectPolicy(max_failures=2, backoff=FAST)
    with open_source(
        "rtsp://cam/1", capture_factory=factory, resolution=(12, 8), reconnect=policy, on_event=record
    ) as src:
        assert isinstance(src, LiveSource) and src.size == (12, 8)
        frames = []
        for frame in src:
            frames.append(frame)
            if int(frame.image[0, 0, 0]) >= 10:
                break
    assert all(f.image.shape == (8, 12, 3) for f in frames)
    assert [e.kind for e in events] == [SOURCE_LOST, SOURCE_RESTORED]
    assert src.stats().reconnects == 1 and src.stats().to_dict()["reconnects"] == 1


def test_each_lost_line_on_stderr_is_followed_by_a_restored_line(capsys):
    events: list = []
    reader = reader_with(Factory(FakeCamera(0, 3), FakeCamera(0, 0, opened=False), FakeCamera(9, 10**6)), events)
    try:
        wait_until(lambda: reader.stats.reconnects == 1)
    finally:
        reader.stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0] == "warning: cam: stream lost (no frames); reconnecting"
    assert lines[1].startswith("cam: stream restored after ") and lines[1].endswith(" s")
