"""Demo videos with per-frame ground truth: a fixed shelf camera and a street camera.

The truth (``<video>.json``) has ``"version": 2``: the shelf's also names each slot (``slots``: "r<row>-<col>",
as in examples/cameras.yaml) and lists per frame the slots the shopper covers by ``occlusion_min_overlap`` or more
(``occluded``) and the shopper's box clipped to the frame (``shoppers``: per frame a list of [x1, y1, x2, y2]);
the street's gives each box the id of the person or vehicle it belongs to (``ids``, parallel to
``boxes``) and the share of it not hidden by a vehicle in front (``visible``, also parallel). Version 1 files lack
these keys; `edgecam score-events` reads both.

Each scene is painted once per state; frames are composed by copying slot patches, drawing moving
people/vehicles and adding flicker and noise, so 150 HD frames take seconds, not minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios.geometry import covered_fraction

from .draw import Box, Size, apply_lighting, draw_person, gaussian_blur
from .retail import RETAIL_CLASSES, draw_layout, facing_plan, make_layout
from .security import DETECTION_CLASSES, draw_vehicle, street_background
from .shelf_hard import draw_stops, plan_hard, shake_frame, shifted
from .street_hard import HARD_STREET_STREAM, MIN_SECONDS, draw_actors, geometry, plan_street

TRUTH_VERSION = 2
OCCLUSION_OVERLAP = 0.2  # the retail scenario's default `occlusion.min_overlap`
HARD_STREAM = 0x4A4D  # the hard options' own random stream: the default video does not change with them


@dataclass
class ShelfVideo:
    """A written shelf video: slot ROIs (x, y, w, h), the true state of every slot in every frame, and the box
    (x1, y1, x2, y2, clipped to the frame) of each shopper drawn in every frame (what hides the shelf)."""

    path: Path
    rois: list[tuple[int, int, int, int]]
    labels: list[list[str]]
    fps: int
    n_frames: int
    slot_names: list[str] = field(default_factory=list)
    occluded: list[list[int]] = field(default_factory=list)  # per frame: indices of slots the shopper covers
    shoppers: list[list[tuple[float, float, float, float]]] = field(default_factory=list)


@dataclass
class SecurityVideo:
    """A written street video: person/vehicle boxes and the frame label (clear/person/vehicle) per frame."""

    path: Path
    boxes: list[list[Box]]
    labels: list[str]
    fps: int
    n_frames: int
    ids: list[list[int]] = field(default_factory=list)  # per frame, parallel to boxes: which actor each box is
    visible: list[list[float]] = field(default_factory=list)  # per frame, parallel to boxes: share not hidden


class _Sink:
    """``cv2.VideoWriter`` that fails loudly instead of silently writing nothing."""

    def __init__(self, path: Path, fps: int, size: Size) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            raise EdgecamError("cannot open a video writer (mp4v)", path=path, fix="use a writable .mp4 path")

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.release()


def _noise_pool(rng: np.random.Generator, size: Size, sigma: float, k: int = 6) -> list[np.ndarray]:
    """A few precomputed noise fields reused in random order: per-frame noise at a fraction of the cost."""
    w, h = size
    return [(rng.standard_normal((h, w, 3), dtype=np.float32) * sigma).astype(np.int16) for _ in range(k)]


def _finish(
    frame: np.ndarray, rng: np.random.Generator, pool: list[np.ndarray], t: float, light: float = 1.0
) -> np.ndarray:
    """Lighting flicker (times the scene's `light` gain) plus sensor noise for one frame."""
    gain = 1.0 + 0.02 * np.sin(2 * np.pi * 1.3 * t) + rng.uniform(-0.015, 0.015)
    f = cv2.convertScaleAbs(frame, alpha=gain * light).astype(np.int16) + pool[int(rng.integers(len(pool)))]
    return np.clip(f, 0, 255).astype(np.uint8)


def _n_frames(seconds: float, fps: int) -> int:
    if fps <= 0 or seconds <= 0:
        raise EdgecamError(f"need seconds > 0 and fps > 0, got {seconds} s at {fps} fps")
    return max(1, int(round(seconds * fps)))


def _shelf_timeline(rng: np.random.Generator, n_slots: int, n: int) -> list[list[str]]:
    """Slot states per frame: one slot is emptied (stocked -> low -> empty), one is restocked, plus noise."""
    states = [RETAIL_CLASSES[i] for i in rng.choice(3, size=n_slots, p=[0.65, 0.2, 0.15])]
    order = rng.permutation(n_slots)
    taken, restocked = int(order[0]), int(order[1 % n_slots])
    states[taken] = "stocked"
    if restocked != taken:
        states[restocked] = "empty"
    events = [(int(0.2 * n), taken, "low"), (int(0.5 * n), taken, "empty"), (int(0.75 * n), restocked, "stocked")]
    nxt = {"stocked": "low", "low": "empty", "empty": "stocked"}
    for _ in range(int(rng.integers(1, 4))):
        others = order[2:] if n_slots > 2 else order  # leave the scripted take and restock alone
        events.append((int(rng.integers(1, n)) if n > 1 else 0, int(rng.choice(others)), ""))
    events.sort()
    out, e = [], 0
    for f in range(n):
        while e < len(events) and events[e][0] <= f:
            _, s, new = events[e]
            states[s] = new or nxt[states[s]]
            e += 1
        out.append(list(states))
    return out


def make_shelf_video(
    path: Path | str,
    seconds: float = 10,
    fps: int = 15,
    size: Size = (1280, 720),
    seed: int = 0,
    hard: bool = False,
) -> ShelfVideo:
    """Write a fixed shelf camera video (mp4v) plus ``<path>.json`` with slot ROIs and per-frame states.

    `hard` adds what alerts must get right (see `shelf_hard`): shoppers who stop for 1-5 s, a slot emptied and
    restocked while hidden, drifting and stepped lighting, camera shake; the truth then also holds per frame the
    light gain (``light``) and the shake (``shake``: [dx, dy] pixels), the ``stops`` and the ``hidden_changes``."""
    path, n = Path(path), _n_frames(seconds, fps)
    rng = np.random.default_rng(seed)
    layout = make_layout(rng, size, n_rows=int(rng.integers(3, 5)), slots_per_row=int(rng.integers(4, 7)))
    n_slots = len(layout.slots)
    paint_seed, light_seed, blur = int(rng.integers(2**31)), int(rng.integers(2**31)), rng.uniform(0.5, 1.2)
    painted = {}
    for st in RETAIL_CLASSES:  # same seeds for every state: only the products differ between the three
        plans = [facing_plan(g, st, rng) for g in layout.slots]
        img, _ = draw_layout(layout, [st] * n_slots, np.random.default_rng(paint_seed), plans=plans)
        painted[st] = gaussian_blur(apply_lighting(img, np.random.default_rng(light_seed), slope=0.2), blur)
    labels = _shelf_timeline(rng, n_slots, n)
    slot_boxes = [(float(g.x0), float(g.y0), float(g.x1), float(g.y1)) for g in layout.slots]
    plan = plan_hard(np.random.default_rng([seed, HARD_STREAM]), slot_boxes, labels, fps, size) if hard else None
    walk_start, walk_len = rng.uniform(0.1, 0.6) * n, max(2.0, rng.uniform(1.5, 2.5) * fps)
    walker_seed, direction = int(rng.integers(2**31)), 1 if rng.random() < 0.5 else -1
    pool = _noise_pool(rng, size, rng.uniform(2.0, 4.0))
    w, h = size
    canvas = painted["empty"].copy()
    shown: list[str | None] = [None] * n_slots
    occluded: list[list[int]] = []
    shoppers: list[list[tuple[float, float, float, float]]] = []
    with _Sink(path, fps, size) as sink:
        for f in range(n):
            for i, (g, st) in enumerate(zip(layout.slots, labels[f], strict=True)):
                if shown[i] != st:
                    canvas[g.y0 : g.floor, g.x0 : g.x1] = painted[st][g.y0 : g.floor, g.x0 : g.x1]
                    shown[i] = st
            frame = canvas.copy()
            p = (f - walk_start) / walk_len
            drawn = []
            if 0.0 <= p <= 1.0:
                x = w * (-0.15 + 1.3 * (p if direction > 0 else 1 - p))
                rng_p = np.random.default_rng(walker_seed)
                drawn.append(draw_person(frame, (x, h * 1.25), h * 1.15, rng_p, phase=p * 6 * np.pi))
            dx, dy = plan.shake[f] if plan else (0, 0)
            if plan:
                drawn += draw_stops(frame, plan, f, fps)
                drawn = [shifted(b, dx, dy) for b in drawn]
                frame = shake_frame(frame, dx, dy)
            hidden = {i for s in drawn for i, b in enumerate(slot_boxes) if covered_fraction(b, s) >= OCCLUSION_OVERLAP}
            shoppers.append([])
            for shopper in drawn:
                x1, y1, x2, y2 = (round(float(v), 1) for v in shopper)
                if x2 > 0 and x1 < w and y2 > 0 and y1 < h:  # drawn at least partly inside the frame
                    shoppers[-1].append((max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)))
            occluded.append(sorted(hidden))
            sink.writer.write(_finish(frame, rng, pool, f / fps, plan.light[f] if plan else 1.0))
    rois = [(g.x0, g.y0, g.x1 - g.x0, g.y1 - g.y0) for g in layout.slots]
    names = [f"r{g.row + 1}-{g.col + 1}" for g in layout.slots]
    meta = {
        "version": TRUTH_VERSION,
        "rois": rois,
        "slots": names,
        "classes": list(RETAIL_CLASSES),
        "labels": labels,
        "fps": fps,
        "n_frames": n,
        "size": list(size),
        "seed": seed,
        "occluded": occluded,
        "occlusion_min_overlap": OCCLUSION_OVERLAP,
        "shoppers": shoppers,
    }
    if plan:
        meta.update(
            hard=True,
            light=plan.light,
            shake=[list(s) for s in plan.shake],
            stops=[{"slot": names[s.slot], "frames": list(s.standing(w, fps))} for s in plan.stops],
            hidden_changes=[{**c, "slot": names[c["slot"]]} for c in plan.changes],
        )
    path.with_suffix(".json").write_text(json.dumps(meta) + "\n")
    return ShelfVideo(path, rois, labels, fps, n, names, occluded, shoppers)


