"""Detection parity: decoded boxes of an exported variant against PyTorch's, matched box by box.

Raw tensors can differ in ways that do not matter (a logit of -12 vs -11) and agree where it does not help; what a
camera shows is the decoded, thresholded, NMS'd boxes, so that is what is compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgecam.runtime.golden import compare_detect, default_tolerance
from edgecam.runtime.types import Detections

# One tolerance table and one comparison for export parity and the device's golden frames (runtime/golden.py). A match
# fraction, not "every box": where two boxes of one object score alike, NMS may keep either one (flicker).


@dataclass
class DetParityResult:
    variant: str
    backend: str
    precision: str
    frames: int
    boxes: int
    matched: float
    mean_iou: float
    min_iou: float
    max_score_diff: float
    max_abs_raw_diff: float
    min_matched: float
    min_iou_required: float
    max_score_diff_allowed: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return {**out, "passed": self.passed}

    def describe(self) -> str:
        return (
            f"{self.variant} on {self.backend}: {self.matched:.4f} of {self.boxes} boxes matched at IoU >= "
            f"{self.min_iou_required} (need >= {self.min_matched}), mean IoU {self.mean_iou:.3f}, "
            f"max score diff {self.max_score_diff:.3f} (allowed {self.max_score_diff_allowed})"
        )


def compare_detections(
    reference: Sequence[Detections],
    candidate: Sequence[Detections],
    *,
    variant: str,
    backend: str,
    precision: str,
    conf: float = 0.25,
    max_abs_raw_diff: float = float("nan"),
) -> DetParityResult:
    """Both directions: every confident reference box must be found in the candidate and vice versa."""
    tolerance = default_tolerance("detect", precision, "parity")
    result = compare_detect(reference, candidate, tolerance, conf, what="reference")
    m = result.metrics
    return DetParityResult(
        variant=variant,
        backend=backend,
        precision=precision,
        frames=m["frames"],
        boxes=m["boxes"],
        matched=m["matched"],
        mean_iou=m["mean_iou"],
        min_iou=m["min_iou"],
        max_score_diff=m["max_score_diff"],
        max_abs_raw_diff=float(max_abs_raw_diff),
        min_matched=tolerance["min_matched"],
        min_iou_required=tolerance["min_iou"],
        max_score_diff_allowed=tolerance["max_score_diff"],
        problems=result.problems,
    )
