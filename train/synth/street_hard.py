"""The hard parts of a street video (`make_security_video(..., hard=True)`): what zone, line and loitering alerts
and the tracker must get right.

Every actor follows a scripted path of timed waypoints on the ground (frame pixels), so the truth is exact:

- `loiterer`: walks into the `entrance` zone and stays `LOITER_SECONDS` + 2-5 s (shifting on the spot), then
  leaves; `passer`: walks straight through the zone in at most `LOITER_SECONDS` - 2.5 s. Loitering is due only
  for the first; the margins keep both clear of the alert's patience and the scorer's tolerance.
- `turn_back_cross`: walks over the `gate` line, stays on the far side 1-2 s and comes back: one crossing each
  way (a crossing is the ground point's path cutting the line, whatever happens next); `turn_back_short`: stops
  short of the line and turns round: no crossing.
- `group`: two or three people walking side by side at the same speed, each a third to a half of a box width
  behind the one before (boxes overlapping: IoU mostly 0.1-0.5, at times above a detector's NMS threshold),
  through the zone and over the line.
- `occluded`: a person walking near the kerb while a truck passes on the road in front of them, hiding them for
  one to one and a half seconds, at the line; `truck` and `car` drive along the road (they cross the line too).

The script is drawn from the video's own stream seeded by (seed, `HARD_STREET_STREAM`): the normal video of a
seed does not change. The suggested geometry (`geometry`: the zone and line, as a security `scenario_config`)
goes into the truth so a benchmark can run the scenario the video was made for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .security import StreetLayout

LOITER_SECONDS = 5.0  # the `loiter_seconds` of the suggested zone
MIN_SECONDS = 24.0  # the script needs this long
HARD_STREET_STREAM = 0x57EE


@dataclass
class Actor:
    """A person or vehicle following timed waypoints (seconds, x, y) on the ground; off screen outside them."""

    kind: str  # "person" | "vehicle"
    role: str
    waypoints: list[tuple[float, float, float]]
    seed: int
    vehicle: str = "car"  # car | van | truck, for vehicles
    scale: float = 1.0  # apparent size against a person standing at the same y

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(x, y, metres walked, in frame pixels) at time t, or None before the first / after the last waypoint."""
        w = self.waypoints
        if t < w[0][0] or t > w[-1][0]:
            return None
        walked = 0.0
        for (t0, x0, y0), (t1, x1, y1) in zip(w, w[1:], strict=False):
            seg = float(np.hypot(x1 - x0, y1 - y0))
            if t <= t1:
                a = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0), walked + a * seg
            walked += seg
        return w[-1][1], w[-1][2], walked


def geometry(lay: StreetLayout) -> dict:
    """The zone and line the hard script is written against, as a security `scenario_config` (frame pixels)."""
    w, h = lay.size
    x0, x1 = round(0.35 * w), round(0.65 * w)
    zone = [[x0, lay.base], [x1, lay.base], [x1, lay.kerb], [x0, lay.kerb]]
    gate = [[round(0.8 * w), lay.base], [round(0.8 * w), h]]
    return {
        "zones": [{"name": "entrance", "polygon": zone, "classes": ["person"], "loiter_seconds": LOITER_SECONDS}],
        "lines": [{"name": "gate", "points": gate, "classes": ["person", "vehicle"]}],
    }


