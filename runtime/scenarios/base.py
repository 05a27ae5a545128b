"""The `Scenario` interface and the small pieces every scenario shares: config checks, cool-downs, debouncing.

A scenario is a pure state machine: it sees each frame's results (detections, tracks, classifications) and returns
`Event`s. Time comes only from `frame.timestamp`, so tests drive the clock. Config comes from YAML; any mistake
raises an `EdgecamError` naming the key (`zones[1].polygon`) and the fix, when the scenario is built, not mid-run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Classification, Detections, Event, Frame

if TYPE_CHECKING:
    from edgecam.runtime.tracker import Track

T = TypeVar("T")


class Scenario(ABC):
    """Turns per-frame results into events; `state()` is what the API and MQTT show right now."""

    name = "base"

    def __init__(self, config: dict[str, Any], class_names: Sequence[str], source_id: str) -> None:
        self.config = dict(config)
        self.class_names = tuple(class_names)
        self.source_id = source_id

    @abstractmethod
    def update(
        self,
        frame: Frame,
        detections: Detections | None,
        tracks: list[Track],
        classifications: list[Classification] | None,
    ) -> list[Event]:
        """Events for this frame (possibly none); called once per processed frame, in timestamp order."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-able current state (numbers, strings, lists, dicts)."""

    def check_frame(self, width: int, height: int) -> None:
        """Check the geometry against the frame once its size is known; a region that can never see anything is a
        typo (or a config meant for another camera), not a wish. Scenarios with geometry override this."""
        return None

    def key(self, key: str) -> str:
        """How errors name a config key: `scenario 'security': zones[1].polygon`."""
        return f"scenario {self.name!r}: {key}"

    def error(self, key: str, what: str, fix: str) -> EdgecamError:
        """A config error that names the scenario and the key."""
        return EdgecamError(f"{self.key(key)}: {what}", fix=fix)

    def class_name(self, class_id: int) -> str:
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)

    def check_keys(self, config: dict[str, Any], allowed: Iterable[str], where: str) -> None:
        """Unknown keys are refused: a misspelt `loiter_secnds` must not silently mean "never loiter"."""
        allowed = tuple(allowed)
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise self.error(where or "config", f"unknown key {unknown[0]!r}", f"use only: {', '.join(allowed)}")

    def section(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping, got {type(value).__name__}", "write it as `key: value` lines")
        return value

    def items(self, value: Any, where: str) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(where, "expected a list of mappings", f"write each entry as `- name: ...` under {where}")
        return value

    def number(
        self, config: dict[str, Any], key: str, default: float, where: str, minimum: float = 0.0, integer: bool = False
    ) -> float:
        """A finite number >= minimum (an int when `integer`)."""
        value = config.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer:
            ok = float(value).is_integer()
        if not ok or value < minimum:
            kind = "an integer" if integer else "a number"
            raise self.error(f"{where}{key}", f"got {value!r}", f"use {kind} >= {minimum:g}")
        return int(value) if integer else float(value)

    def name_of(self, entry: dict[str, Any], where: str, seen: set[str]) -> str:
        """A unique, non-empty `name`."""
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.error(f"{where}.name", f"got {name!r}", "give every entry a non-empty name")
        if name in seen:
            raise self.error(f"{where}.name", f"duplicate name {name!r}", "give every entry a different name")
        seen.add(name)
        return name

    def class_filter(self, value: Any, where: str, check: bool = True) -> frozenset[str] | None:
        """Class names that must exist in the model when `check` (None = every class)."""
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            raise self.error(where, f"got {value!r}", "use a non-empty list of class names, e.g. [person, vehicle]")
        known = self.class_names
        for v in value:
            if check and v not in known:
                raise self.error(where, f"unknown class {v!r}", f"use names the model knows: {', '.join(known)}")
        return frozenset(value)


class Cooldown:
    """At most one event per key every `seconds`; suppressed events are counted, never silently lost."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[tuple[str, str], float] = {}
        self.suppressed: Counter[str] = Counter()

    def ready(self, key: tuple[str, str], timestamp: float) -> bool:
        last = self._last.get(key)
        return last is None or timestamp - last >= self.seconds

    def allow(self, key: tuple[str, str], timestamp: float, seconds: float | None = None) -> bool:
        """True (and start the cool-down) when the event may go out; False counts it as suppressed."""
        last = self._last.get(key)
        if last is None or timestamp - last >= (self.seconds if seconds is None else seconds):
            self._last[key] = timestamp
            return True
        self.suppressed[key[0]] += 1
        return False


class Debounced(Generic[T]):
    """A value that changes only after the same new value is observed `frames` times in a row (jitter filter) and,
    when `seconds` > 0, over at least that long; `doubt()` breaks the run (a reading too uncertain to count)."""

    def __init__(self, frames: int, value: T, seconds: float = 0.0) -> None:
        self.frames = max(1, frames)
        self.seconds = seconds
        self.value = value
        self._candidate: T = value
        self._count = 0
        self.candidate_since: float | None = None

    def observe(self, value: T, timestamp: float = 0.0) -> bool:
        """Feed one observation; True when the stable value changed (`value` is then the new one)."""
        if value == self.value:
            self.doubt()
            return False
        if value != self._candidate or self._count == 0:
            self._candidate, self._count, self.candidate_since = value, 0, timestamp
        self._count += 1
        held = timestamp - (self.candidate_since if self.candidate_since is not None else timestamp)
        if self._count >= self.frames and held >= self.seconds:
            self.value, self._count = value, 0  # candidate_since stays: when the new value was first seen
            return True
        return False

    def doubt(self) -> None:
        """Forget the run of agreeing observations: the next new value starts counting from one again."""
        self._candidate, self._count, self.candidate_since = self.value, 0, None


class Hysteresis:
    """A flag that turns on once the raw reading has been True for `on_seconds`, off once False for `off_seconds`:
    short glitches either way change nothing."""

    def __init__(self, on_seconds: float, off_seconds: float) -> None:
        self.on_seconds, self.off_seconds = on_seconds, off_seconds
        self.active = False
        self.since: float | None = None  # when `active` last changed
        self.reading = False
        self.reading_since: float | None = None

    def observe(self, reading: bool, timestamp: float) -> bool:
        """Feed one reading; True when `active` changed."""
        if reading != self.reading or self.reading_since is None:
            self.reading, self.reading_since = reading, timestamp
        held = timestamp - self.reading_since
        if reading != self.active and held >= (self.on_seconds if reading else self.off_seconds):
            self.active, self.since = reading, timestamp
            return True
        return False


def alert(data: dict[str, Any]) -> dict[str, Any]:
    """Mark event data as an alert: the runner saves a JPEG snapshot with it."""
    return {**data, "snapshot": True}
