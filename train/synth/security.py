"""Security camera scenes: a street or entrance with people and vehicles, or a tampered camera.

Scenes are drawn at twice the requested size and shrunk with area averaging, so small people and cars
keep anti-aliased edges; boxes are computed from the drawn primitives, not guessed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .draw import (
    Box,
    Size,
    big_blur,
    blob_mask,
    camera_effects,
    draw_person,
    hsv_color,
    shade,
    skin_color,
    vertical_gradient,
)

SECURITY_CLASSES = ("clear", "person", "vehicle", "tampered")
DETECTION_CLASSES = ("person", "vehicle")
TAMPER_MODES = ("covered", "defocused", "redirected")
_AA = cv2.LINE_AA


@dataclass
class StreetScene:
    """A rendered camera frame: BGR image, person/vehicle boxes and the frame's classification label."""

    image: np.ndarray
    boxes: list[Box]
    label: str
    tamper: str | None = None
    night: bool = False
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StreetLayout:
    """Where the ground is: facades end at ``base``, the road starts at ``kerb``; ``night`` dims objects."""

    size: Size
    base: int
    kerb: int
    night: bool
    light: float  # illumination factor applied to object colours

    def person_height(self, foot_y: float) -> float:
        """Apparent height of a person standing at ``foot_y``: small near the facades, big near the camera."""
        w, h = self.size
        t = (foot_y - self.base) / max(1.0, h - self.base)
        return h * (0.12 + 0.52 * t)


def draw_vehicle(
    img: np.ndarray,
    x: float,
    ground: float,
    length: float,
    rng: np.random.Generator,
    kind: str | None = None,
    facing: int = 1,
    light: float = 1.0,
    headlights: bool = False,
) -> tuple[float, float, float, float]:
    """Draw a car, van or truck seen from the side, left end at ``x``, wheels on ``ground``; returns xyxy."""
    kind = kind or ("car", "car", "van", "truck")[int(rng.integers(4))]
    L = length
    body_c = shade(hsv_color(rng, (0.0, 0.9), (0.2, 0.95)), light)
    glass, dark = shade((90, 70, 55), light), (20, 20, 20)
    r = L * (0.085 if kind == "car" else 0.075)
    if kind == "car":
        roof = 0.3
        body = [
            (0.0, -r * 0.4 / L),
            (1.0, -r * 0.4 / L),
            (1.0, -0.2),
            (0.78, -0.22),
            (0.66, -roof),
            (0.32, -roof),
            (0.2, -0.22),
            (0.0, -0.19),
        ]
        window = [(0.3, -0.215), (0.64, -0.215), (0.62, -roof + 0.015), (0.34, -roof + 0.015)]
        wheels = (0.18, 0.8)
    elif kind == "van":
        roof = 0.42
        body = [(0.0, -r * 0.4 / L), (1.0, -r * 0.4 / L), (1.0, -0.2), (0.88, -roof), (0.0, -roof)]
        window = [(0.72, -0.24), (0.92, -0.24), (0.86, -roof + 0.03), (0.72, -roof + 0.03)]
        wheels = (0.17, 0.82)
    else:
        roof = 0.5
        body = [
            (0.0, -r * 0.4 / L),
            (1.0, -r * 0.4 / L),
            (1.0, -0.38),
            (0.95, -0.44),
            (0.78, -0.44),
            (0.78, -roof),
            (0.0, -roof),
        ]
        window = [(0.82, -0.27), (0.96, -0.27), (0.96, -0.38), (0.82, -0.4)]
        wheels = (0.13, 0.3, 0.86)

    def tr(pts):
        a = np.asarray(pts, np.float32) * L
        a[:, 0] = x + (a[:, 0] if facing > 0 else L - a[:, 0])
        a[:, 1] += ground - r * 0.3
        return np.round(a).astype(np.int32)

    body_px = tr(body)
    cv2.fillPoly(img, [body_px], body_c, _AA)
    if kind == "truck":  # the cargo box in its own colour, with a seam to the cab
        cv2.fillPoly(
            img,
            [tr([(0.0, -0.12), (0.75, -0.12), (0.75, -roof), (0.0, -roof)])],
            shade(hsv_color(rng, (0.0, 0.4), (0.6, 1.0)), light),
            _AA,
        )
    cv2.fillPoly(img, [tr(window)], glass, _AA)
    cv2.polylines(img, [tr([(0.02, -0.1), (0.98, -0.1)])], False, shade(body_c, 0.6), max(1, int(L * 0.01)), _AA)
    lamp = (200, 240, 255) if headlights else shade((180, 220, 235), light)
    cv2.fillPoly(img, [tr([(0.97, -0.16), (1.0, -0.16), (1.0, -0.12), (0.97, -0.12)])], lamp, _AA)
    cv2.fillPoly(img, [tr([(0.0, -0.16), (0.025, -0.16), (0.025, -0.12), (0.0, -0.12)])], (30, 30, 200), _AA)
    for wx in wheels:
        c = tr([(wx, 0.0)])[0]
        c[1] = int(ground - r)
        cv2.circle(img, (int(c[0]), int(c[1])), max(1, int(r)), dark, -1, _AA)
        cv2.circle(img, (int(c[0]), int(c[1])), max(1, int(r * 0.5)), shade((150, 150, 150), light), -1, _AA)
    return (
        float(body_px[:, 0].min() - 2),
        float(body_px[:, 1].min() - 2),
        float(body_px[:, 0].max() + 2),
        float(ground + 2),
    )


