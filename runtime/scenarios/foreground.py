"""Foreground per region from a running background: what hides a shelf slot when the camera has no person detector.

A grey copy of each frame, downscaled to `WIDTH` pixels wide (1/4 of 1280x720), is compared with a background
image. A pixel is foreground while it differs from the background by more than `THRESHOLD` grey levels. The
background follows slow lighting drift where nothing is in front of it, and takes over a changed pixel once that
pixel has held still (within `THRESHOLD` of its value when it last moved) long enough.

Pieces of foreground (connected, after growing the mask a little) are told apart by where they reach. One that fits
inside a single ROI is that slot's own change (products taken or put back): it hides nothing, so the classifier
reads the change at once, and it settles after `settle_seconds`. One that reaches beyond the ROIs came from outside
(a shopper, an arm): it hides the slots it covers (grown, since a classifier is already confused by an arm over
part of a slot) and settles only after `max_hold_seconds`, so a shopper who stops is not read as stock. What stands
still longer than that still becomes background (a person detector has no such limit). When the frame's
median brightness steps away from the background's (or most of it differs at once), the lights changed: the
background is scaled by the frame's gain at once instead of every slot being held.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WIDTH = 320  # analysis width in pixels; 1280x720 -> 320x180 (~0.5 ms per frame with the colour conversion)
THRESHOLD = 25  # grey levels: above lighting flicker and sensor noise (which the downscale averages away)
DRIFT = 0.05  # per-frame blend of the background towards the frame where it is not foreground
GROW = np.ones((5, 5), np.uint8)  # foreground grows ~10 px (full size) each way: a thin arm hides what is beside it
MARGIN = 4  # analysis pixels (~16 px full size): how far past a ROI a slot's own change may reach (its grown edge)
LIGHT_GAIN = 0.08  # a frame this much brighter or darker than the background (median ratio) is a lighting change
LIGHT_FRACTION = 0.5  # ... and so is more of the frame than this differing at once (or the camera moved)


class Foreground:
    """`fractions(image, timestamp, rois)`: the share of each ROI (x, y, w, h in frame pixels) that an occluder covers.

    A connected piece of foreground (grown mask) whose bounding box fits inside one ROI widened by `MARGIN` is that
    slot's own change (products taken or put back): it hides nothing, and settles after `settle_seconds`. Any other
    piece came from outside the slots (a shopper, an arm): it hides what it covers, and settles only after
    `max_hold_seconds`, so a shopper who stops in front of the shelf stays a shopper that long.
    """

    def __init__(self, settle_seconds: float, max_hold_seconds: float | None = None) -> None:
        self.settle_seconds = settle_seconds
        hold = settle_seconds if max_hold_seconds is None else max_hold_seconds
        self.max_hold_seconds = max(settle_seconds, hold)  # None: the old rule, everything settles alike
        self._shape: tuple[int, int] | None = None  # full-size (height, width) the state below belongs to
        self._scale = 1.0
        self._background: np.ndarray | None = None  # float32 grey
        self._anchor: np.ndarray | None = None  # uint8 grey: each pixel's value when it last moved
        self._last_ts: float | None = None
        self._still_for: np.ndarray | None = None  # per pixel: seconds it has stayed near its anchor
        self.mask: np.ndarray | None = None  # the last frame's occluding foreground (bool), for tests and the curious
        self.changes: np.ndarray | None = None  # the last frame's foreground confined to one ROI (a slot's own change)
        self.light_steps = 0  # how often the whole background was re-based on a lighting change

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self._shape != (height, width):  # first frame, or the camera changed resolution: start over
            self._shape, self._background = (height, width), None
            self._scale = min(1.0, WIDTH / width)
        size = (max(1, round(width * self._scale)), max(1, round(height * self._scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if self._scale < 1.0 else image
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    def _gain(self, grey_f: np.ndarray) -> float:
        """The frame's brightness over the background's: the median ratio on every 4th pixel each way (a shopper
        covering less than half the frame does not move a median)."""
        assert self._background is not None
        bg, fr = self._background[::4, ::4], grey_f[::4, ::4]
        lit = bg > 8
        return float(np.median(fr[lit] / bg[lit])) if np.count_nonzero(lit) else 1.0

    def _rebase_on_light(self, grey_f: np.ndarray, gain: float) -> np.ndarray:
        """The lights changed: scale the background by the frame's gain (what a shopper covers stays out of it); if
        that does not explain most of the frame either (the camera moved), take the frame as it is."""
        assert self._background is not None
        self._background *= gain
        differs = cv2.absdiff(grey_f, self._background) > THRESHOLD
        if np.count_nonzero(differs) > LIGHT_FRACTION * differs.size:
            self._background[...] = grey_f
            differs[...] = False
        self.light_steps += 1
        return differs

    def update(
        self, image: np.ndarray, timestamp: float, rois: Sequence[tuple[int, int, int, int]] | None = None
    ) -> np.ndarray:
        """Feed one BGR frame; returns the occluding foreground mask (bool, at analysis size). `rois` (frame pixels)
        are where a slot's own change may be; without them every piece of foreground occludes."""
        grey = self._small_grey(image)
        if self._background is None or self._last_ts is None:
            self._background = grey.astype(np.float32)
            self._anchor, self._last_ts = grey, timestamp
            self._still_for = np.zeros(grey.shape, np.float32)
            self.mask, self.changes = np.zeros(grey.shape, bool), np.zeros(grey.shape, bool)
            return self.mask
        assert self._anchor is not None and self._still_for is not None
        # against the anchor, not the previous frame: a soft edge sliding in changes little from frame to frame
        moved = cv2.absdiff(grey, self._anchor) > THRESHOLD
        np.copyto(self._anchor, grey, where=moved)
        dt, self._last_ts = max(0.0, timestamp - self._last_ts), timestamp
        self._still_for += dt
        self._still_for[moved] = 0.0
        grey_f = grey.astype(np.float32)
        differs = cv2.absdiff(grey_f, self._background) > THRESHOLD
        gain = self._gain(grey_f)
        if abs(gain - 1.0) > LIGHT_GAIN or np.count_nonzero(differs) > LIGHT_FRACTION * differs.size:
            differs = self._rebase_on_light(grey_f, gain)
        grown = cv2.dilate(differs.view(np.uint8), GROW)
        outside = self._from_outside(grown, rois)
        settled = (self._still_for >= self.settle_seconds) & (~outside | (self._still_for >= self.max_hold_seconds))
        foreground = differs & ~settled
        np.copyto(self._background, grey_f, where=settled)  # a change that stays put is the new scene
        drift = (~(differs | settled)).view(np.uint8)
        cv2.accumulateWeighted(grey_f, self._background, DRIFT, mask=drift)
        shown = cv2.dilate(foreground.view(np.uint8), GROW).view(bool)
        self.mask, self.changes = shown & outside, shown & ~outside
        return self.mask

    def _from_outside(self, grown: np.ndarray, rois: Sequence[tuple[int, int, int, int]] | None) -> np.ndarray:
        """Per pixel: whether its piece of (grown) foreground reaches beyond every ROI by more than `MARGIN`."""
        if rois is None:
            return grown.view(bool)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        if count <= 1:
            return np.zeros(grown.shape, bool)
        x0, y0 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
        x1, y1 = x0 + stats[1:, cv2.CC_STAT_WIDTH], y0 + stats[1:, cv2.CC_STAT_HEIGHT]
        inside = np.zeros(count - 1, bool)
        s = self._scale
        for x, y, w, h in rois:
            inside_roi = (x0 >= x * s - MARGIN) & (y0 >= y * s - MARGIN)
            inside_roi &= (x1 <= (x + w) * s + MARGIN) & (y1 <= (y + h) * s + MARGIN)
            inside |= inside_roi
        return np.concatenate(([False], ~inside))[labels]

    def fractions(self, image: np.ndarray, timestamp: float, rois: Sequence[tuple[int, int, int, int]]) -> list[float]:
        """Update with this frame, then the occluded share of each ROI (0.0 for a ROI outside the frame)."""
        mask = self.update(image, timestamp, rois)
        s, (h, w) = self._scale, mask.shape
        out = []
        for x, y, rw, rh in rois:
            x0, y0 = min(w, max(0, int(x * s))), min(h, max(0, int(y * s)))
            x1, y1 = min(w, max(x0, int(np.ceil((x + rw) * s)))), min(h, max(y0, int(np.ceil((y + rh) * s))))
            area = (x1 - x0) * (y1 - y0)
            out.append(float(np.count_nonzero(mask[y0:y1, x0:x1])) / area if area else 0.0)
        return out