def plan_street(rng: np.random.Generator, lay: StreetLayout, seconds: float) -> list[Actor]:
    """The scripted actors of one hard video of `seconds` (>= MIN_SECONDS); see the module doc."""
    w, h = lay.size
    zx0, zx1, gate = 0.35 * w, 0.65 * w, 0.8 * w
    depth = lay.kerb - lay.base
    s = seconds / 30.0  # the script is laid out for 30 s and stretched to the video

    def y_pave(lo: float = 0.3, hi: float = 0.9) -> float:
        return lay.base + rng.uniform(lo, hi) * depth

    def speed(y: float) -> float:
        """Walking speed in px/s at ground y: about one body height a second."""
        return lay.person_height(y) * rng.uniform(0.9, 1.2)

    def seed() -> int:
        return int(rng.integers(2**31))

    def walk(t0: float, y: float, xs: list[float], v: float, pauses: dict[int, float] | None = None) -> list:
        """Waypoints walking through xs at speed v, pausing pauses[i] seconds at xs[i]."""
        pts, t = [(t0, xs[0], y)], t0
        for i, x in enumerate(xs[1:], 1):
            t += abs(x - pts[-1][1]) / v
            pts.append((t, x, y))
            if pauses and i in pauses:
                t += pauses[i]
                pts.append((t, x, y))
        return pts

    actors: list[Actor] = []
    left, right = -0.08 * w, 1.08 * w
    # a loiterer: walks in, stays well past the loiter time (shifting a little), walks out
    y, d = y_pave(0.4, 0.8), 1 if rng.random() < 0.5 else -1
    v, stay = speed(y), LOITER_SECONDS + rng.uniform(2.0, 5.0)
    spot = rng.uniform(zx0 + 0.25 * (zx1 - zx0), zx1 - 0.25 * (zx1 - zx0))
    sway = 0.03 * w
    start, end = (left, right) if d > 0 else (right, left)
    t = rng.uniform(0.5, 2.0) * s
    pts = walk(t, y, [start, spot], v)
    t = pts[-1][0]
    pts += [(t + stay * 0.4, spot + sway, y), (t + stay * 0.7, spot - sway, y), (t + stay, spot, y)]
    pts += walk(t + stay, y, [spot, start if rng.random() < 0.5 else end], v)[1:]
    actors.append(Actor("person", "loiterer", pts, seed()))
    # passers: straight through the zone, quick enough never to loiter
    for t0, d in ((rng.uniform(3, 7) * s, 1), (rng.uniform(17, 20) * s, -1)):
        y = y_pave()
        v = max(speed(y), (zx1 - zx0) / (LOITER_SECONDS - 2.5))
        xs = [left, right] if d > 0 else [right, left]
        actors.append(Actor("person", "passer", walk(t0, y, xs, v), seed()))
    # turning back at the line, from the right: one goes over and comes back, one stops short
    for role, t0 in (("turn_back_cross", rng.uniform(1, 4) * s), ("turn_back_short", rng.uniform(10, 13) * s)):
        y = y_pave(0.5, 0.9)
        v, u = speed(y), lay.person_height(y)
        if role == "turn_back_cross":  # well over the line, never into the zone
            turn = max(gate - rng.uniform(0.6, 1.0) * u, zx1 + 0.05 * w)
        else:
            turn = gate + rng.uniform(0.5, 0.8) * u
        pause = rng.uniform(1.0, 2.0) if role == "turn_back_cross" else rng.uniform(0.3, 1.0)
        actors.append(Actor("person", role, walk(t0, y, [right, turn, right], v, {1: pause}), seed()))
    # a group of two or three side by side, boxes overlapping, through the zone and over the line
    n, y0 = int(rng.integers(2, 4)), y_pave(0.45, 0.75)
    v, t0 = speed(y0), rng.uniform(11, 12.5) * s
    for k in range(n):
        y = y0 + (k - (n - 1) / 2) * 0.06 * depth
        gap = rng.uniform(0.3, 0.5) * 0.45 * lay.person_height(y)  # a walker's box is ~0.45 heights wide
        actors.append(Actor("person", "group", walk(t0, y, [left - k * gap, right - k * gap], v), seed()))
    # a person by the kerb hidden by a truck passing in front, just at the line
    y = lay.kerb - 0.2 * depth  # clear of the zone's edge (the kerb): no flicker in and out of it
    v = speed(y) * 0.8
    meet = rng.uniform(23, 26) * s
    x_meet = gate + rng.uniform(-0.3, 0.3) * lay.person_height(y)
    t_start = meet - (x_meet - left) / v  # left to right, at x_meet when the truck's middle passes
    actors.append(Actor("person", "occluded", walk(t_start, y, [left, x_meet, right], v), seed()))
    yt = lay.kerb + rng.uniform(0.12, 0.22) * (h - lay.kerb)
    length = 2.6 * lay.person_height(yt)
    vt = (w + length) / rng.uniform(2.2, 3.0)
    # the truck's left end x_t(t) = x_meet - length / 2 + vt (t - meet) going right, mirrored going left
    d = -1 if rng.random() < 0.5 else 1
    a, b = x_meet - length / 2 - d * vt * meet, d * vt
    t_in, t_out = sorted(((-length - a) / b, (w - a) / b))
    wp = [(t_in, a + b * t_in, yt), (t_out, a + b * t_out, yt)]
    actors.append(Actor("vehicle", "truck", wp, seed(), vehicle="truck", scale=2.6))
    # an ordinary car at another time, on the far lane
    yc = lay.kerb + rng.uniform(0.55, 0.8) * (h - lay.kerb)
    length = 2.3 * lay.person_height(yc)
    t0, vc = rng.uniform(7, 10) * s, (w + length) / rng.uniform(1.8, 2.6)
    xs = [-length, w] if rng.random() < 0.5 else [w, -length]
    actors.append(Actor("vehicle", "car", [(t0, xs[0], yc), (t0 + (w + length) / vc, xs[1], yc)], seed(), scale=2.3))
    return actors


def draw_actors(
    frame: np.ndarray, lay: StreetLayout, actors: list[Actor], t: float
) -> list[tuple[int, tuple[float, float, float, float]]]:
    """Draw the actors on screen at time t, far to near (nearer ones hide farther ones); (actor index, xyxy box)."""
    from .draw import draw_person
    from .security import draw_vehicle

    here = [(i, a, p) for i, a in enumerate(actors) if (p := a.at(t)) is not None]
    out = []
    for i, a, (x, y, walked) in sorted(here, key=lambda e: e[2][1]):
        u, rng = lay.person_height(y), np.random.default_rng(a.seed)
        if a.kind == "person":
            box = draw_person(frame, (x, y), u, rng, phase=walked / u * 2.5, light=lay.light)
        else:
            facing = 1 if a.waypoints[-1][1] >= a.waypoints[0][1] else -1
            box = draw_vehicle(frame, x, y, a.scale * u, rng, kind=a.vehicle, facing=facing, light=lay.light)
        out.append((i, tuple(float(v) for v in box)))
    return out
