"""Security scenario: zones (enter / exit / loitering), counting lines, and camera tamper with hysteresis.

Config (the camera's `scenario_config:` mapping in cameras.yaml, beside `scenario: security`; every key optional):

    zones:                            # polygons in frame pixels; a track is in a zone when its ground point
      - name: door                    #   (bottom-centre of the box) is inside or on the border
        polygon: [[0, 0], [200, 0], [200, 150], [0, 150]]
        classes: [person]             # only these classes (names from the model); default every class
        loiter_seconds: 30            # `loitering` once per track per zone after this dwell; default off
        cooldown_seconds: 10          # overrides the global cool-down for this zone
    lines:
      - name: gate
        points: [[0, 100], [320, 100]]  # a -> b; "in" = crossing to the right of a -> b as seen on screen
        classes: [person, vehicle]      #   (for this line: moving down the image), "out" = the other way
        direction: both                 # both | a_to_b (count only "in") | b_to_a (count only "out")
        cooldown_seconds: 10
    debounce_frames: 2                # a new side of a zone border / line must hold this many frames to count
    cooldown_seconds: 10              # at most one event per (kind, zone/line) in this many seconds; counts still run
    min_track_hits: 3                 # read by the tracker (only confirmed tracks reach the rules); ignored here
    tamper:                           # from the scene classifier; `tamper: false` turns it off
      label: tampered                 # the class that means tampering
      threshold: 0.5                  # its score must reach this
      on_seconds: 3                   # `tamper` after the tampered reading holds this long
      off_seconds: 5                  # `tamper_cleared` after the normal reading holds this long
      kinds: [covered, defocused, moved]  # labels that also mean tampering and are reported as `kind`

Zones and lines work on tracks, so the runner must run the tracker; tamper needs a scene classifier (a result whose
label is `tamper.label` or one of `tamper.kinds`; the whole-frame result when ROIs are mixed in).
Only confirmed tracks move zone or line state; a lost track keeps its place (an occluded person is still in the
zone); a track that disappears leaves its zones with a `zone_exit` whose `reason` is "track_ended".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgecam.runtime.scenarios.base import Cooldown, Debounced, Hysteresis, Scenario, alert
from edgecam.runtime.scenarios.geometry import (
    Point,
    Polygon,
    clip_to_box,
    ground_point,
    point_in_polygon,
    polygon_area,
    segment_touches_box,
    segments_intersect,
    side_of_line,
    validate_polygon,
    validate_segment,
)
from edgecam.runtime.types import Classification, Detections, Event, Frame

if TYPE_CHECKING:
    from edgecam.runtime.tracker import Track

DIRECTIONS = {"both": ("in", "out"), "a_to_b": ("in",), "b_to_a": ("out",)}


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: Polygon
    classes: frozenset[str] | None
    loiter_seconds: float | None
    cooldown_seconds: float


@dataclass(frozen=True)
class Line:
    name: str
    a: Point
    b: Point
    classes: frozenset[str] | None
    directions: tuple[str, ...]
    cooldown_seconds: float


@dataclass
class _Membership:
    """One track in one zone."""

    inside: Debounced[bool]
    class_name: str
    entered_at: float | None = None
    loitered: bool = False


@dataclass
class _LineSide:
    """One track against one line: the stable side and the last point seen on it."""

    side: int
    anchor: Point
    candidate: int = 0
    count: int = 0
    first: Point = (0.0, 0.0)


class SecurityScenario(Scenario):
    name = "security"

    def __init__(self, config: dict[str, Any], class_names: tuple[str, ...], source_id: str) -> None:
        super().__init__(config, class_names, source_id)
        allowed = ("zones", "lines", "debounce_frames", "cooldown_seconds", "min_track_hits", "tamper")
        self.check_keys(self.config, allowed, "")
        self.debounce = int(self.number(self.config, "debounce_frames", 2, "", minimum=1, integer=True))
        cooldown = self.number(self.config, "cooldown_seconds", 10.0, "")
        self.cooldown = Cooldown(cooldown)
        self.zones = self._zones(self.items(self.config.get("zones"), "zones"), cooldown)
        self.lines = self._lines(self.items(self.config.get("lines"), "lines"), cooldown)
        self._tamper_cfg(self.config.get("tamper", {}))
        self.line_counts = {line.name: {"in": 0, "out": 0} for line in self.lines}
        self._members: dict[tuple[int, str], _Membership] = {}
        self._sides: dict[tuple[int, str], _LineSide] = {}
        self._track_ids: set[int] = set()
        self._active_tracks = 0
        self.tamper = Hysteresis(self.tamper_on, self.tamper_off)
        self.tamper_kind: str | None = None
        self.tamper_score = 0.0

    # ---- config -------------------------------------------------------------------------------------------
    def _zones(self, entries: list[dict[str, Any]], cooldown: float) -> tuple[Zone, ...]:
        seen: set[str] = set()
        zones = []
        for i, z in enumerate(entries):
            where = f"zones[{i}]"
            self.check_keys(z, ("name", "polygon", "classes", "loiter_seconds", "cooldown_seconds"), where)
            loiter = self.number(z, "loiter_seconds", 0.0, f"{where}.") if "loiter_seconds" in z else None
            name, polygon = (
                self.name_of(z, where, seen),
                validate_polygon(z.get("polygon"), self.key(f"{where}.polygon")),
            )
            classes = self.class_filter(z.get("classes"), f"{where}.classes")
            zones.append(
                Zone(name, polygon, classes, loiter, self.number(z, "cooldown_seconds", cooldown, f"{where}."))
            )
        return tuple(zones)

    def _lines(self, entries: list[dict[str, Any]], cooldown: float) -> tuple[Line, ...]:
        seen: set[str] = set()
        lines = []
        for i, entry in enumerate(entries):
            where = f"lines[{i}]"
            self.check_keys(entry, ("name", "points", "classes", "direction", "cooldown_seconds"), where)
            direction = entry.get("direction", "both")
            if direction not in DIRECTIONS:
                raise self.error(f"{where}.direction", f"got {direction!r}", f"use one of: {', '.join(DIRECTIONS)}")
            a, b = validate_segment(entry.get("points"), self.key(f"{where}.points"))
            name, classes = (
                self.name_of(entry, where, seen),
                self.class_filter(entry.get("classes"), f"{where}.classes"),
            )
            cool = self.number(entry, "cooldown_seconds", cooldown, f"{where}.")
            lines.append(Line(name, a, b, classes, DIRECTIONS[direction], cool))
        return tuple(lines)

    def check_frame(self, width: int, height: int) -> None:
        """A zone or line wholly outside the frame would never fire: refuse it once the frame size is known."""
        frame = (0.0, 0.0, float(width), float(height))
        for i, zone in enumerate(self.zones):
            if polygon_area(clip_to_box(zone.polygon, frame)) <= 0:
                raise self.error(
                    f"zones[{i}].polygon",
                    f"zone {zone.name!r} lies wholly outside the {width}x{height} frame",
                    f"use corners with 0 <= x <= {width} and 0 <= y <= {height}",
                )
        for i, line in enumerate(self.lines):
            if not segment_touches_box(line.a, line.b, frame):
                raise self.error(
                    f"lines[{i}].points",
                    f"line {line.name!r} lies wholly outside the {width}x{height} frame",
                    f"use points with 0 <= x <= {width} and 0 <= y <= {height}",
                )

    def _tamper_cfg(self, value: Any) -> None:
        self.tamper_enabled = value is not False
        cfg = self.section(None if value is False else value, "tamper")
        self.check_keys(cfg, ("label", "threshold", "on_seconds", "off_seconds", "kinds"), "tamper")
        self.tamper_label = cfg.get("label", "tampered")
        if not isinstance(self.tamper_label, str) or not self.tamper_label:
            raise self.error("tamper.label", f"got {self.tamper_label!r}", "use the classifier's tampered class name")
        self.tamper_threshold = self.number(cfg, "threshold", 0.5, "tamper.")
        if self.tamper_threshold > 1:
            raise self.error("tamper.threshold", f"got {self.tamper_threshold}", "use a score between 0 and 1")
        self.tamper_on = self.number(cfg, "on_seconds", 3.0, "tamper.")
        self.tamper_off = self.number(cfg, "off_seconds", 5.0, "tamper.")
        kinds = cfg.get("kinds", [])
        if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
            raise self.error("tamper.kinds", f"got {kinds!r}", "use a list of labels, e.g. [covered, defocused]")
        self.tamper_kinds = tuple(kinds)

    # ---- per frame ----------------------------------------------------------------------------------------
    def update(
        self,
        frame: Frame,
        detections: Detections | None,
        tracks: list[Track],
        classifications: list[Classification] | None,
    ) -> list[Event]:
        ts = frame.timestamp
        events: list[Event] = []
        present = {t.track_id for t in tracks}
        for track_id in self._track_ids - present:
            self._forget(track_id, ts, events)
        self._track_ids = present
        confirmed = [t for t in tracks if t.confirmed]  # tentative: maybe a flicker; lost: position is a guess
        self._active_tracks = len(confirmed)
        for track in confirmed:
            box = tuple(float(v) for v in track.xyxy[:4])
            point = ground_point(box)  # type: ignore[arg-type]
            cls = self.class_name(int(track.class_id))
            for zone in self.zones:
                if zone.classes is None or cls in zone.classes:
                    self._zone_step(zone, track.track_id, cls, point, ts, events)
            for line in self.lines:
                if line.classes is None or cls in line.classes:
                    self._line_step(line, track.track_id, cls, point, ts, events)
        if self.tamper_enabled and classifications:
            self._tamper_step(classifications, ts, events)
        return events

    def _emit(
        self, events: list[Event], kind: str, key: str, ts: float, data: dict[str, Any], cool: float | None = None
    ) -> None:
        if self.cooldown.allow((kind, key), ts, cool):
            events.append(Event(kind, self.source_id, ts, alert(data)))

    def occupancy(self, zone: str) -> dict[str, int]:
        """Tracks whose ground point is (stably) in the zone, per class."""
        counts: Counter[str] = Counter()
        for (_, name), m in self._members.items():
            if name == zone and m.inside.value:
                counts[m.class_name] += 1
        return dict(sorted(counts.items()))

    def _zone_step(self, zone: Zone, tid: int, cls: str, point: Point, ts: float, events: list[Event]) -> None:
        m = self._members.get((tid, zone.name))
        if m is None:
            m = self._members[(tid, zone.name)] = _Membership(Debounced(self.debounce, False), cls)
        m.class_name = cls
        base = {"zone": zone.name, "track_id": tid, "class": cls, "point": [round(point[0], 1), round(point[1], 1)]}
        if m.inside.observe(point_in_polygon(point, zone.polygon), ts):
            if m.inside.value:
                m.entered_at = m.inside.candidate_since
                data = {**base, "occupancy": self.occupancy(zone.name)}
                self._emit(events, "zone_enter", zone.name, ts, data, zone.cooldown_seconds)
            else:
                self._exit(zone, tid, m, ts, "left", events)
        if m.inside.value and zone.loiter_seconds is not None and not m.loitered and m.entered_at is not None:
            dwell = ts - m.entered_at
            if dwell >= zone.loiter_seconds:
                m.loitered = True
                data = {**base, "dwell_seconds": round(dwell, 3)}
                self._emit(events, "loitering", zone.name, ts, data, zone.cooldown_seconds)

    def _line_step(self, line: Line, tid: int, cls: str, point: Point, ts: float, events: list[Event]) -> None:
        side = side_of_line(point, line.a, line.b)
        s = self._sides.get((tid, line.name))
        if s is None or s.side == 0:
            self._sides[(tid, line.name)] = _LineSide(side, point)
            return
        if side == 0:
            return  # exactly on the line: neither side yet
        if side == s.side:
            s.anchor, s.candidate, s.count = point, 0, 0
            return
        if s.candidate != side:
            s.candidate, s.count, s.first = side, 0, point
        s.count += 1
        if s.count < self.debounce:
            return
        crossed = segments_intersect(s.anchor, s.first, line.a, line.b)
        s.side, s.anchor, s.candidate, s.count = side, point, 0, 0
        direction = "in" if side > 0 else "out"
        if not crossed or direction not in line.directions:
            return  # walked round the end of the line, or the other way on a one-way line
        self.line_counts[line.name][direction] += 1
        data = {"line": line.name, "track_id": tid, "class": cls, "direction": direction}
        data["counts"] = dict(self.line_counts[line.name])
        self._emit(events, "line_cross", line.name, ts, data, line.cooldown_seconds)

    def _forget(self, track_id: int, ts: float, events: list[Event]) -> None:
        """A track the tracker dropped leaves every zone it was in, so occupancy never counts ghosts."""
        for zone in self.zones:
            m = self._members.pop((track_id, zone.name), None)
            if m is not None and m.inside.value:
                self._exit(zone, track_id, m, ts, "track_ended", events)
        for line in self.lines:
            self._sides.pop((track_id, line.name), None)

    def _exit(self, zone: Zone, tid: int, m: _Membership, ts: float, reason: str, events: list[Event]) -> None:
        dwell = ts - (m.entered_at if m.entered_at is not None else ts)
        data = {"zone": zone.name, "track_id": tid, "class": m.class_name, "dwell_seconds": round(dwell, 3)}
        data.update(reason=reason, occupancy=self.occupancy(zone.name))
        m.entered_at = None
        self._emit(events, "zone_exit", zone.name, ts, data, zone.cooldown_seconds)

    def _reading(self, classifications: list[Classification]) -> tuple[bool, float, str | None]:
        """(tampered?, score, kind) from the scene classification (the whole-frame one when ROIs are mixed in)."""
        scene = next((c for c in classifications if c.roi is None), classifications[0])
        label, score = scene.label, scene.score
        prefix = f"{self.tamper_label}_"
        if label in self.tamper_kinds:
            kind: str | None = label
        elif label.startswith(prefix):
            kind = label[len(prefix) :]
        elif label == self.tamper_label:
            kind = None
        else:
            return False, score, None
        return score >= self.tamper_threshold, score, kind

    def _tamper_step(self, classifications: list[Classification], ts: float, events: list[Event]) -> None:
        t = self.tamper
        reading, score, kind = self._reading(classifications)
        if reading:
            self.tamper_score, self.tamper_kind = score, kind or self.tamper_kind
        started = t.since
        if not t.observe(reading, ts):
            return
        if t.active:
            held = ts - (t.reading_since if t.reading_since is not None else ts)
            data = {"score": round(score, 4), "kind": kind, "held_seconds": round(held, 3)}
            self._emit(events, "tamper", "camera", ts, data)
        else:
            duration = ts - (started if started is not None else ts)
            data = {"kind": self.tamper_kind, "duration_seconds": round(duration, 3)}
            self.tamper_kind = None
            self._emit(events, "tamper_cleared", "camera", ts, data)

    def state(self) -> dict[str, Any]:
        t = self.tamper
        return {
            "scenario": self.name,
            "zones": {
                z.name: {"occupancy": (occ := self.occupancy(z.name)), "total": sum(occ.values())} for z in self.zones
            },
            "lines": {name: dict(counts) for name, counts in self.line_counts.items()},
            "tamper": {
                "active": t.active,
                "since": t.since,
                "kind": self.tamper_kind,
                "score": round(self.tamper_score, 4),
            },
            "active_tracks": self._active_tracks,
            "suppressed_events": dict(self.cooldown.suppressed),
        }
