"""Ground truth for detection: one `DetSample` per image, boxes in that image's pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DetSample:
    """An image path with its boxes (K, 4) xyxy float32 in original pixels and class ids (K,) int64."""

    path: Path
    width: int
    height: int
    xyxy: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        if len(self.xyxy) != len(self.classes):
            raise ValueError(f"{self.path}: {len(self.xyxy)} boxes but {len(self.classes)} class ids")


@dataclass
class DetDataset:
    """One split of a detection dataset, whatever format it came from."""

    samples: list[DetSample]
    class_names: tuple[str, ...]
    root: Path
    problems: list[str] = field(default_factory=list)  # "file:line: reason" for every skipped label or image

    def __len__(self) -> int:
        return len(self.samples)
