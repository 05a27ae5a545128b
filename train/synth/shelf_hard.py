"""The hard parts of a shelf video (`make_shelf_video(..., hard=True)`): what out-of-stock alerts must get right.

- Shoppers who walk in, stop in front of a slot for 1-5 s and walk on (they hide a column of slots; the running
  background of the scenario may take a still shopper for the shelf).
- One slot emptied while a stopped shopper hides it, and restocked while a later one does: the change is never
  seen happening, only its result.
- Lighting that drifts over the video and one sudden step (lights dimmed or brightened by 15-25 %).
- Camera shake: a few bursts of whole-frame translations of at most `MAX_SHAKE` pixels, recorded per frame so the
  truth stays right (the slot ROIs of the config still cover the slots).

Everything is drawn from its own generator (seeded from the video's seed), so a video without these options is
byte-for-byte the one it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .draw import Size, draw_person

MAX_SHAKE = 3  # pixels: ROIs drawn for the still camera still match the slots
WALK_SPEED = 0.65  # frame widths per second (the passing shopper crosses 1.3 widths in about 2 s)
DWELL_SECONDS = (1.0, 5.0)


@dataclass
class Stop:
    """A shopper who enters at frame `start`, walks to `x`, stands `dwell` frames in front of slot `slot`, leaves."""

    start: float
    x: float
    dwell: float
    direction: int
    seed: int
    slot: int

    def position(self, f: int, w: int, fps: float) -> tuple[float, float] | None:
        """(x, walked seconds) at frame `f`, or None while off screen."""
        e0, e1 = (-0.15 * w, 1.15 * w) if self.direction > 0 else (1.15 * w, -0.15 * w)
        walk_in = abs(self.x - e0) / (WALK_SPEED * w) * fps
        walk_out = abs(e1 - self.x) / (WALK_SPEED * w) * fps
        t = f - self.start
        if t < 0 or t > walk_in + self.dwell + walk_out:
            return None
        if t < walk_in:
            return e0 + (self.x - e0) * t / walk_in, t / fps
        if t < walk_in + self.dwell:
            return self.x, walk_in / fps  # standing: the stride stops
        u = t - walk_in - self.dwell
        return self.x + (e1 - self.x) * u / walk_out, (walk_in + u) / fps

    def standing(self, w: int, fps: float) -> tuple[int, int]:
        """First and end (exclusive) frame of the stand."""
        e0 = -0.15 * w if self.direction > 0 else 1.15 * w
        f0 = self.start + abs(self.x - e0) / (WALK_SPEED * w) * fps
        return int(np.ceil(f0)), int(np.ceil(f0 + self.dwell))


@dataclass
class HardPlan:
    """What the hard options add to one video: stopping shoppers, per-frame light gain and shake, hidden changes."""

    stops: list[Stop]
    light: list[float]
    shake: list[tuple[int, int]]
    changes: list[dict] = field(default_factory=list)  # {"slot", "frame", "from", "to"}: each while occluded


def plan_hard(
    rng: np.random.Generator,
    slots: list[tuple[float, float, float, float]],
    labels: list[list[str]],
    fps: int,
    size: Size,
) -> HardPlan:
    """Draw the hard options for a video of `len(labels)` frames; rewrites one slot's states in `labels`."""
    n, (w, _) = len(labels), size
    centre = [(b[0] + b[2]) / 2 for b in slots]

    def stop(start: float, slot: int) -> Stop:
        dwell = rng.uniform(*DWELL_SECONDS) * fps
        return Stop(start, centre[slot], dwell, 1 if rng.random() < 0.5 else -1, int(rng.integers(2**31)), slot)

    stops: list[Stop] = []
    changes: list[dict] = []
    # a slot never emptied by the timeline: emptied behind one stopped shopper, restocked behind a later one
    quiet = [i for i in range(len(slots)) if all(row[i] != "empty" for row in labels)]
    if quiet:
        h = int(rng.choice(quiet))
        take, restock = stop(rng.uniform(0.05, 0.15) * n, h), stop(rng.uniform(0.65, 0.72) * n, h)
        stops += [take, restock]
        fa, fb = (sum(s.standing(w, fps)) // 2 for s in (take, restock))
        for f, row in enumerate(labels):
            row[h] = "empty" if fa <= f < fb else "stocked"
        changes.append({"slot": h, "frame": fa, "from": "stocked", "to": "empty"})
        if fb < n:
            changes.append({"slot": h, "frame": fb, "from": "empty", "to": "stocked"})
    # one more shopper stops in front of any slot and changes nothing: an alert there is the occluder's
    stops.append(stop(rng.uniform(0.3, 0.5) * n, int(rng.integers(len(slots)))))
    # light: a slow drift to 0.8-1.2 of the start over the whole video, and a step of 15-25 % up or down
    drift, step_at = rng.uniform(0.8, 1.2), int(rng.uniform(0.35, 0.8) * n)
    step = rng.uniform(0.15, 0.25) * (1 if rng.random() < 0.5 else -1)
    light = [round((1 + (drift - 1) * f / max(1, n - 1)) * (1 + step if f >= step_at else 1), 4) for f in range(n)]
    # shake: two bursts of 0.5-1.5 s, every frame in them moved by up to MAX_SHAKE pixels
    shake = [(0, 0)] * n
    for _ in range(2):
        f0, span = int(rng.uniform(0.1, 0.9) * n), int(rng.uniform(0.5, 1.5) * fps)
        for f in range(f0, min(n, f0 + span)):
            shake[f] = (int(rng.integers(-MAX_SHAKE, MAX_SHAKE + 1)), int(rng.integers(-MAX_SHAKE, MAX_SHAKE + 1)))
    return HardPlan(stops, light, shake, changes)


def draw_stops(frame: np.ndarray, plan: HardPlan, f: int, fps: int) -> list[tuple[float, float, float, float]]:
    """Draw the stopping shoppers present at frame `f` (same size and place as the passing one); their boxes."""
    h, w = frame.shape[:2]
    boxes = []
    for s in plan.stops:
        at = s.position(f, w, fps)
        if at is not None:
            x, walked = at
            boxes.append(draw_person(frame, (x, h * 1.25), h * 1.15, np.random.default_rng(s.seed), walked * 3 * np.pi))
    return boxes


def shake_frame(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The frame moved by (dx, dy) pixels, the edge repeated into the gap."""
    if dx == 0 and dy == 0:
        return frame
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def shifted(box: tuple[float, float, float, float], dx: int, dy: int) -> tuple[float, float, float, float]:
    """A box drawn before the shake, where the camera shows it."""
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
