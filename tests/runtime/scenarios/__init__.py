"""Helpers for scenario tests: frames at chosen timestamps, tracks, detections and classifications built by hand."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from edgecam.runtime.types import Classification, Detections, Frame

try:
    from edgecam.runtime.tracker import Track
except ImportError:  # the tracker is written in parallel; same fields as its interface

    @dataclass
    class Track:  # type: ignore[no-redef]
        track_id: int
        class_id: int
        xyxy: np.ndarray
        score: float
        state: str
        hits: int
        misses: int
        first_seen: float
        last_seen: float
        history: deque

        @property
        def confirmed(self) -> bool:
            return self.state == "confirmed"


_IMAGE = np.zeros((8, 8, 3), np.uint8)


def frame(t: float) -> Frame:
    return Frame(_IMAGE, timestamp=float(t), source_id="cam")


def track(track_id: int, xyxy: Any, class_id: int = 0, state: str = "confirmed", t: float = 0.0) -> Track:
    """A Track as the tracker hands it over (the real class's internal fields filled with neutral values)."""
    kwargs: dict[str, Any] = dict(
        track_id=track_id,
        class_id=class_id,
        xyxy=np.asarray(xyxy, np.float32),
        score=0.9,
        state=state,
        hits=5,
        misses=0 if state != "lost" else 1,
        first_seen=t,
        last_seen=t,
        history=deque(maxlen=30),
    )
    names = {f.name for f in fields(Track)}
    if "mean" in names:
        kwargs["mean"] = np.zeros(8)
    if "cov" in names:
        kwargs["cov"] = np.eye(8)
    return Track(**kwargs)


def walker(track_id: int, x: float, y: float, class_id: int = 0, state: str = "confirmed") -> Track:
    """A 20x40 person-sized box whose ground point (bottom-centre) is exactly (x, y)."""
    return track(track_id, [x - 10, y - 40, x + 10, y], class_id=class_id, state=state)


def detections(boxes: list[tuple[int, list[float]]]) -> Detections:
    """Detections from (class_id, xyxy) pairs."""
    if not boxes:
        return Detections.empty()
    return Detections(
        np.array([b for _, b in boxes], np.float32), np.full(len(boxes), 0.9), np.array([c for c, _ in boxes])
    )


def classification(label: str, names: tuple[str, ...], score: float = 0.9, roi: Any = None) -> Classification:
    """A result whose argmax is `label` with probability `score` (the rest spread over the other names)."""
    rest = (1.0 - score) / max(1, len(names) - 1)
    probs = [score if n == label else rest for n in names]
    return Classification(np.array(probs, np.float32), names, roi)
