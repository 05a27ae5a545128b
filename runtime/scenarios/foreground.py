"""Foreground per region from a running background: what hides a shelf slot when the camera has no person detector.

A copy of each frame, downscaled to `WIDTH` pixels wide (1/4 of 1280x720), is compared with a background image. A
pixel is foreground while it differs from the background by more than `THRESHOLD` levels in any colour channel. The
background follows slow lighting drift where nothing is in front of it, and takes over a changed pixel once that
pixel has held still (within `THRESHOLD` of its value when it last moved) long enough.

Pieces of foreground (connected, after growing the mask a little) are told apart by where they reach. One that fits
inside a single ROI is that slot's own change (products taken or put back): it hides nothing, so the classifier
reads the change at once, and it settles after `settle_seconds`. One that reaches beyond the ROIs came from outside
(a shopper, an arm), and so does one inside a slot that changes from frame to frame (legs walking past a bottom
slot, the rest of the shopper the colour of the shelf). Those hide the slots they cover (grown, since a classifier
is already confused by an arm over part of a slot) and settle only after `max_hold_seconds`, so a shopper who stops
is not read as stock. What stands still longer than that still becomes background (a person detector has no such
limit). A shopper who stops and is seen only in pieces that each fit one slot is still read as the slots' own change:
a person detector is the cure for that.

Lighting and shake: when the frame's median brightness (over unclipped pixels) steps away from the background's,
or most of it differs at once, the lights changed, and the background is scaled by the frame's gain at once
instead of every slot being held. A shift of the whole picture (camera shake) is measured by phase correlation
and undone, and a pixel only differs when it is outside the range of its background neighbours, so shelf edges
that moved by a pixel are not foreground.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WIDTH = 320  # analysis width in pixels; 1280x720 -> 320x180 (~0.5 ms per frame with the colour conversion)
THRESHOLD = 25  # levels of one channel: above lighting flicker and sensor noise (which the downscale averages away)
DRIFT = 0.05  # per-frame blend of the background towards the frame where it is not foreground
GROW = np.ones((5, 5), np.uint8)  # foreground grows ~10 px (full size) each way: a thin arm hides what is beside it
MARGIN = 4  # analysis pixels (~16 px full size): how far past a ROI a slot's own change may reach (its grown edge)
LIGHT_GAIN = 0.08  # a frame this much brighter or darker than the background (median ratio) is a lighting change
SATURATED = 250  # a channel level this high may have been clipped
LIGHT_FRACTION = 0.5  # ... and so is more of the frame than this differing at once (or the camera moved)
NEIGHBOURS = np.ones((3, 3), np.uint8)  # a pixel matches the background if it is within range of any of these
SHAKE_MIN, SHAKE_MAX = 0.25, 8.0  # analysis pixels (1 to 32 px full size): a smaller shift is noise, a larger a pan
SHAKE_RESPONSE = 0.2  # phase correlation's peak strength below which the shift is not trusted
MOVING_SHARE = 0.1  # a piece with more of its pixels changing in one frame than this is passing, not a slot's change


class Foreground:
    """`fractions(image, timestamp, rois)`: the share of each ROI (x, y, w, h in frame pixels) that an occluder covers.

    A connected piece of foreground (grown mask) whose bounding box fits inside one ROI widened by `MARGIN`, and which
    holds still, is that slot's own change (products taken or put back): it hides nothing, and settles after
    `settle_seconds`. Any other piece came from outside the slots (a shopper, an arm), or is still moving (taking a
    product is a step; a passer-by whose only visible part fits one slot keeps moving): it hides what it covers, and
    settles only after
    `max_hold_seconds`, so a shopper who stops in front of the shelf stays a shopper that long.
    """

    def __init__(self, settle_seconds: float, max_hold_seconds: float | None = None) -> None:
        self.settle_seconds = settle_seconds
        hold = settle_seconds if max_hold_seconds is None else max_hold_seconds
        self.max_hold_seconds = max(settle_seconds, hold)  # None: the old rule, everything settles alike
        self._shape: tuple[int, int] | None = None  # full-size (height, width) the state below belongs to
        self._scale = 1.0
        self._background: np.ndarray | None = None  # float32 BGR
        self._anchor: np.ndarray | None = None  # uint8 BGR: each pixel's value when it last moved
        self._last_ts: float | None = None
        self._still_for: np.ndarray | None = None  # per pixel: seconds it has stayed near its anchor
        self._previous: np.ndarray | None = None  # uint8 BGR: the last frame
        self.mask: np.ndarray | None = None  # the last frame's occluding foreground (bool), for tests and the curious
        self.changes: np.ndarray | None = None  # the last frame's foreground confined to one ROI (a slot's own change)
        self.light_steps = 0  # how often the whole background was re-based on a lighting change

    def _small(self, image: np.ndarray) -> np.ndarray:
        """The frame at analysis size, in colour: trousers as dark as the shelf behind them differ in hue."""
        height, width = image.shape[:2]
        if self._shape != (height, width):  # first frame, or the camera changed resolution: start over
            self._shape, self._background = (height, width), None
            self._scale = min(1.0, WIDTH / width)
        size = (max(1, round(width * self._scale)), max(1, round(height * self._scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if self._scale < 1.0 else image
        return np.ascontiguousarray(small[..., :3]) if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)

    def _gain(self, frame_f: np.ndarray) -> float:
        """The frame's brightness over the background's: the median ratio on every 4th unclipped pixel each way (a
        shopper covering less than half the frame does not move a median)."""
        assert self._background is not None
        bg_c, fr_c = (cv2.split(np.ascontiguousarray(x[::4, ::4])) for x in (self._background, frame_f))
        bg, fr = bg_c[0] + bg_c[1] + bg_c[2], fr_c[0] + fr_c[1] + fr_c[2]
        # clipped pixels (a white wall brightened past 255) cannot show the gain: they would pull the median to 1
        brightest = cv2.max(cv2.max(cv2.max(bg_c[0], bg_c[1]), cv2.max(bg_c[2], fr_c[0])), cv2.max(fr_c[1], fr_c[2]))
        lit = (bg > 24) & (brightest < SATURATED)
        return float(np.median(fr[lit] / bg[lit])) if np.count_nonzero(lit) else 1.0

    def _rebase_on_light(self, frame: np.ndarray, frame_f: np.ndarray, gain: float) -> np.ndarray:
        """The lights changed: scale the background by the frame's gain (what a shopper covers stays out of it); if
        that does not explain most of the frame either (the camera moved), take the frame as it is."""
        assert self._background is not None
        self._background *= gain
        np.minimum(self._background, 255.0, out=self._background)  # the camera clips as well
        differs = self._off_background(frame)
        if np.count_nonzero(differs) > LIGHT_FRACTION * differs.size:
            self._background[...] = frame_f
            differs[...] = False
        self.light_steps += 1
        return differs

    def update(
        self, image: np.ndarray, timestamp: float, rois: Sequence[tuple[int, int, int, int]] | None = None
    ) -> np.ndarray:
        """Feed one BGR frame; returns the occluding foreground mask (bool, at analysis size). `rois` (frame pixels)
        are where a slot's own change may be; without them every piece of foreground occludes."""
        frame = self._small(image)
        if self._background is None or self._last_ts is None:
            plane = frame.shape[:2]
            self._background = frame.astype(np.float32)
            self._anchor, self._last_ts = frame, timestamp
            self._still_for = np.zeros(plane, np.float32)
            self._previous = frame
            self.mask, self.changes = np.zeros(plane, bool), np.zeros(plane, bool)
            return self.mask
        assert self._anchor is not None and self._still_for is not None
        assert self._previous is not None
        frame = self._steady(frame)
        # against the anchor, not the previous frame: a soft edge sliding in changes little from frame to frame
        moved = _far(frame, self._anchor)
        cv2.copyTo(frame, moved.view(np.uint8), self._anchor)  # in place (numpy's copyto with `where` costs 100x)
        dt, self._last_ts = max(0.0, timestamp - self._last_ts), timestamp
        self._still_for += dt
        self._still_for[moved] = 0.0
        changing = _far(frame, self._previous)  # drift never changes a pixel this much from one frame to the next
        self._previous = frame
        frame_f = frame.astype(np.float32)
        differs = self._off_background(frame)
        gain = self._gain(frame_f)
        if abs(gain - 1.0) > LIGHT_GAIN or np.count_nonzero(differs) > LIGHT_FRACTION * differs.size:
            differs = self._rebase_on_light(frame, frame_f, gain)
        grown = cv2.dilate(differs.view(np.uint8), GROW)
        outside = self._from_outside(grown, rois, changing)
        settled = (self._still_for >= self.settle_seconds) & (~outside | (self._still_for >= self.max_hold_seconds))
        foreground = differs & ~settled
        cv2.copyTo(frame_f, settled.view(np.uint8), self._background)  # a change that stays put is the new scene
        drift = (~(differs | settled)).view(np.uint8)
        cv2.accumulateWeighted(frame_f, self._background, DRIFT, mask=drift)
        shown = cv2.dilate(foreground.view(np.uint8), GROW).view(bool)
        self.mask, self.changes = shown & outside, shown & ~outside
        return self.mask

    def _off_background(self, frame: np.ndarray) -> np.ndarray:
        """Per pixel: whether the frame is more than `THRESHOLD` outside the range of the background's 3x3
        neighbourhood in any channel. A shelf edge that shook by a pixel (or was resampled when the shake was
        undone) is still within its neighbours' range; a shopper is not. In uint8 (the background rounded), where a
        saturating subtraction is the distance beyond the range on each side."""
        assert self._background is not None
        background = cv2.convertScaleAbs(self._background)
        high, low = cv2.dilate(background, NEIGHBOURS), cv2.erode(background, NEIGHBOURS)
        return _channel_max(cv2.max(cv2.subtract(frame, high), cv2.subtract(low, frame))) > THRESHOLD

    def _steady(self, frame: np.ndarray) -> np.ndarray:
        """The frame moved back onto the background when the camera shook: a shift of the whole picture (phase
        correlation, sub-pixel) of at least `SHAKE_MIN` analysis pixels and at most `SHAKE_MAX`. Without this every
        edge on the shelf is foreground for as long as the camera shakes, and every slot is held."""
        assert self._background is not None
        background = cv2.cvtColor(self._background, cv2.COLOR_BGR2GRAY)
        (dx, dy), response = cv2.phaseCorrelate(background, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32))
        if response < SHAKE_RESPONSE or not SHAKE_MIN <= max(abs(dx), abs(dy)) <= SHAKE_MAX:
            return frame
        shift = np.float32([[1, 0, -dx], [0, 1, -dy]])
        size = (frame.shape[1], frame.shape[0])
        return cv2.warpAffine(frame, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _from_outside(
        self, grown: np.ndarray, rois: Sequence[tuple[int, int, int, int]] | None, changing: np.ndarray
    ) -> np.ndarray:
        """Per pixel: whether its piece of (grown) foreground reaches beyond every ROI by more than `MARGIN`, has
        more than `MOVING_SHARE` of its pixels `changing` in this frame."""
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
        # Inside one slot, yet not the slot's own change: a piece that changes from frame to frame (legs walking
        # past a bottom slot, a head past a top one, the rest of the shopper the colour of the shelf). Taking a
        # product changes its pixels in one frame only.
        area = stats[1:, cv2.CC_STAT_AREA]
        flat = labels.ravel()
        passing = np.bincount(flat, weights=changing.ravel(), minlength=count)[1:] > MOVING_SHARE * area
        inside &= ~passing
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


def _far(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel: whether two colour images differ by more than `THRESHOLD` levels in any channel."""
    return _channel_max(cv2.absdiff(a, b)) > THRESHOLD


def _channel_max(image: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of its channels: OpenCV on split planes (numpy's `max(axis=2)` over 3 interleaved
    channels costs ~25x more, 1.7 ms on a 320x180 frame)."""
    b, g, r = cv2.split(image)
    return cv2.max(cv2.max(b, g), r)