def street_background(
    rng: np.random.Generator, size: Size, night: bool | None = None
) -> tuple[np.ndarray, StreetLayout]:
    """Facades with windows and doors, a pavement, a kerb and a road, with day or night lighting."""
    w, h = size
    night = bool(rng.random() < 0.3) if night is None else night
    base = int(h * rng.uniform(0.3, 0.5))
    kerb = int(base + (h - base) * rng.uniform(0.3, 0.5))
    img = vertical_gradient(size, hsv_color(rng, (0.2, 0.6), (0.8, 1.0), hue=rng.uniform(95, 115)), (235, 225, 215))
    x = int(-rng.uniform(0, 0.2) * w)
    lit = []
    while x < w:
        fw, top = int(w * rng.uniform(0.25, 0.6)), int(h * rng.uniform(-0.1, 0.2))
        wall = hsv_color(rng, (0.05, 0.5), (0.35, 0.9), hue=rng.uniform(0, 30) if rng.random() < 0.6 else None)
        cv2.rectangle(img, (x, top), (x + fw, base), wall, -1)
        ww, wh = max(3, int(fw * rng.uniform(0.08, 0.15))), max(3, int((base - top) * rng.uniform(0.1, 0.18)))
        glass = hsv_color(rng, (0.1, 0.4), (0.15, 0.45), hue=rng.uniform(90, 120))
        for wy in range(top + wh // 2, base - 2 * wh, int(wh * 1.8)):
            for wx in range(x + ww // 2, x + fw - ww, int(ww * 1.9)):
                cv2.rectangle(img, (wx, wy), (wx + ww, wy + wh), glass, -1)
                cv2.rectangle(img, (wx, wy), (wx + ww, wy + wh), shade(wall, 0.7), max(1, ww // 10))
                if night and rng.random() < 0.35:
                    lit.append((wx, wy, ww, wh))
        dw, dh = max(4, int(fw * rng.uniform(0.12, 0.25))), int((base - top) * rng.uniform(0.2, 0.3))
        dx = x + int(rng.uniform(0.1, 0.8) * fw)
        cv2.rectangle(img, (dx, base - dh), (dx + dw, base), hsv_color(rng, (0.0, 0.8), (0.1, 0.5)), -1)
        cv2.rectangle(img, (dx, base - dh), (dx + dw, base), shade(wall, 0.5), max(1, dw // 12))
        x += fw
    pave = hsv_color(rng, (0.0, 0.12), (0.55, 0.8))
    img[base:kerb] = pave
    for y in np.linspace(base, kerb, int(rng.integers(3, 7))).astype(int):
        img[y] = shade(pave, 0.85)
    img[kerb : kerb + max(2, h // 80)] = shade(pave, 1.2)
    road = hsv_color(rng, (0.0, 0.1), (0.2, 0.4))
    img[kerb + max(2, h // 80) :] = road
    ly = int(kerb + (h - kerb) * rng.uniform(0.4, 0.7))
    dash = max(8, w // 12)
    for dx in range(int(-rng.uniform(0, dash)), w, 2 * dash):
        cv2.rectangle(img, (dx, ly), (dx + dash, ly + max(1, h // 120)), (225, 225, 225), -1)
    layout = StreetLayout(size, base, kerb, night, rng.uniform(0.45, 0.65) if night else rng.uniform(0.8, 1.1))
    for _ in range(int(rng.integers(0, 4))):
        _clutter(img, layout, rng)
    if night:
        img = (img * np.float32(rng.uniform(0.22, 0.35))).astype(np.uint8)
        for wx, wy, ww, wh in lit:
            cv2.rectangle(img, (wx, wy), (wx + ww, wy + wh), (90, 200, 245), -1)
    return img, layout


def _clutter(img: np.ndarray, lay: StreetLayout, rng: np.random.Generator) -> None:
    """Street furniture that is neither a person nor a vehicle: lamp posts, bins, bollards, trees."""
    w, _ = lay.size
    y = rng.uniform(lay.base + 2, lay.kerb)
    u, x = lay.person_height(y), rng.uniform(0, w)
    kind = int(rng.integers(4))
    if kind == 0:
        t = max(1, int(u * 0.05))
        cv2.line(img, (int(x), int(y)), (int(x), int(y - 1.8 * u)), (45, 50, 55), t, _AA)
        cv2.ellipse(
            img,
            (int(x + 0.1 * u), int(y - 1.8 * u)),
            (int(0.15 * u), int(0.04 * u) + 1),
            0,
            0,
            360,
            (60, 60, 60),
            -1,
            _AA,
        )
    elif kind == 1:
        cv2.rectangle(img, (int(x), int(y - 0.4 * u)), (int(x + 0.25 * u), int(y)), hsv_color(rng, v=(0.2, 0.6)), -1)
    elif kind == 2:
        for i in range(int(rng.integers(2, 5))):
            bx = int(x + i * 0.3 * u)
            cv2.rectangle(img, (bx, int(y - 0.3 * u)), (bx + max(2, int(0.06 * u)), int(y)), (70, 70, 75), -1)
    else:
        cv2.line(img, (int(x), int(y)), (int(x), int(y - 1.2 * u)), (40, 60, 80), max(1, int(0.08 * u)), _AA)
        cv2.ellipse(
            img,
            (int(x), int(y - 1.4 * u)),
            (int(0.45 * u), int(0.4 * u)),
            0,
            0,
            360,
            hsv_color(rng, (0.4, 0.8), (0.2, 0.5), hue=rng.uniform(40, 80)),
            -1,
            _AA,
        )


def _populate(
    img: np.ndarray, lay: StreetLayout, rng: np.random.Generator, n_people: int, n_vehicles: int, big: str | None
) -> list[Box]:
    """Place people on the pavement/road and vehicles on the road, far to near; ``big`` forces one large."""
    w, h = lay.size
    items = []
    for i in range(n_people):
        lo = lay.base + (0.55 if big == "person" and i == 0 else 0.02) * (h - lay.base)
        items.append((rng.uniform(lo, h * 0.98), "person", big == "person" and i == 0))
    for i in range(n_vehicles):
        lo = lay.kerb + (0.5 if big == "vehicle" and i == 0 else 0.15) * (h - lay.kerb)
        items.append((rng.uniform(lo, h * 0.99), "vehicle", False))
    boxes = []
    for y, cls, main in sorted(items):
        u = lay.person_height(y) * rng.uniform(0.85, 1.1)
        if cls == "person":
            x = rng.uniform(0.12, 0.88) if main else rng.uniform(0.02, 0.98)  # the main one fully in view
            xyxy = draw_person(img, (x * w, y), u, rng, light=lay.light)
        else:
            length = min(u * rng.uniform(1.9, 2.6), 0.95 * w)
            xyxy = draw_vehicle(
                img,
                rng.uniform(min(-0.2 * length, w - 0.8 * length), max(-0.2 * length, w - 0.8 * length)),
                y,
                length,
                rng,
                facing=1 if rng.random() < 0.5 else -1,
                light=lay.light,
                headlights=lay.night,
            )
        x0, y0, x1, y1 = np.clip(xyxy, 0, [w, h, w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            boxes.append(Box((float(x0), float(y0), float(x1), float(y1)), cls))
    return boxes


def _tamper(rng: np.random.Generator, size: Size, mode: str) -> np.ndarray:
    """A covered lens (blob over >= 70 %), a defocused view or a camera turned to sky/ceiling/wall."""
    w, h = size
    if mode == "redirected":
        top = hsv_color(rng, (0.0, 0.6), (0.3, 1.0), hue=rng.uniform(90, 120) if rng.random() < 0.5 else None)
        img = vertical_gradient(size, top, shade(top, rng.uniform(0.7, 1.3)))
        glow = blob_mask(rng, w, h, rough=0.6).astype(np.float32) / 255
        glow = big_blur(glow, w * 0.15)[..., None]
        return np.clip(img * (1 + rng.uniform(-0.15, 0.15) * glow), 0, 255).astype(np.uint8)
    img, lay = street_background(rng, size)
    _populate(img, lay, rng, int(rng.integers(0, 3)), int(rng.integers(0, 2)), None)
    if mode == "defocused":
        return big_blur(img, w * rng.uniform(0.06, 0.12))
    color = skin_color(rng) if rng.random() < 0.5 else hsv_color(rng, (0.0, 0.5), (0.03, 0.25))
    for _ in range(20):
        bw, bh = int(w * rng.uniform(1.1, 1.7)), int(h * rng.uniform(1.1, 1.7))
        blob = blob_mask(rng, bw, bh, rough=0.3)
        ox, oy = (
            int(rng.uniform(-0.5, 0.5) * (bw - w)) - (bw - w) // 2,
            int(rng.uniform(-0.5, 0.5) * (bh - h)) - (bh - h) // 2,
        )
        mask = np.zeros((h, w), np.uint8)
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + bw, w), min(oy + bh, h)
        mask[y0:y1, x0:x1] = blob[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        if mask.mean() >= 0.75 * 255:
            break
    else:  # no lucky blob: cover the whole lens
        mask[:] = 255
    a = big_blur(mask.astype(np.float32) / 255, w * 0.03)[..., None]
    layer = vertical_gradient(size, shade(color, 1.1), shade(color, 0.6)).astype(np.float32)
    return (img * (1 - a) + layer * a).astype(np.uint8)


def render_street(rng: np.random.Generator, size: Size = (320, 240), content: str | None = None) -> StreetScene:
    """Render one security frame whose ``label`` is ``content`` (one of ``SECURITY_CLASSES``, random if None)."""
    if content is None:
        content = SECURITY_CLASSES[int(rng.integers(len(SECURITY_CLASSES)))]
    if content not in SECURITY_CLASSES:
        raise ValueError(f"content must be one of {SECURITY_CLASSES}, got {content!r}")
    w, h = size
    ss = 2 if max(size) <= 480 else 1
    big = (w * ss, h * ss)
    tamper, boxes, night = None, [], False
    if content == "tampered":
        tamper = TAMPER_MODES[int(rng.integers(len(TAMPER_MODES)))]
        img = _tamper(rng, big, tamper)
    else:
        img, lay = street_background(rng, big)
        night = lay.night
        n_people = {"clear": 0, "person": int(rng.integers(1, 4)), "vehicle": int(rng.integers(0, 3))}[content]
        n_veh = int(rng.integers(1, 3)) if content == "vehicle" else 0
        boxes = _populate(img, lay, rng, n_people, n_veh, content if content != "clear" else None)
    if ss > 1:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        boxes = [Box(tuple(v / ss for v in b.xyxy), b.cls) for b in boxes]
    img = camera_effects(img, rng, blur=(0.0, 0.8), noise=(2.0, 9.0) if night else (1.5, 6.0))
    return StreetScene(img, boxes, content, tamper, night)
