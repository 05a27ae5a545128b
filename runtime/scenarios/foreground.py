"""Foreground per region from a running background: what hides a shelf slot when the camera has no person detector.

A grey copy of each frame, downscaled to `WIDTH` pixels wide (1/4 of 1280x720), is compared with a background
image. A pixel is foreground while it differs from the background by more than `THRESHOLD` grey levels. The
background follows slow lighting drift where nothing is in front of it, and takes over a changed pixel once that
pixel has held still (within `THRESHOLD` of its value when it last moved) for `settle_seconds`: a restocked or
emptied slot stops being "foreground" after that long, a shopper walking past never does. The mask is grown a
little, since a classifier is already confused by an arm that covers only part of a slot. The price: what stands
still longer than `settle_seconds` becomes background, a shopper too (a person detector has no such limit), and
the plain middle of a coat settles even while its edges move. Making the regions around moving pixels settle
later as well was tried: on the synthetic shelf videos it delayed the state changes it should let through.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WIDTH = 320  # analysis width in pixels; 1280x720 -> 320x180 (~0.5 ms per frame with the colour conversion)
THRESHOLD = 25  # grey levels: above lighting flicker and sensor noise (which the downscale averages away)
DRIFT = 0.05  # per-frame blend of the background towards the frame where it is not foreground
GROW = np.ones((5, 5), np.uint8)  # foreground grows ~10 px (full size) each way: a thin arm hides what is beside it


class Foreground:
    """`fractions(image, timestamp, rois)`: the share of each ROI (x, y, w, h in frame pixels) that is foreground."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._shape: tuple[int, int] | None = None  # full-size (height, width) the state below belongs to
        self._scale = 1.0
        self._background: np.ndarray | None = None  # float32 grey
        self._anchor: np.ndarray | None = None  # uint8 grey: each pixel's value when it last moved
        self._last_ts: float | None = None
        self._still_for: np.ndarray | None = None  # per pixel: seconds it has stayed near its anchor
        self.mask: np.ndarray | None = None  # the last frame's foreground (bool), for tests and the curious

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self._shape != (height, width):  # first frame, or the camera changed resolution: start over
            self._shape, self._background = (height, width), None
            self._scale = min(1.0, WIDTH / width)
        size = (max(1, round(width * self._scale)), max(1, round(height * self._scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if self._scale < 1.0 else image
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    def update(self, image: np.ndarray, timestamp: float) -> np.ndarray:
        """Feed one BGR frame; returns the foreground mask (bool, at analysis size)."""
        grey = self._small_grey(image)
        if self._background is None or self._last_ts is None:
            self._background = grey.astype(np.float32)
            self._anchor, self._last_ts = grey, timestamp
            self._still_for = np.zeros(grey.shape, np.float32)
            self.mask = np.zeros(grey.shape, bool)
            return self.mask
        assert self._anchor is not None and self._still_for is not None
        # against the anchor, not the previous frame: a soft edge sliding in changes little from frame to frame
        moved = cv2.absdiff(grey, self._anchor) > THRESHOLD
        np.copyto(self._anchor, grey, where=moved)
        dt, self._last_ts = max(0.0, timestamp - self._last_ts), timestamp
        self._still_for += dt
        self._still_for[moved] = 0.0
        settled = self._still_for >= self.settle_seconds
        grey_f = grey.astype(np.float32)
        foreground = (cv2.absdiff(grey_f, self._background) > THRESHOLD) & ~settled
        np.copyto(self._background, grey_f, where=settled)  # a change that stays put is the new scene
        drift = (~(foreground | settled)).view(np.uint8)
        cv2.accumulateWeighted(grey_f, self._background, DRIFT, mask=drift)
        self.mask = cv2.dilate(foreground.view(np.uint8), GROW).view(bool)
        return self.mask

    def fractions(self, image: np.ndarray, timestamp: float, rois: Sequence[tuple[int, int, int, int]]) -> list[float]:
        """Update with this frame, then the foreground share of each ROI (0.0 for a ROI outside the frame)."""
        mask = self.update(image, timestamp)
        s, (h, w) = self._scale, mask.shape
        out = []
        for x, y, rw, rh in rois:
            x0, y0 = min(w, max(0, int(x * s))), min(h, max(0, int(y * s)))
            x1, y1 = min(w, max(x0, int(np.ceil((x + rw) * s)))), min(h, max(y0, int(np.ceil((y + rh) * s))))
            area = (x1 - x0) * (y1 - y0)
            out.append(float(np.count_nonzero(mask[y0:y1, x0:x1])) / area if area else 0.0)
        return out
