"""Typed `scenario_config` settings, one model per scenario, chosen by the camera's `scenario` key.

The models check shapes, types and ranges up front; what depends on the model's class names (`classes`,
`expected_sku`) is checked when the scenario is built with the bundle's classes. `to_dict()` is what the scenario
classes take: the validated values, with unset optional keys left out so the scenario's own rule applies.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from edgecam.runtime.config.base import ROI, Bool, Float, Int, Polygon, Segment, Span, StrictModel, fail

Name = Annotated[str, StringConstraints(min_length=1), Field(description="unique name, used in events and the API")]
Classes = Annotated[
    list[Annotated[str, StringConstraints(min_length=1)]] | None,
    Field(min_length=1, description="only these classes (names from the model); default: every class"),
]


def _unique(entries: list[Any] | None, where: str) -> None:
    seen: set[str] = set()
    for i, entry in enumerate(entries or []):
        if entry.name in seen:
            raise fail(f"duplicate name {entry.name!r}", "give every entry a different name", key=f"{where}[{i}].name")
        seen.add(entry.name)


class ScenarioSettings(StrictModel):
    """What every scenario's settings offer the scenario classes."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as the scenario class reads them (unset optional keys left out)."""
        return self.model_dump(exclude_none=True)


class NoScenarioSettings(ScenarioSettings):
    """`scenario: none` takes no settings."""


# ---- security --------------------------------------------------------------------------------------------------
class ZoneSettings(StrictModel):
    """A zone: `zone_enter` / `zone_exit` when a track's ground point crosses its border, `loitering` on a long stay."""

    name: Name
    polygon: Polygon = Field(
        description="corners [[x, y], ...] in frame pixels (after `resolution`); a track is in the zone when the "
        "bottom-centre of its box is inside or on the border"
    )
    classes: Classes = None
    loiter_seconds: Float | None = Field(
        None, ge=0, description="`loitering` once per track after this dwell, in seconds; default: off"
    )
    cooldown_seconds: Float | None = Field(
        None, ge=0, description="overrides the scenario's cool-down for this zone, in seconds"
    )


class LineSettings(StrictModel):
    """A counting line: `line_cross` events and in / out counts."""

    name: Name
    points: Segment = Field(
        description="[[x1, y1], [x2, y2]] in frame pixels; crossing to the right of a->b as seen on screen is `in`"
    )
    classes: Classes = None
    direction: Literal["both", "a_to_b", "b_to_a"] = Field(
        "both", description="count both ways, only `in` (a_to_b) or only `out` (b_to_a)"
    )
    cooldown_seconds: Float | None = Field(
        None, ge=0, description="overrides the scenario's cool-down for this line, in seconds"
    )


class TamperSettings(StrictModel):
    """Camera tamper (covered, defocused, moved) from the scene classifier, with hysteresis."""

    label: str = Field("tampered", min_length=1, description="the scene classifier's class that means tampering")
    threshold: Float = Field(0.5, ge=0, le=1, description="the tampered score must reach this (0..1)")
    on_seconds: Float = Field(3.0, ge=0, description="`tamper` after the tampered reading holds this long, seconds")
    off_seconds: Float = Field(
        5.0, ge=0, description="`tamper_cleared` after the normal reading holds this long, seconds"
    )
    kinds: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, description="labels that also mean tampering, reported as `kind` (e.g. covered)"
    )


class SecuritySettings(ScenarioSettings):
    """Zones (enter / exit / loitering), counting lines and camera tamper; zones and lines need a detection bundle."""

    zones: list[ZoneSettings] = Field(default_factory=list, description="polygons: enter / exit / loitering events")
    lines: list[LineSettings] = Field(default_factory=list, description="counting lines: `line_cross` events")
    debounce_frames: Int = Field(
        2, ge=1, description="a new side of a zone border or line must hold this many frames to count"
    )
    cooldown_seconds: Float = Field(
        10.0, ge=0, description="at most one event per (kind, zone/line) in this many seconds; counts still run"
    )
    min_track_hits: Int | None = Field(
        None,
        ge=1,
        description="sets the tracker's `min_hits` (matches before a "
        "track is confirmed) unless `tracker.min_hits` is given",
    )
    tamper: TamperSettings | None = Field(
        default_factory=TamperSettings,
        description="camera tamper from the scene classifier; `false` turns it off",
        json_schema_extra=lambda schema: schema["anyOf"].append({"const": False}),
    )

    @field_validator("tamper", mode="before")
    @classmethod
    def _tamper_off(cls, value: Any) -> Any:
        if value is None:
            return {}  # `tamper:` with nothing under it: the defaults, as before
        return None if value is False else value

    @model_validator(mode="after")
    def _names(self) -> SecuritySettings:
        _unique(self.zones, "zones")
        _unique(self.lines, "lines")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["tamper"] = data.get("tamper", False)  # None (off) is written `false` in the scenario's terms
        return data


# ---- retail ----------------------------------------------------------------------------------------------------
class SlotSettings(StrictModel):
    """One shelf slot."""

    name: Name
    roi: ROI = Field(description="[x, y, w, h] in frame pixels")
    expected_sku: str | None = Field(None, description="planogram: the detector class that belongs here")


