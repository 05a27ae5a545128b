"""Motion gating: skip inference on frames where nothing moves, so a quiet camera costs almost nothing.

A downscaled grey copy of each frame goes through background subtraction (OpenCV's MOG2) or plain frame
differencing; when the changed fraction of the watched pixels stays under `min_area`, the frame is skipped.
Mask polygons hide areas whose changes mean nothing (a burnt-in clock, trees in the wind). A frame is processed
anyway once `max_skip_seconds` passed since the last processed one, so trackers and scenarios that count time
(dwell, loitering) still get a heartbeat. Costs ~0.1 ms per frame at the default 160 px width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

METHODS = ("mog2", "diff")
Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class MotionConfig:
    """`min_area`: fraction (0..1) of the unmasked pixels that must change; `mask`: polygons in frame pixels
    (of the frame as processed, after any `resolution`) to ignore; `width`: analysis width in pixels;
    `threshold`: grey-level change (diff) or squared Mahalanobis distance (mog2) that counts as changed."""

    method: str = "mog2"
    min_area: float = 0.005
    max_skip_seconds: float = 5.0
    mask: tuple[Polygon, ...] = field(default_factory=tuple)
    width: int = 160
    threshold: float | None = None  # None: 25 grey levels for diff, 16 for mog2

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MotionConfig:
        """Build from a config mapping; raises ValueError naming the bad key (the caller adds file and camera)."""
        unknown = set(raw) - {"method", "min_area", "max_skip_seconds", "mask", "width", "threshold"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}")
        polygons = []
        for i, poly in enumerate(raw.get("mask") or []):
            try:
                points = tuple((float(x), float(y)) for x, y in poly)
            except (TypeError, ValueError):
                raise ValueError(f"mask polygon #{i} must be a list of [x, y] points") from None
            if len(points) < 3:
                raise ValueError(f"mask polygon #{i} needs at least 3 points, got {len(points)}")
            polygons.append(points)
        config = cls(
            method=str(raw.get("method", "mog2")),
            min_area=float(raw.get("min_area", 0.005)),
            max_skip_seconds=float(raw.get("max_skip_seconds", 5.0)),
            mask=tuple(polygons),
            width=int(raw.get("width", 160)),
            threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
        )
        config.check()
        return config

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {list(METHODS)}")
        if not 0 <= self.min_area <= 1:
            raise ValueError(f"min_area {self.min_area} must be a fraction in [0, 1]")
        if self.max_skip_seconds < 0 or self.width < 16:
            raise ValueError("max_skip_seconds must be >= 0 and width >= 16")


class MotionGate:
    """`gate.check(image, timestamp)` -> True to process the frame, False to skip it (counted in `skipped`)."""

    def __init__(self, config: MotionConfig | Any = None) -> None:
        """`config`: a `MotionConfig`, or the camera's typed `motion` settings (which convert themselves)."""
        if config is not None and not isinstance(config, MotionConfig):
            config = config.to_motion_config()
        self.config = config or MotionConfig()
        try:
            self.config.check()
        except ValueError as exc:
            raise EdgecamError(f"invalid motion settings: {exc}") from None
        self.skipped = 0
        self.last_fraction = 0.0
        self._last_processed: float | None = None
        self._shape: tuple[int, int] | None = None  # (height, width) of the frames the state below was built for
        self._valid: np.ndarray | None = None
        self._valid_count = 0
        self._previous: np.ndarray | None = None
        self._subtractor: Any = None

    def _reset(self, height: int, width: int) -> None:
        """Analysis size, mask and background model for frames of this size (again after a size change)."""
        small_w = min(self.config.width, width)
        small_h = max(1, round(height * small_w / width))
        valid = np.full((small_h, small_w), 255, np.uint8)
        scale = np.array([small_w / width, small_h / height])
        for poly in self.config.mask:
            cv2.fillPoly(valid, [np.round(np.asarray(poly) * scale).astype(np.int32)], 0)
        self._shape, self._valid = (height, width), valid
        self._valid_count = int(np.count_nonzero(valid))
        self._previous = None
        threshold = self.config.threshold if self.config.threshold is not None else 16.0
        self._subtractor = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=threshold, detectShadows=False)

    def changed_fraction(self, image: np.ndarray) -> float:
        """Fraction of the unmasked pixels that changed; 1.0 on the first frame (there is no reference yet)."""
        height, width = image.shape[:2]
        if self._shape != (height, width):
            self._reset(height, width)
        assert self._valid is not None
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        grey = cv2.resize(grey, self._valid.shape[::-1], interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(grey, (5, 5), 0)  # sensor noise is not motion
        if self.config.method == "mog2":
            changed = self._subtractor.apply(grey)
        else:
            previous, self._previous = self._previous, grey
            if previous is None:
                return 1.0
            threshold = self.config.threshold if self.config.threshold is not None else 25.0
            changed = np.where(cv2.absdiff(grey, previous) > threshold, 255, 0).astype(np.uint8)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # lone pixels are noise
        if self._valid_count == 0:  # everything masked: motion can never be seen
            return 0.0
        return float(np.count_nonzero(cv2.bitwise_and(changed, self._valid))) / self._valid_count

    def check(self, image: np.ndarray, timestamp: float) -> bool:
        """Process this frame? Yes on motion, on the first frame, and after `max_skip_seconds` without one."""
        self.last_fraction = self.changed_fraction(image)
        overdue = self._last_processed is None or timestamp - self._last_processed >= self.config.max_skip_seconds
        if self.last_fraction >= self.config.min_area or overdue:
            self._last_processed = timestamp
            return True
        self.skipped += 1
        return False
