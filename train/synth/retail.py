"""Retail shelf scenes: shelf rows split into slots, each ``stocked``, ``low`` or ``empty``.

A scene is built in three steps so the video writer can reuse them: ``make_layout`` fixes the geometry
and SKUs, ``draw_layout`` paints one set of slot states, ``render_shelf`` adds occluders, lighting,
perspective and camera effects and returns labelled slots and boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .draw import (
    Box,
    Size,
    apply_lighting,
    blob_mask,
    camera_effects,
    horizontal_shading,
    hsv_color,
    random_perspective,
    shade,
    skin_color,
    text_lines,
    warp_image,
    warp_xyxy,
)

RETAIL_CLASSES = ("stocked", "low", "empty")
N_SKUS = 16
SKU_NAMES = tuple(f"sku_{i}" for i in range(N_SKUS))
GAP_CLASS = "gap"
DEFAULT_STATE_PROBS = (0.5, 0.25, 0.25)
_SHAPES = ("box", "bottle", "can", "jar")
_CATALOGUE_SEED = 20240611  # fixed: a SKU must look the same in every scene for detection to be learnable


@dataclass(frozen=True)
class Slot:
    """One shelf slot: ``xywh`` in final image pixels (products area plus the shelf edge below it)."""

    xywh: tuple[int, int, int, int]
    state: str
    sku: int
    row: int
    col: int


@dataclass
class ShelfScene:
    """A rendered shelf: BGR image, labelled slots, one box per product facing and one per empty slot."""

    image: np.ndarray
    slots: list[Slot]
    products: list[Box]
    gaps: list[Box] = field(default_factory=list)

    @property
    def boxes(self) -> list[Box]:
        return self.products + self.gaps


@dataclass(frozen=True)
class _Sku:
    shape: str
    color: tuple[int, int, int]
    accent: tuple[int, int, int]
    label: tuple[int, int, int]
    aspect: float  # width / height of one facing
    height: float  # fraction of the slot's free height


@lru_cache(maxsize=1)
def sku_catalogue() -> tuple[_Sku, ...]:
    """The fixed product catalogue (``sku_0`` .. ``sku_15``), identical for every seed."""
    rng = np.random.default_rng(_CATALOGUE_SEED)
    ranges = {
        "box": ((0.45, 0.8), (0.68, 0.92)),
        "bottle": ((0.28, 0.38), (0.8, 0.95)),
        "can": ((0.5, 0.62), (0.42, 0.48)),
        "jar": ((0.65, 0.85), (0.4, 0.48)),
    }
    out = []
    for i in range(N_SKUS):
        shape = _SHAPES[i % len(_SHAPES)]
        (a0, a1), (h0, h1) = ranges[shape]
        colors = [
            hsv_color(rng, sat, val)
            for sat, val in (((0.5, 1), (0.35, 0.95)), ((0.3, 1), (0.5, 1)), ((0, 0.4), (0.75, 1)))
        ]
        out.append(_Sku(shape, *colors, rng.uniform(a0, a1), rng.uniform(h0, h1)))
    return tuple(out)


@lru_cache(maxsize=1024)
def product_sprite(sku: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """BGR sprite and 0/1 float mask of one facing of ``sku`` at (w, h); cached, treat as read-only."""
    s = sku_catalogue()[sku]
    rng = np.random.default_rng(sku * 7919 + w * 31 + h)
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    img[:] = s.color
    if s.shape == "box":
        mask[:] = 1
        cv2.rectangle(img, (0, 0), (w - 1, max(1, h // 14)), shade(s.color, 1.3), -1)
        cv2.rectangle(img, (0, int(h * 0.55)), (w - 1, int(h * 0.72)), s.accent, -1)
        cv2.circle(img, (w // 2, int(h * 0.33)), max(1, int(w * 0.22)), s.label, -1)
        text_lines(img, int(w * 0.15), int(h * 0.78), int(w * 0.85), int(h * 0.92), shade(s.color, 0.4), rng)
        img[:, : max(1, w // 8)] = (img[:, : max(1, w // 8)] * 0.7).astype(np.uint8)
    elif s.shape == "bottle":
        neck, cap = int(w * 0.18), int(h * 0.08)
        rel = [(0.32, 0.08), (0.68, 0.08), (0.68, 0.2), (1, 0.3), (1, 1), (0, 1), (0, 0.3), (0.32, 0.2)]
        body = np.round(np.array(rel) * (w - 1, h - 1)).astype(np.int32)
        cv2.fillPoly(mask, [body], 1)
        cv2.rectangle(mask, (w // 2 - neck, 0), (w // 2 + neck, cap), 1, -1)
        cv2.rectangle(img, (0, 0), (w - 1, cap), s.accent, -1)
        cv2.rectangle(img, (0, int(h * 0.5)), (w - 1, int(h * 0.82)), s.label, -1)
        text_lines(img, int(w * 0.2), int(h * 0.55), int(w * 0.8), int(h * 0.77), s.accent, rng, n=3)
    elif s.shape == "can":
        mask[:] = 1
        rim = max(2, int(h * 0.1))
        cv2.rectangle(img, (0, 0), (w - 1, rim), (190, 190, 195), -1)
        cv2.rectangle(img, (0, int(h * 0.35)), (w - 1, int(h * 0.6)), s.accent, -1)
        cv2.circle(img, (w // 2, int(h * 0.47)), max(1, int(w * 0.18)), s.label, -1)
    else:  # jar
        lid = max(2, int(h * 0.18))
        cv2.rectangle(mask, (0, lid // 2), (w - 1, h - 1), 1, -1)
        cv2.rectangle(mask, (int(w * 0.1), 0), (int(w * 0.9), lid), 1, -1)
        cv2.rectangle(img, (0, 0), (w - 1, lid), s.accent, -1)
        cv2.rectangle(img, (0, int(h * 0.4)), (w - 1, int(h * 0.8)), s.label, -1)
        text_lines(img, int(w * 0.15), int(h * 0.47), int(w * 0.85), int(h * 0.73), s.color, rng)
    if s.shape != "box":
        img = np.clip(img * horizontal_shading(w, h), 0, 255).astype(np.uint8)
    return img, mask.astype(np.float32)


@dataclass(frozen=True)
class SlotGeom:
    """Pre-warp geometry of one slot and the facing size of its SKU."""

    x0: int
    y0: int  # top of the free space
    x1: int
    floor: int  # where products stand
    y1: int  # bottom of the shelf edge
    row: int
    col: int
    sku: int
    n_full: int  # facings side by side when fully stocked
    fw: int
    fh: int
    stack: int  # levels of stacked products when stocked


@dataclass(frozen=True)
class ShelfLayout:
    """Geometry and style of one shelf; ``draw_layout`` renders it for any combination of slot states."""

    size: Size
    slots: tuple[SlotGeom, ...]
    rows: tuple[tuple[int, int, int, int], ...]  # (y0, floor, edge_top, y1) per row
    wall: tuple[int, int, int]
    board: tuple[int, int, int]
    tag: tuple[int, int, int]
    pegboard: bool
    top: int
    bottom: int


def make_layout(
    rng: np.random.Generator, size: Size = (640, 480), n_rows: int | None = None, slots_per_row: int | None = None
) -> ShelfLayout:
    """Random shelf geometry: rows, slots, the SKU of each slot and how its facings tile the slot."""
    w, h = size
    n_rows = int(rng.integers(3, 6)) if n_rows is None else n_rows
    top, bottom = int(h * rng.uniform(0, 0.08)), int(h * rng.uniform(0, 0.06))
    row_h = (h - top - bottom) / n_rows
    per_row = int(rng.integers(4, 9)) if slots_per_row is None else slots_per_row
    cat = sku_catalogue()
    rows, slots = [], []
    for r in range(n_rows):
        y0, y1 = int(top + r * row_h), int(top + (r + 1) * row_h)
        edge_top = y1 - max(3, int(row_h * rng.uniform(0.09, 0.14)))
        floor = edge_top - max(1, int(row_h * 0.03))
        rows.append((y0, floor, edge_top, y1))
        n = max(1, per_row + (int(rng.integers(-1, 2)) if slots_per_row is None else 0))
        edges = np.cumsum(np.r_[0, rng.uniform(0.85, 1.15, n)])
        xs = np.round(edges / edges[-1] * w).astype(int)
        free = floor - y0
        for c in range(n):
            sw, k = xs[c + 1] - xs[c], int(rng.integers(N_SKUS))
            fh = free * cat[k].height * rng.uniform(0.92, 1.0)
            n_full = int(np.clip(round(sw * 0.9 / (cat[k].aspect * fh)), 3, 9))
            fw = sw * rng.uniform(0.86, 0.95) / n_full
            fh = min(fh, 1.8 * fw / cat[k].aspect, free * 0.95)
            stack = 2 if cat[k].height < 0.5 and rng.random() < 0.6 else 1
            slots.append(
                SlotGeom(
                    int(xs[c]), y0, int(xs[c + 1]), floor, y1, r, c, k, n_full, max(2, int(fw)), max(3, int(fh)), stack
                )
            )
    return ShelfLayout(
        size,
        tuple(slots),
        tuple(rows),
        hsv_color(rng, (0.0, 0.35), (0.45, 0.95)),
        hsv_color(rng, (0.0, 0.7), (0.15, 0.95)),
        (255, 255, 255) if rng.random() < 0.6 else hsv_color(rng, (0.4, 0.8), (0.9, 1.0), hue=rng.uniform(15, 35)),
        bool(rng.random() < 0.5),
        top,
        bottom,
    )


def facing_plan(g: SlotGeom, state: str, rng: np.random.Generator) -> list[tuple[int, int, int, int, float]]:
    """Facings (x, y, w, h, gain) of slot ``g`` in ``state``; stocked fills >= ~75 %, low <= 40 %."""
    if state == "empty":
        return []
    slot_w = g.x1 - g.x0
    left = g.x0 + (slot_w - g.n_full * g.fw) // 2
    cols = list(range(g.n_full))
    levels, scale, gain = g.stack, 1.0, 1.0
    if state == "stocked" and g.n_full >= 6 and rng.random() < 0.3:
        cols.pop(int(rng.integers(1, g.n_full - 1)))
    elif state == "low":
        k = 1 if g.n_full <= 4 else 2 if g.n_full >= 7 else int(rng.integers(1, 3))  # 11-40 % of the width
        cols = sorted(rng.choice(g.n_full, size=k, replace=False).tolist())
        levels = 1
        if rng.random() < 0.4:  # pushed to the back of the shelf: a little smaller and darker
            scale, gain = 0.9, 0.8
    fw, fh = max(2, int(g.fw * scale)), max(3, int(g.fh * scale))
    floor = g.floor - (int(0.03 * (g.floor - g.y0)) if scale < 1 else 0)
    out = []
    for c in cols:
        x = int(np.clip(left + c * g.fw + rng.integers(-1, 2) * max(1, g.fw // 25), g.x0, g.x1 - fw))
        for lv in range(levels):
            out.append((x, floor - (lv + 1) * fh, fw, fh, gain * rng.uniform(0.9, 1.05)))
    return out


def draw_layout(
    layout: ShelfLayout, states: Sequence[str], rng: np.random.Generator, plans: Sequence[list] | None = None
) -> tuple[np.ndarray, list[Box]]:
    """Paint the shelf with one state per slot; returns the clean image and pre-warp product boxes."""
    w, h = layout.size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = layout.wall
    if layout.pegboard:
        step = max(6, h // 40)
        img[step // 2 :: step, step // 2 :: step] = shade(layout.wall, 0.45)
    img[: layout.top] = shade(layout.board, 0.5)
    img[h - layout.bottom :] = (90, 95, 100)
    boxes = []
    for i, g in enumerate(layout.slots):
        plan = plans[i] if plans is not None else facing_plan(g, states[i], rng)
        for x, y, fw, fh, gain in plan:
            sprite, mask = product_sprite(g.sku, fw, fh)
            roi = img[y : y + fh, x : x + fw]
            a = mask[..., None]
            roi[:] = np.clip(roi * (1 - a) + sprite * (a * gain), 0, 255).astype(np.uint8)
            boxes.append(Box((x, y, x + fw, y + fh), SKU_NAMES[g.sku]))
    for y0, floor, edge_top, y1 in layout.rows:
        depth = floor - y0
        shadow = np.clip(0.55 + 0.45 * np.arange(depth, dtype=np.float32) / (0.35 * depth), 0.55, 1.0)
        img[y0:floor] = (img[y0:floor] * shadow[:, None, None]).astype(np.uint8)
        img[floor:edge_top] = shade(layout.board, 1.25)
        img[edge_top:y1] = layout.board
        img[y1 - max(1, (y1 - edge_top) // 6) : y1] = shade(layout.board, 0.6)
    for g in layout.slots:
        eh = layout.rows[g.row][3] - layout.rows[g.row][2]
        tw, th = min(int((g.x1 - g.x0) * 0.35), int(eh * 2.6)), max(3, int(eh * 0.75))
        tx, ty = g.x0 + int((g.x1 - g.x0) * 0.08), layout.rows[g.row][2] + (eh - th) // 2
        cv2.rectangle(img, (tx, ty), (tx + tw, ty + th), layout.tag, -1)
        text_lines(img, tx + 2, ty + 1, tx + tw - 2, ty + th - 1, (30, 30, 30), rng)
    return img, boxes


def _occluder(img: np.ndarray, layout: ShelfLayout, products: list[Box], rng: np.random.Generator) -> None:
    """Draw an arm, a body or a trolley edge covering <= 35 % of any slot and <= 30 % of any facing."""
    w, h = layout.size
    mask = np.zeros((h, w), np.uint8)
    kind = ("arm", "body", "trolley")[int(rng.integers(3))]
    g = layout.slots[int(rng.integers(len(layout.slots)))]
    sw, sh = g.x1 - g.x0, g.y1 - g.y0
    if kind == "trolley":
        y = int(rng.uniform(g.y0 + 0.55 * sh, g.y1))
        x0, x1 = int(g.x0 - rng.uniform(0, 1.5) * sw), int(g.x1 + rng.uniform(0, 1.5) * sw)
        color = shade((170, 170, 175), rng.uniform(0.25, 1.2))  # chrome or black plastic, never product-like
        cv2.line(mask, (x0, y), (x1, y), 255, max(2, sh // 14))
        for x in range(x0, x1, max(4, sw // 6)):
            cv2.line(mask, (x, y), (x, y + sh), 255, max(1, sh // 40))
    else:
        bw, bh = int(sw * rng.uniform(0.3, 0.6)), int(sh * rng.uniform(0.5, 0.9))
        if kind == "arm":
            bw, bh = (bh, bw) if rng.random() < 0.5 else (bw, bh)
        blob = blob_mask(rng, max(bw, 4), max(bh, 4))
        bx, by = int(rng.uniform(g.x0 - bw / 2, g.x1 - bw / 2)), int(rng.uniform(g.y0 - bh / 3, g.y1 - bh / 2))
        x0, y0 = max(bx, 0), max(by, 0)
        x1, y1 = min(bx + blob.shape[1], w), min(by + blob.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            return
        mask[y0:y1, x0:x1] = blob[y0 - by : y1 - by, x0 - bx : x1 - bx]
        color = skin_color(rng) if kind == "arm" else hsv_color(rng, (0.2, 0.9), (0.15, 0.8))
    for s in layout.slots:
        if mask[s.y0 : s.y1, s.x0 : s.x1].mean() > 0.35 * 255:
            return
    for b in products:  # a low slot's only facing must stay visible, or its label would lie
        x0, y0, x1, y1 = (int(v) for v in b.xyxy)
        if mask[y0:y1, x0:x1].mean() > 0.3 * 255:
            return
    img[mask > 0] = color


def _states(rng: np.random.Generator, n: int, probs: Sequence[float] | Mapping[str, float] | None) -> list[str]:
    if probs is None:
        probs = DEFAULT_STATE_PROBS
    if isinstance(probs, Mapping):
        probs = [float(probs.get(c, 0.0)) for c in RETAIL_CLASSES]
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (3,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"state_probs needs 3 non-negative weights for {RETAIL_CLASSES}, got {probs}")
    return [RETAIL_CLASSES[i] for i in rng.choice(3, size=n, p=p / p.sum())]


def render_shelf(
    rng: np.random.Generator,
    size: Size = (640, 480),
    n_rows: int | None = None,
    slots_per_row: int | None = None,
    state_probs: Sequence[float] | Mapping[str, float] | None = None,
    *,
    warp: bool = True,
    occluder_p: float = 0.35,
) -> ShelfScene:
    """Render one shelf photo; slot states are drawn from ``state_probs`` (stocked, low, empty)."""
    layout = make_layout(rng, size, n_rows, slots_per_row)
    states = _states(rng, len(layout.slots), state_probs)
    img, products = draw_layout(layout, states, rng)
    if rng.random() < occluder_p:
        _occluder(img, layout, products, rng)
    img = apply_lighting(img, rng)
    m = random_perspective(rng, size, rng.uniform(0.01, 0.045)) if warp and rng.random() < 0.85 else None
    if m is not None:
        img = warp_image(img, m)
    img = camera_effects(img, rng)
    slot_xyxy = warp_xyxy([(g.x0, g.y0, g.x1, g.y1) for g in layout.slots], m, size)
    gap_xyxy = warp_xyxy([(g.x0, g.y0, g.x1, g.floor) for g in layout.slots], m, size)
    prod_xyxy = warp_xyxy([b.xyxy for b in products], m, size)
    slots, gaps = [], []
    for g, st, (x0, y0, x1, y1), gap in zip(layout.slots, states, slot_xyxy, gap_xyxy, strict=True):
        xi, yi = int(np.floor(x0)), int(np.floor(y0))
        slots.append(Slot((xi, yi, int(np.ceil(x1)) - xi, int(np.ceil(y1)) - yi), st, g.sku, g.row, g.col))
        if st == "empty":
            gaps.append(Box(tuple(float(v) for v in gap), GAP_CLASS))
    boxes = [Box(tuple(float(v) for v in xy), b.cls) for xy, b in zip(prod_xyxy, products, strict=True)]
    return ShelfScene(img, slots, boxes, gaps)
