"""Reconnecting a live source: when to give a stream up for lost, and how long to wait before each new attempt.

A camera that reboots or a network that blips must not end the run: the reader reopens the capture with
exponential backoff and jitter (so a fleet of cameras does not hammer a recovering recorder in lockstep), and
tells the rest of the pipeline with `source_lost` / `source_restored` events and one stderr line each. The policy
here is pure; the reader thread in `runtime/live.py` applies it.

The backoff has two phases, because what a device needs differs with how long the camera has been gone:
- the first `early_seconds` (5 min) of an outage: delays grow from `initial` but never past `early_max` (2 s). Most
  outages are a camera rebooting, a switch restarting or a network blip, and the camera is expected back; probing
  at most every 2 s means frames flow again within ~2 s of its return (a refused connection costs microseconds).
- after that: the camera is gone for long (unplugged, broken, renamed); delays grow on to `max` (30 s), so a dead
  camera costs a probe every ~30 s, not a stream of connection attempts against a recorder or a VPN.
Jitter (+-20 %) spreads a fleet's attempts in both phases and never lifts a delay above the phase's cap.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.redact import mask_text, mask_url
from edgecam.runtime.types import Event

SOURCE_LOST = "source_lost"
SOURCE_RESTORED = "source_restored"

EventCallback = Callable[[Event], None]


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnect attempt `n` (0-based): `initial * factor**n`, capped at `early_max` (or `max` if lower)
    while the outage is younger than `early_seconds` and at `max` after, then spread by +-`jitter` (a fraction)
    around that value, never above the cap and never negative. `early_seconds=0` turns the early phase off."""

    initial: float = 0.5
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.2
    early_max: float = 2.0
    early_seconds: float = 300.0

    def __post_init__(self) -> None:
        valid = self.initial > 0 and self.factor >= 1 and self.max >= self.initial and 0 <= self.jitter < 1
        if not valid or self.early_max <= 0 or self.early_seconds < 0:
            raise EdgecamError(
                f"invalid backoff {self}",
                fix="need initial > 0, factor >= 1, max >= initial, early_max > 0, early_seconds >= 0, 0 <= jitter < 1",
            )

    def cap(self, down_seconds: float) -> float:
        """The longest delay for an outage `down_seconds` old (`early_max` never lifts a lower `max`)."""
        return min(self.early_max, self.max) if down_seconds < self.early_seconds else self.max

    def base(self, attempt: int, down_seconds: float = 0.0) -> float:
        """The delay without jitter; the exponent is bounded so huge attempt numbers cannot overflow."""
        return min(self.cap(down_seconds), self.initial * self.factor ** min(max(attempt, 0), 64))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random, down_seconds: float = 0.0) -> float:
        """The jittered delay; `rng` returns a float in [0, 1) (injected in tests); `down_seconds`: the outage's age."""
        spread = self.jitter * (2.0 * rng() - 1.0)
        cap = self.cap(down_seconds)
        return max(0.0, min(cap, self.base(attempt, down_seconds) * (1.0 + spread)))


@dataclass(frozen=True)
class ReconnectPolicy:
    """`stall_seconds` without a frame (or `max_failures` failed reads in a row) and the stream counts as lost;
    then reopen with `backoff`, forever or at most `max_attempts` times in a row."""

    stall_seconds: float = 5.0
    max_failures: int = 25
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.stall_seconds <= 0 or self.max_failures < 1:
            raise EdgecamError(
                f"invalid reconnect policy: stall_seconds {self.stall_seconds}, max_failures {self.max_failures}",
                fix="need stall_seconds > 0 and max_failures >= 1",
            )
        if self.max_attempts is not None and self.max_attempts < 1:
            raise EdgecamError(f"max_attempts must be >= 1 or unset, got {self.max_attempts}")

    def gives_up(self, attempt: int) -> bool:
        """True once `attempt` (0-based, counting failed reopenings in a row) exceeds `max_attempts`."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def is_lost(self, failures: int, seconds_since_frame: float) -> bool:
        """A stream is lost after too many failed reads in a row, or when no frame arrived for `stall_seconds`."""
        return failures >= self.max_failures or (failures > 0 and seconds_since_frame >= self.stall_seconds)


def source_event(kind: str, source_id: str, timestamp: float, **data: object) -> Event:
    """A `source_lost` / `source_restored` event, shaped like the scenarios' events so every sink takes it."""
    return Event(kind=kind, source_id=source_id, timestamp=timestamp, data=dict(data))


class Reconnector:
    """The reconnection state machine of one live source, driven by its reader thread (which owns the captures).

    `lost()` announces the loss once, then waits out the backoff (cut short by `stop`) and reopens until a
    capture opens, the attempts run out or the reader is stopped. `frame()` on every good frame announces the
    return after a loss and counts it in `reconnects`.
    """

    def __init__(
        self,
        source_id: str,
        opener: Callable[[], Any],
        policy: ReconnectPolicy | None = None,
        on_event: EventCallback | None = None,
        stop: threading.Event | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.source_id, self.opener = mask_url(source_id), opener  # the opener alone holds the real URL
        self.policy = policy or ReconnectPolicy()
        self.on_event, self.rng = on_event, rng
        self.stop = stop or threading.Event()
        self.online = False
        self.reconnects = 0
        self.attempts = 0  # failed reopenings since the loss
        self._down_since: float | None = None

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(source_event(kind, self.source_id, time.time(), **data))
            except Exception as exc:  # a broken sink must not kill the reader; say so once per event
                print(f"warning: {self.source_id}: {kind} handler failed: {exc}", file=sys.stderr, flush=True)

    def open(self) -> Any | None:
        """The first opening: at once, and through `lost()` (so with backoff and events) when it fails."""
        try:
            cap = self.opener()
        except Exception as exc:
            return self.lost(f"cannot open: {exc}")  # masked in lost()
        if cap.isOpened():
            return cap
        cap.release()
        return self.lost("cannot open")

    def lost(self, reason: str) -> Any | None:
        """The source stopped delivering: a freshly opened capture, or None to end (stopped or gave up)."""
        reason = mask_text(reason)
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.online = False
            print(f"warning: {self.source_id}: stream lost ({reason}); reconnecting", file=sys.stderr, flush=True)
            self._emit(SOURCE_LOST, reason=reason, reconnects=self.reconnects)
        while not self.policy.gives_up(self.attempts):
            down = time.monotonic() - self._down_since
            if self.stop.wait(self.policy.backoff.delay(self.attempts, self.rng, down)):
                return None
            self.attempts += 1
            try:
                cap = self.opener()
            except Exception:  # an opener that raises is one more failed attempt, not the end
                continue
            if cap.isOpened():
                return cap
            cap.release()
        print(f"warning: {self.source_id}: gave up after {self.attempts} attempts", file=sys.stderr, flush=True)
        return None

    def frame(self) -> None:
        """A good frame arrived: the first one after a loss restores the source."""
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since, self.attempts = None, 0
            self.reconnects += 1
            print(f"{self.source_id}: stream restored after {down:.1f} s", file=sys.stderr, flush=True)
            self._emit(SOURCE_RESTORED, down_seconds=round(down, 3), reconnects=self.reconnects)
        self.online = True
