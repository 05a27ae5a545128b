"""Cross-runtime parity: the exported model agrees with PyTorch on the same preprocessed frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgecam.runtime.postprocess import softmax

# Largest allowed |p_ref - p| per precision, on softmax probabilities.
PROB_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2, "int8": 1.0}
MIN_TOP1_AGREEMENT = 0.995


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

    @property
    def passed(self) -> bool:
        return self.max_prob_diff <= self.prob_tolerance and self.top1_agreement >= self.min_agreement

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
    reference, candidate = np.asarray(reference, np.float32), np.asarray(candidate, np.float32)
    if reference.shape != candidate.shape:
        raise ValueError(f"{variant}: output shape {candidate.shape} differs from the reference {reference.shape}")
    p_ref, p = softmax(reference), softmax(candidate)
    return ParityResult(
        variant=variant,
        backend=backend,
        precision=precision,
        frames=int(reference.shape[0]),
        max_abs_logit_diff=float(np.abs(reference - candidate).max()),
        max_prob_diff=float(np.abs(p_ref - p).max()),
        top1_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()),
        prob_tolerance=PROB_TOLERANCE.get(precision, 1e-3),
        min_agreement=MIN_TOP1_AGREEMENT,
    )