def _visible(boxes: list[Box], kinds: list[str]) -> list[float]:
    """Per box (drawn far to near, in this order), the share of it no vehicle drawn later covers."""
    out = []
    for k, b in enumerate(boxes):
        hidden = max(
            (
                covered_fraction(b.xyxy, c.xyxy)
                for c, kind in zip(boxes[k + 1 :], kinds[k + 1 :], strict=True)
                if kind == "vehicle"
            ),
            default=0.0,
        )
        out.append(round(1.0 - hidden, 3))
    return out


# Walking speed in body heights per second (1.4 m/s is about 0.8 of a 1.75 m person): a walker far away, small in
# the frame, moves as few pixels per second as their size says, not faster.
WALK_SPEED = (0.8, 1.6)


def make_security_video(
    path: Path | str, seconds: float = 10, fps: int = 15, size: Size = (1280, 720), seed: int = 0, hard: bool = False
) -> SecurityVideo:
    """Write a street camera video (people walking, a car passing) plus ``<path>.json`` with boxes per frame.

    Every box also gets its visible share (``visible``: not covered by a vehicle in front), and the truth a zone on
    the pavement and a line across it (``geometry``, a security `scenario_config`) for benchmarks. `hard` replaces
    the walkers by the script of `street_hard` (loitering, passing, turning back at the line, a group, a person
    hidden by a truck); the truth then also holds the actors' ``roles``."""
    path, n = Path(path), _n_frames(seconds, fps)
    if hard and seconds < MIN_SECONDS:
        raise EdgecamError(f"the hard street video needs --seconds >= {MIN_SECONDS:g}", fix="e.g. --seconds 30")
    rng = np.random.default_rng(seed)
    w, h = size
    bg, lay = street_background(rng, size, night=False)
    actors = []  # (kind, start frame, frames to cross, ground y, direction, seed)
    for _ in range(int(rng.integers(2, 4))):
        y = rng.uniform(lay.base + 0.05 * (h - lay.base), lay.kerb)
        actors.append(
            (
                "person",
                rng.uniform(-0.3, 0.5) * n,
                1.2 * w / (rng.uniform(*WALK_SPEED) * lay.person_height(y)) * fps,
                y,
                1 if rng.random() < 0.5 else -1,
                int(rng.integers(2**31)),
            )
        )
    y = rng.uniform(lay.kerb + 0.3 * (h - lay.kerb), h * 0.95)
    actors.append(
        (
            "vehicle",
            rng.uniform(0.3, 0.6) * n,
            rng.uniform(1.5, 3.0) * fps,
            y,
            1 if rng.random() < 0.5 else -1,
            int(rng.integers(2**31)),
        )
    )
    actors.sort(key=lambda a: a[3])
    pool = _noise_pool(rng, size, rng.uniform(1.5, 3.5))
    script = plan_street(np.random.default_rng([seed, HARD_STREET_STREAM]), lay, seconds) if hard else None
    all_boxes, all_ids, all_visible, labels = [], [], [], []
    with _Sink(path, fps, size) as sink:
        for f in range(n):
            frame, boxes, ids = bg.copy(), [], []
            drawn = draw_actors(frame, lay, script, f / fps) if script is not None else []
            for actor, xyxy in drawn:
                x0, y0, x1, y1 = np.clip(xyxy, 0, [w, h, w, h])
                if x1 - x0 >= 3 and y1 - y0 >= 3:
                    boxes.append(Box((float(x0), float(y0), float(x1), float(y1)), script[actor].kind))
                    ids.append(actor)
            for actor, (kind, start, span, y, d, s) in enumerate(actors):
                p = (f - start) / span
                if script is not None or not 0.0 <= p <= 1.0:
                    continue
                u = lay.person_height(y)
                if kind == "person":
                    x = w * (-0.1 + 1.2 * (p if d > 0 else 1 - p))
                    xyxy = draw_person(frame, (x, y), u, np.random.default_rng(s), phase=p * span / fps * 2 * np.pi)
                else:
                    length = 2.3 * u
                    x = -length + (w + length) * (p if d > 0 else 1 - p)
                    xyxy = draw_vehicle(frame, x, y, length, np.random.default_rng(s), kind="car", facing=d)
                x0, y0, x1, y1 = np.clip(xyxy, 0, [w, h, w, h])
                if x1 - x0 >= 3 and y1 - y0 >= 3:
                    boxes.append(Box((float(x0), float(y0), float(x1), float(y1)), kind))
                    ids.append(actor)
            kinds = {b.cls for b in boxes}
            labels.append("vehicle" if "vehicle" in kinds else "person" if "person" in kinds else "clear")
            all_boxes.append(boxes)
            all_ids.append(ids)
            all_visible.append(_visible(boxes, [b.cls for b in boxes]))
            sink.writer.write(_finish(frame, rng, pool, f / fps))
    meta = {
        "version": TRUTH_VERSION,
        "classes": list(DETECTION_CLASSES),
        "labels": labels,
        "fps": fps,
        "n_frames": n,
        "size": list(size),
        "boxes": [[[*b.xyxy, b.cls] for b in bs] for bs in all_boxes],
        "ids": all_ids,
        "visible": all_visible,
        "geometry": geometry(lay),
        "seed": seed,
    }
    if script is not None:
        meta.update(hard=True, roles=[{"id": i, "kind": a.kind, "role": a.role} for i, a in enumerate(script)])
    path.with_suffix(".json").write_text(json.dumps(meta) + "\n")
    return SecurityVideo(path, all_boxes, labels, fps, n, all_ids, all_visible)
