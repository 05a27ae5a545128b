"""The small interface every inference engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# "latency": one request gets all the cores (`edgecam run`); "throughput": the cores split into streams that run
# several requests side by side (many cameras on one model).
PERFORMANCE_MODES = ("latency", "throughput")


class Backend(ABC):
    """Load one model file and run batches through it. One instance per model, shared by all cameras."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # the variant formats this engine can run

    @abstractmethod
    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
    ) -> None:
        """Load and compile `path`; `precision` is the variant's, so the engine runs what was validated. `mode`
        ("latency" or "throughput") is a performance hint for engines that have one (OpenVINO); others ignore it."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """float32 NxCxHxW -> the model's outputs, in order."""

    def info(self) -> dict[str, Any]:
        """What the engine really runs (version, threads, precision), for reports."""
        return {"backend": self.name}
