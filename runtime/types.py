"""Typed results passed between stages: never bare arrays with implied column orders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One decoded image (BGR, HxWx3 uint8) with where and when it came from.

    `timestamp` is the frame's time in its source (seconds in a file, wall clock for a live camera); `arrived` is
    the wall-clock time it became available to the runtime (read from a camera, or due by a paced file's schedule):
    a frame's age is measured from it. `file` names the image a frame was read from (relative to its folder) for
    image-folder sources, so results and saved pictures can be matched to their input; None for video and cameras."""

    image: np.ndarray
    timestamp: float = field(default_factory=time.time)
    source_id: str = "0"
    index: int = 0
    arrived: float = field(default_factory=time.time)
    file: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, np.ndarray) or self.image.ndim != 3 or self.image.shape[2] != 3:
            shape = getattr(self.image, "shape", None)
            raise ValueError(f"Frame.image must be an HxWx3 array, got shape {shape}")
        if self.image.dtype != np.uint8:
            raise ValueError(f"Frame.image must be uint8, got {self.image.dtype}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Classification:
    """Class probabilities for one image or region; `roi` is (x, y, w, h) in frame pixels when set."""

    probs: np.ndarray
    class_names: tuple[str, ...]
    roi: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float32).reshape(-1)
        self.class_names = tuple(self.class_names)
        if self.probs.shape[0] != len(self.class_names):
            raise ValueError(f"{self.probs.shape[0]} probabilities for {len(self.class_names)} class names")

    @property
    def class_id(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.class_names[self.class_id]

    @property
    def score(self) -> float:
        return float(self.probs[self.class_id])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "class_id": self.class_id, "score": round(self.score, 5)}
        if self.roi is not None:
            out["roi"] = list(self.roi)
        return out


@dataclass
class Detections:
    """N boxes in frame pixels: xyxy (N,4) float32, scores (N,), class_ids (N,) int, track_ids (N,) int (-1 = none)."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = self.xyxy.shape[0]
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        for name in ("scores", "class_ids", "track_ids"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"Detections.{name} has {getattr(self, name).shape[0]} entries for {n} boxes")
        if n and np.any(self.xyxy[:, 2:] < self.xyxy[:, :2]):
            raise ValueError("Detections.xyxy has boxes with x2 < x1 or y2 < y1")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __getitem__(self, index: Any) -> Detections:
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index], self.track_ids[index])

    @classmethod
    def merge(cls, parts: list[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            np.concatenate([p.track_ids for p in parts]),
        )


@dataclass
class Event:
    """Something a scenario noticed, for the sinks (log, MQTT, snapshots)."""

    kind: str
    source_id: str
    timestamp: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source_id": self.source_id, "timestamp": self.timestamp, **self.data}
