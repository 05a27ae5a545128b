"""Cross-runtime parity: the exported model agrees with PyTorch on the same preprocessed frames.

The comparison and its limits are the device's (runtime/golden.py `compare_classify`, the `parity` columns of
`TOLERANCE`): one rule for "this variant still gives the right answer", at export and on the camera.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgecam.runtime.golden import compare_classify, default_tolerance


@dataclass
class ParityResult:
    variant: str
    backend: str
    precision: str
    frames: int
    max_abs_logit_diff: float
    max_prob_diff: float
    top1_agreement: float
    prob_tolerance: float
    min_agreement: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: (round(v, 7) if isinstance(v, float) else v) for k, v in asdict(self).items()},
            "passed": self.passed,
        }

    def describe(self) -> str:
        return (
            f"{self.variant} on {self.backend}: top-1 agreement {self.top1_agreement:.4f} "
            f"(need >= {self.min_agreement}), "
            f"max prob diff {self.max_prob_diff:.2e} (allowed {self.prob_tolerance:.0e})"
        )


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, *, variant: str, backend: str, precision: str
) -> ParityResult:
    """Compare classifier logits of one runtime against the PyTorch reference on the same frames."""
    if np.shape(reference) != np.shape(candidate):
        raise ValueError(
            f"{variant}: output shape {np.shape(candidate)} differs from the reference {np.shape(reference)}"
        )
    tolerance = default_tolerance("classify", precision, "parity")
    result = compare_classify(reference, candidate, tolerance, what="parity")
    m = result.metrics
    return ParityResult(
        variant=variant,
        backend=backend,
        precision=precision,
        frames=m["frames"],
        max_abs_logit_diff=m["max_abs_logit_diff"],
        max_prob_diff=m["max_prob_diff"],
        top1_agreement=m["top1_agreement"],
        prob_tolerance=tolerance["max_prob_diff"],
        min_agreement=tolerance["min_top1_agreement"],
        problems=result.problems,
    )
