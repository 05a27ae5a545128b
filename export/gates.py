"""Accuracy gates for INT8 and bf16 variants: how much reduced precision may lose against FP32 on the same frames.

A tensor tolerance says little about INT8 (every logit moves a little); what matters is the task metric. Detectors are
also held per class: a fine overall mAP can hide one class whose recall collapsed, and that class is the one a shelf
or a door camera then misses. All drops are in points (percentage points of a 0..1 metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

TOP1_MAX_DROP = 0.5  # classifier top-1, points
MAP50_MAX_DROP = 1.0  # detector mAP@0.5, points
CLASS_RECALL_MAX_DROP = 3.0  # detector recall@0.5 of any one class, points
_EPS = 1e-6  # a drop computed as 0.5000000001 from 0.9 - 0.895 is still 0.5


@dataclass(frozen=True)
class GateResult:
    """One variant's gate: the metric before (FP32 reference) and after (the variant), and what failed."""

    variant: str
    metric: str  # "top1" | "map50"
    before: float | None
    after: float | None
    max_drop: float
    class_metric: str | None = None
    class_max_drop: float | None = None
    failed_classes: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (before, after)
    reason: str = ""  # why the gate could not be evaluated, when it could not

    @property
    def drop(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return round(100.0 * (self.before - self.after), 4)

    @property
    def passed(self) -> bool:
        return self.drop is not None and self.drop <= self.max_drop + _EPS and not self.failed_classes

    def describe(self) -> str:
        if self.drop is None:
            return f"{self.variant}: accuracy gate not evaluated ({self.reason})"
        text = (
            f"{self.variant}: {self.metric} {self.before:.4f} -> {self.after:.4f} "
            f"(drop {self.drop:.2f} points, allowed {self.max_drop:g})"
        )
        if self.failed_classes:
            shown = ", ".join(f"{name} {b:.3f} -> {a:.3f}" for name, (b, a) in sorted(self.failed_classes.items()))
            text += f"; {self.class_metric} dropped more than {self.class_max_drop:g} points for {shown}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed_classes"] = {k: {"before": b, "after": a} for k, (b, a) in self.failed_classes.items()}
        return {**out, "drop": self.drop, "passed": self.passed}


def classifier_gate(
    variant: str, before: Mapping[str, Any], after: Mapping[str, Any], max_drop: float | None = None
) -> GateResult:
    """Top-1 may drop by at most `max_drop` points (default TOP1_MAX_DROP)."""
    max_drop = TOP1_MAX_DROP if max_drop is None else max_drop
    if "top1" not in before or "top1" not in after:
        return GateResult(variant, "top1", None, None, max_drop, reason="no labelled frames")
    return GateResult(variant, "top1", float(before["top1"]), float(after["top1"]), max_drop)


def detector_gate(
    variant: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    max_drop: float | None = None,
    class_max_drop: float | None = None,
) -> GateResult:
    """mAP@0.5 may drop by at most `max_drop` points, and no class's recall@0.5 by more than `class_max_drop`."""
    max_drop = MAP50_MAX_DROP if max_drop is None else max_drop
    class_max_drop = CLASS_RECALL_MAX_DROP if class_max_drop is None else class_max_drop
    if "map50" not in before or "map50" not in after:
        return GateResult(variant, "map50", None, None, max_drop, "recall50", class_max_drop, reason="no labels")
    failed = {}
    for name, row in before.get("per_class", {}).items():
        was = row.get("recall50")
        now = after.get("per_class", {}).get(name, {}).get("recall50")
        if was is None:  # no ground truth of this class among the frames: nothing to lose
            continue
        now = 0.0 if now is None else float(now)
        if 100.0 * (float(was) - now) > class_max_drop + _EPS:
            failed[name] = (float(was), now)
    return GateResult(
        variant,
        "map50",
        float(before["map50"] or 0.0),
        float(after["map50"] or 0.0),
        max_drop,
        "recall50",
        class_max_drop,
        failed,
    )


def evaluate_gate(task: str, variant: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> GateResult:
    """The gate of a task: metrics dicts as the export tasks produce them (`top1`, or `map50` + `per_class`)."""
    if task == "classify":
        return classifier_gate(variant, before, after)
    if task == "detect":
        return detector_gate(variant, before, after)
    raise ValueError(f"no accuracy gate for task {task!r}")