class RowSettings(StrictModel):
    """A shelf row cut into equal slots."""

    name: Name = Field(description="slots are named `<row>-1`, `<row>-2`, ...")
    y: Span = Field(description="[y0, y1] in frame pixels")
    slots: Int = Field(ge=1, description="equal slots the row is cut into")
    x: Span | None = Field(None, description="[x0, x1] in frame pixels; default: the top-level `x`")
    expected_skus: list[str | None] | None = Field(None, description="planogram: one SKU (or null) per slot")

    @model_validator(mode="after")
    def _skus(self) -> RowSettings:
        if self.expected_skus is not None and len(self.expected_skus) != self.slots:
            raise fail(
                f"got {len(self.expected_skus)} SKUs", f"list exactly {self.slots}, one per slot", key="expected_skus"
            )
        return self


class OcclusionSettings(StrictModel):
    """What hides a slot: its timers neither advance nor reset while a shopper stands in front of it."""

    classes: Classes = Field(
        None,
        description="detections or tracks of these classes hide the slots they cover; "
        "default: [person] (not checked against the model)",
    )
    min_overlap: Float = Field(0.2, ge=0, le=1, description="... when they cover at least this share of the slot")
    label: str = Field("occluded", description="a slot classifier label meaning `cannot see`")
    motion: Literal["auto"] | Bool = Field(
        "auto",
        description="foreground from a running background (1/4-scale grey, ~1 ms per 720p frame) hides the slots "
        "it covers; `auto`: on when the model has none of the `classes` (no person detector)",
    )
    motion_fraction: Float = Field(
        0.1, gt=0, le=1, description="... when at least this share of the slot is foreground"
    )
    settle_seconds: Float = Field(
        1.5,
        ge=0,
        description="foreground confined to one slot (its own change: products taken or put back) never hides the "
        "slot, and becomes background once it has held still this long",
    )
    max_hold_seconds: Float = Field(
        10.0,
        ge=0,
        description="foreground reaching beyond the slots (a shopper, an arm) hides what it covers and becomes "
        "background only after holding still this long (at least settle_seconds), so a shopper who stops is "
        "not read as stock; when most of the frame changes at once (lights), the background is re-based instead",
    )


class RetailSettings(ScenarioSettings):
    """Per-slot stock state (stocked / low / empty), out-of-stock alerts that ignore shoppers, facings, planogram."""

    slots: list[SlotSettings] | None = Field(None, description="explicit slots (give `slots` or `rows`)")
    rows: list[RowSettings] | None = Field(None, description="rows cut into equal slots (give `slots` or `rows`)")
    x: Span | None = Field(None, description="[x0, x1] in frame pixels shared by rows")
    oos_seconds: Float = Field(
        10.0, ge=0, description="`out_of_stock` after a slot reads empty this long, seconds (occluded time excluded)"
    )
    low_below: Int = Field(2, ge=1, description="fewer facings than this (but > 0) is `low`")
    low_is_alert: Bool = Field(False, description="whether `low_stock` events carry a snapshot")
    min_frames: Int = Field(
        3, ge=1, description="a slot's state or SKU changes after this many agreeing unoccluded frames"
    )
    min_seconds: Float = Field(
        0.0, ge=0, description="... and a new state must have held over at least this long, seconds"
    )
    min_score: Float = Field(
        0.6,
        ge=0,
        le=1,
        description="a slot classifier reading below this score is uncertain: not evidence, and it breaks the run "
        "of agreeing frames",
    )
    occlusion: OcclusionSettings = Field(default_factory=OcclusionSettings, description="what hides a slot")
    planogram_delta: Float = Field(
        5.0, ge=0, description="a `planogram` event when compliance moves this many percentage points"
    )
    cooldown_seconds: Float = Field(10.0, ge=0, description="at most one event per (kind, slot) in this many seconds")
    calibration_seconds: Float = Field(
        0.0, ge=0, description="reserved: deriving slots from detections is not implemented; keep 0"
    )

    @field_validator("calibration_seconds")
    @classmethod
    def _no_calibration(cls, value: float) -> float:
        if value:
            raise fail("deriving slots from detections is not implemented yet", "list `slots` or `rows`")
        return value

    @model_validator(mode="after")
    def _layout(self) -> RetailSettings:
        if (self.slots is None) == (self.rows is None):
            raise fail("give exactly one of `slots` or `rows`", "list the shelf's slots or rows", key="slots")
        if not (self.slots or self.rows):
            raise fail("no slots defined", "list at least one slot or row", key="slots")
        _unique(self.slots, "slots")
        _unique(self.rows, "rows")
        for i, row in enumerate(self.rows or []):
            if row.x is None and self.x is None:
                raise fail("missing", "give the row an `x: [x0, x1]` or a top-level `x`", key=f"rows[{i}].x")
        return self


SCENARIO_SETTINGS: dict[str, type[ScenarioSettings]] = {
    "security": SecuritySettings,
    "retail": RetailSettings,
    "none": NoScenarioSettings,
}
