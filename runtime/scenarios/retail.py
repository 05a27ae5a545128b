"""Retail shelf scenario: per-slot stock state, out-of-stock alerts that ignore shoppers, facings, planogram.

Config (the camera's `scenario_config:` mapping in cameras.yaml, beside `scenario: retail`):

    slots:                            # either explicit slots ...
      - name: cola
        roi: [40, 60, 120, 80]        # x, y, w, h in frame pixels
        expected_sku: sku_3           # planogram: the SKU that belongs here (a detector class name); optional
    rows:                             # ... or rows cut into equal slots, named "<row>-1", "<row>-2", ...
      - name: top
        y: [60, 140]                  # y0, y1
        slots: 4
        x: [40, 600]                  # optional; defaults to the top-level `x`
        expected_skus: [sku_1, sku_1, sku_2, sku_3]  # optional, one per slot
    x: [40, 600]                      # x0, x1 shared by rows
    oos_seconds: 10                   # `out_of_stock` only after a slot reads empty this long (occluded time excluded)
    low_below: 2                      # fewer facings than this (but > 0) is "low"
    low_is_alert: false               # whether `low_stock` events carry a snapshot
    min_frames: 3                     # a slot's state / SKU changes after this many agreeing unoccluded frames
    min_seconds: 0                    # ... held over at least this long
    min_score: 0.6                    # a classifier reading below this score is uncertain: it breaks the run
    occlusion:
      classes: [person]               # detections or tracks of these classes hide the slots they cover
      min_overlap: 0.2                # ... when they cover at least this share of the slot
      label: occluded                 # a slot classifier label meaning "cannot see"
      motion: auto                    # foreground from a running background hides slots (auto: no person class)
      motion_fraction: 0.1            # ... when at least this share of the slot is foreground
      settle_seconds: 1.5             # a change inside one slot that holds still this long is the new background
      max_hold_seconds: 10            # ... and foreground reaching beyond the slots (a shopper standing still)
    planogram_delta: 5                # a `planogram` event when compliance moves this many points (or on request)
    cooldown_seconds: 10              # at most one event per (kind, slot) in this many seconds
    calibration_seconds: 0            # deriving slots from detections is not implemented: list slots or rows

Stock evidence per slot comes from (a) slot classifier results, one per slot in `rois()` order, labelled
stocked / low / empty (classifier results win when both are given), or (b) detections: boxes of SKU classes whose
centre is in the slot are facings, `gap` boxes are evidence of a hole.

A slot is occluded while a person box covers it, while a running background says its region is foreground (the
fallback for cameras without a person detector: see `foreground.py`), or while the classifier says `occluded`.
An occluded slot holds its last confident state: the frame neither advances nor resets its timers, breaks any run
of agreeing readings, and never raises an event, so a shopper standing in front of the shelf never causes an alert.
A reading below `min_score` is not evidence either: one uncertain frame changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgecam.runtime.scenarios.base import Cooldown, Debounced, Scenario, alert
from edgecam.runtime.scenarios.foreground import Foreground
from edgecam.runtime.scenarios.geometry import Box, box_centre, covered_fraction, validate_roi, validate_span
from edgecam.runtime.types import Classification, Detections, Event, Frame

if TYPE_CHECKING:
    from edgecam.runtime.tracker import Track

STATES = ("stocked", "low", "empty")
SLOT_LABELS = (*STATES, "occluded")
GAP = "gap"
TIME_EPS = 1e-6  # seconds: 0.2 s summed ten times is 1.9999999999999998, which must count as 2


@dataclass(frozen=True)
class Slot:
    name: str
    roi: tuple[int, int, int, int]  # x, y, w, h
    expected_sku: str | None = None

    @property
    def box(self) -> Box:
        x, y, w, h = self.roi
        return (float(x), float(y), float(x + w), float(y + h))


@dataclass
class _SlotState:
    slot: Slot
    state: Debounced[str | None]
    sku: Debounced[str | None]
    skus: Counter[str] = field(default_factory=Counter)  # facings per SKU in the last unoccluded detections
    gaps: int = 0
    occluded: bool = False
    occluded_by: str | None = None  # "detection", "foreground" or "label" while occluded
    empty_for: float = 0.0
    last_clear: float | None = None  # previous unoccluded evidence frame, None after an occlusion
    out_of_stock: bool = False


class RetailScenario(Scenario):
    name = "retail"

    def __init__(self, config: dict[str, Any], class_names: tuple[str, ...], source_id: str) -> None:
        super().__init__(config, class_names, source_id)
        keys = ("slots", "rows", "x", "oos_seconds", "low_below", "low_is_alert", "min_frames", "min_seconds")
        keys += ("min_score", "occlusion", "planogram_delta", "cooldown_seconds", "calibration_seconds")
        self.check_keys(self.config, keys, "")
        self.is_detector = bool(set(self.class_names) - set(SLOT_LABELS))
        self.oos_seconds = self.number(self.config, "oos_seconds", 10.0, "")
        self.low_below = int(self.number(self.config, "low_below", 2, "", minimum=1, integer=True))
        self.min_frames = int(self.number(self.config, "min_frames", 3, "", minimum=1, integer=True))
        self.min_seconds = self.number(self.config, "min_seconds", 0.0, "")
        self.min_score = self.number(self.config, "min_score", 0.6, "")
        if self.min_score > 1:
            raise self.error("min_score", f"got {self.min_score!r}", "use a score between 0 and 1")
        self.planogram_delta = self.number(self.config, "planogram_delta", 5.0, "")
        self.cooldown = Cooldown(self.number(self.config, "cooldown_seconds", 10.0, ""))
        self.low_is_alert = self.config.get("low_is_alert", False)
        if not isinstance(self.low_is_alert, bool):
            raise self.error("low_is_alert", f"got {self.low_is_alert!r}", "use true or false")
        occ = self.section(self.config.get("occlusion"), "occlusion")
        self.check_keys(
            occ,
            ("classes", "min_overlap", "label", "motion", "motion_fraction", "settle_seconds", "max_hold_seconds"),
            "occlusion",
        )
        self.occluders = frozenset(["person"])  # the default is not checked: a SKU-only detector has no person
        if "classes" in occ:
            # a slot classifier's class names cannot vouch for detector classes, so only a detector's are checked
            self.occluders = self.class_filter(occ["classes"], "occlusion.classes", self.is_detector) or self.occluders
        self.min_overlap = self.number(occ, "min_overlap", 0.2, "occlusion.")
        self.occluded_label = str(occ.get("label", "occluded"))
        self.motion_fraction = self.number(occ, "motion_fraction", 0.1, "occlusion.")
        if not 0 < self.motion_fraction <= 1:  # 0 would hide every slot for good
            raise self.error("occlusion.motion_fraction", f"got {self.motion_fraction!r}", "use a share in (0, 1]")
        motion = occ.get("motion", "auto")
        if motion != "auto" and not isinstance(motion, bool):
            raise self.error("occlusion.motion", f"got {motion!r}", "use auto, true or false")
        if motion == "auto":  # without a detector that sees people, a background model is the only way to see them
            motion = not (self.occluders & set(self.class_names))
        settle = self.number(occ, "settle_seconds", 1.5, "occlusion.")
        hold = self.number(occ, "max_hold_seconds", 10.0, "occlusion.")
        self.foreground = Foreground(settle, hold) if motion else None
        self.slots = self._slots()
        self._rois = self.rois()
        self._states = [
            _SlotState(s, Debounced(self.min_frames, None, self.min_seconds), Debounced(self.min_frames, None))
            for s in self.slots
        ]
        self._seen_detections = False
        self._reported: float | None = None
        self._report_requested = False
        self.ignored_labels: Counter[str] = Counter()

    # ---- config -------------------------------------------------------------------------------------------
    def _slots(self) -> tuple[Slot, ...]:
        if self.config.get("calibration_seconds"):
            raise self.error(
                "calibration_seconds", "deriving slots from detections is not implemented yet", "list `slots` or `rows`"
            )
        slots_cfg, rows_cfg = self.config.get("slots"), self.config.get("rows")
        if (slots_cfg is None) == (rows_cfg is None):
            raise self.error("slots", "give exactly one of `slots` or `rows`", "list the shelf's slots or rows")
        slots: list[Slot] = []
        seen: set[str] = set()
        for i, s in enumerate(self.items(slots_cfg, "slots")):
            where = f"slots[{i}]"
            self.check_keys(s, ("name", "roi", "expected_sku"), where)
            name = self.name_of(s, where, seen)
            slots.append(Slot(name, validate_roi(s.get("roi"), self.key(f"{where}.roi")), self._sku(s, where)))
        for i, r in enumerate(self.items(rows_cfg, "rows")):
            where = f"rows[{i}]"
            self.check_keys(r, ("name", "y", "slots", "x", "expected_skus"), where)
            row = self.name_of(r, where, set())
            y0, y1 = validate_span(r.get("y"), self.key(f"{where}.y"))
            x0, x1 = validate_span(r.get("x", self.config.get("x")), self.key(f"{where}.x (or top-level x)"))
            n = int(self.number(r, "slots", 0, f"{where}.", minimum=1, integer=True))
            skus = r.get("expected_skus", [None] * n)
            if not isinstance(skus, list) or len(skus) != n:
                raise self.error(f"{where}.expected_skus", f"got {skus!r}", f"list exactly {n} SKUs, one per slot")
            xs = [round(x0 + (x1 - x0) * k / n) for k in range(n + 1)]
            for k in range(n):
                name = f"{row}-{k + 1}"
                if name in seen:
                    raise self.error(f"{where}.name", f"slot name {name!r} repeats", "give every row a different name")
                seen.add(name)
                roi = validate_roi([xs[k], y0, xs[k + 1] - xs[k], y1 - y0], self.key(f"{where} slot {k + 1}"))
                slots.append(Slot(name, roi, self._sku({"expected_sku": skus[k]}, f"{where}.expected_skus[{k}]")))
        if not slots:
            raise self.error("slots", "no slots defined", "list at least one slot or row")
        return tuple(slots)

    def _sku(self, entry: dict[str, Any], where: str) -> str | None:
        sku = entry.get("expected_sku")
        if sku is None:
            return None
        products = [c for c in self.class_names if c != GAP and c not in self.occluders]
        if not isinstance(sku, str) or (self.is_detector and sku not in products):
            raise self.error(
                where, f"unknown SKU {sku!r}", f"use a product class of the detector: {', '.join(products)}"
            )
        return sku

    # ---- per frame ----------------------------------------------------------------------------------------
    def rois(self) -> list[tuple[int, int, int, int]]:
        """Slot ROIs in slot order: what the runner classifies and passes back as `classifications`."""
        return [s.roi for s in self.slots]

    def request_planogram(self) -> None:
        """Make the next `update` emit a `planogram` event whatever the change (an operator asked)."""
        self._report_requested = True

    def update(
        self,
        frame: Frame,
        detections: Detections | None,
        tracks: list[Track],
        classifications: list[Classification] | None,
    ) -> list[Event]:
        ts = frame.timestamp
        if classifications and len(classifications) != len(self.slots):
            raise self.error(
                "classifications",
                f"{len(classifications)} slot results for {len(self.slots)} slots",
                "classify the ROIs from RetailScenario.rois(), in that order",
            )
        covers, products = self._split(detections, tracks)
        moving = self.foreground.fractions(frame.image, ts, self._rois) if self.foreground else None
        self._seen_detections |= detections is not None
        events: list[Event] = []
        for i, st in enumerate(self._states):
            slot, result = st.slot, classifications[i] if classifications else None
            st.occluded_by = self._occluded_by(slot, covers, moving[i] if moving else 0.0, result)
            st.occluded = st.occluded_by is not None
            if st.occluded:
                st.last_clear = None  # the time behind a shopper is not counted as empty
                st.state.doubt()  # readings from before the shopper do not add up with readings after
                continue
            if detections is not None:
                here = [sku for sku, box in products if _inside(box_centre(box), slot.box)]
                st.skus = Counter(sku for sku in here if sku != GAP)
                st.gaps = len(here) - sum(st.skus.values())
                st.sku.observe(_majority(st.skus), ts)
            raw = self._raw_state(st, result, detections is not None)
            if raw is not None:
                self._step(st, raw, ts, events)
        self._planogram_step(ts, events)
        return events

    def _split(self, detections: Detections | None, tracks: list[Track]) -> tuple[list[Box], list[tuple[str, Box]]]:
        """Shopper boxes (detections and tracks, lost ones too: they are probably still there) and other boxes."""
        covers: list[Box] = []
        others: list[tuple[str, Box]] = []
        boxes = [(t.xyxy, t.class_id) for t in tracks if self.class_name(int(t.class_id)) in self.occluders]
        if detections is not None:
            boxes += list(zip(detections.xyxy, detections.class_ids, strict=True))
        for xyxy, cid in boxes:
            name, box = self.class_name(int(cid)), tuple(float(v) for v in xyxy[:4])
            if name in self.occluders:
                covers.append(box)  # type: ignore[arg-type]
            else:
                others.append((name, box))  # type: ignore[arg-type]
        return covers, others

    def _occluded_by(self, slot: Slot, covers: list[Box], moving: float, result: Classification | None) -> str | None:
        """What hides the slot in this frame, or None when it is in view."""
        if any(covered_fraction(slot.box, c) >= self.min_overlap for c in covers):
            return "detection"
        if self.foreground is not None and moving >= self.motion_fraction:
            return "foreground"
        if result is not None and result.label == self.occluded_label:
            return "label"
        return None

    def _raw_state(self, st: _SlotState, result: Classification | None, have_detections: bool) -> str | None:
        """This frame's stock reading for one slot, or None when there is no evidence (an uncertain reading is
        none either, and breaks the slot's run of agreeing readings)."""
        if result is not None:
            if result.label in STATES:
                if result.score < self.min_score:
                    st.state.doubt()
                    return None
                return result.label
            self.ignored_labels[result.label] += 1  # counted in state(): a model with other labels is a mismatch
            return None
        if not have_detections:
            return None
        facings = sum(st.skus.values())
        if facings == 0:
            return "empty"
        return "low" if facings < self.low_below or st.gaps else "stocked"

    def _step(self, st: _SlotState, raw: str, ts: float, events: list[Event]) -> None:
        dt = ts - st.last_clear if st.last_clear is not None else 0.0
        st.last_clear = ts
        changed = st.state.observe(raw, ts)
        new = st.state.value
        if new == "empty":
            st.empty_for = 0.0 if changed else st.empty_for + dt
            if not st.out_of_stock and st.empty_for >= self.oos_seconds - TIME_EPS:  # a sum of frame gaps
                st.out_of_stock = True
                self._emit(events, "out_of_stock", st, ts, True)
            return
        st.empty_for = 0.0
        if not changed:
            return
        if st.out_of_stock:
            st.out_of_stock = False
            self._emit(events, "restocked", st, ts, True)
        if new == "low":
            self._emit(events, "low_stock", st, ts, self.low_is_alert)

    def _emit(self, events: list[Event], kind: str, st: _SlotState, ts: float, is_alert: bool) -> None:
        if self.cooldown.allow((kind, st.slot.name), ts):
            data = {"slot": st.slot.name, **self._slot_dict(st)}
            events.append(Event(kind, self.source_id, ts, alert(data) if is_alert else data))

    def planogram(self) -> dict[str, Any] | None:
        """Compliance over slots with an expected SKU and a known state; None until detections have been seen."""
        checked = [st for st in self._states if st.slot.expected_sku and st.state.value]
        if not self._seen_detections or not checked:
            return None
        missing, misplaced = [], []
        for st in checked:
            slot, sku = st.slot, st.sku.value
            if st.state.value == "empty" or sku is None:
                missing.append({"slot": slot.name, "expected": slot.expected_sku})
            elif sku != slot.expected_sku:
                misplaced.append({"slot": slot.name, "expected": slot.expected_sku, "found": sku})
        compliant = len(checked) - len(missing) - len(misplaced)
        pct = round(100.0 * compliant / len(checked), 2)
        return {"compliance": pct, "checked": len(checked), "missing": missing, "misplaced": misplaced}

    def _planogram_step(self, ts: float, events: list[Event]) -> None:
        report = self.planogram()
        if report is None:
            return
        moved = self._reported is None or abs(report["compliance"] - self._reported) >= self.planogram_delta
        if self._report_requested or (moved and self.cooldown.allow(("planogram", "shelf"), ts)):
            self._reported, self._report_requested = report["compliance"], False
            events.append(Event("planogram", self.source_id, ts, alert(report)))

    def facings(self) -> dict[str, int]:
        """Facings per SKU over all slots (an occluded slot keeps its last unoccluded count)."""
        total: Counter[str] = Counter()
        for st in self._states:
            total.update(st.skus)
        return dict(sorted(total.items()))

    def _slot_dict(self, st: _SlotState) -> dict[str, Any]:
        return {
            "state": st.state.value,
            "facings": sum(st.skus.values()),
            "skus": dict(sorted(st.skus.items())),
            "sku": st.sku.value,
            "expected_sku": st.slot.expected_sku,
            "occluded": st.occluded,
            "occluded_by": st.occluded_by,
            "empty_for_seconds": round(st.empty_for, 3),
        }

    def state(self) -> dict[str, Any]:
        report = self.planogram()
        return {
            "scenario": self.name,
            "slots": {st.slot.name: self._slot_dict(st) for st in self._states},
            "facings": self.facings(),
            "compliance": None if report is None else report["compliance"],
            "planogram": report,
            "suppressed_events": dict(self.cooldown.suppressed),
            "ignored_labels": dict(self.ignored_labels),
            "motion_occlusion": self.foreground is not None,
        }


def _inside(p: tuple[float, float], box: Box) -> bool:
    return box[0] <= p[0] < box[2] and box[1] <= p[1] < box[3]


def _majority(counts: Counter[str]) -> str | None:
    """The most frequent SKU (ties broken by name, so the result does not depend on box order)."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None
