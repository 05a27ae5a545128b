"""Drawing primitives shared by the scenes: colours, lighting, camera effects, warps, sprites, people.

Everything here is a pure numpy/OpenCV function driven by an explicit ``np.random.Generator`` so that a
seed reproduces every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Size = tuple[int, int]  # (width, height), the OpenCV convention
_AA = cv2.LINE_AA


@dataclass(frozen=True)
class Box:
    """One labelled object: ``xyxy`` in pixels of the final image, ``cls`` a class name."""

    xyxy: tuple[float, ...]
    cls: str

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]


def hsv_color(
    rng: np.random.Generator,
    s: tuple[float, float] = (0.4, 1.0),
    v: tuple[float, float] = (0.3, 1.0),
    hue: float | None = None,
) -> tuple[int, int, int]:
    """A random BGR colour with saturation/value drawn from the given ranges (both in 0..1)."""
    h = rng.uniform(0, 180) if hue is None else hue
    hsv = np.uint8([[[h, rng.uniform(*s) * 255, rng.uniform(*v) * 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def shade(color: tuple[int, ...], k: float) -> tuple[int, int, int]:
    """``color`` scaled by ``k`` and clipped: a cheap darker/lighter variant of a colour."""
    return tuple(min(255, max(0, int(c * k))) for c in color[:3])


def skin_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A plausible skin tone (BGR), from a fixed palette with small jitter."""
    base = [(175, 200, 240), (140, 175, 225), (100, 140, 195), (70, 100, 150), (45, 65, 100)]
    b = base[int(rng.integers(len(base)))]
    return shade(b, rng.uniform(0.9, 1.1))


def vertical_gradient(size: Size, top: tuple[int, ...], bottom: tuple[int, ...]) -> np.ndarray:
    """A (H, W, 3) uint8 image blending ``top`` into ``bottom`` row by row."""
    w, h = size
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    col = (1 - t) * np.float32(top) + t * np.float32(bottom)
    return np.repeat(col[:, None, :], w, axis=1).astype(np.uint8)


def horizontal_shading(w: int, h: int, lo: float = 0.6, hi: float = 1.15, peak: float = 0.35) -> np.ndarray:
    """(H, W, 1) gain map of a lit cylinder: bright band at ``peak`` of the width, darker edges."""
    x = np.linspace(0.0, 1.0, max(w, 1), dtype=np.float32)
    g = lo + (hi - lo) * np.clip(1.0 - ((x - peak) / 0.75) ** 2, 0.0, 1.0)
    return np.broadcast_to(g[None, :, None], (h, w, 1))


def apply_lighting(
    img: np.ndarray,
    rng: np.random.Generator,
    gain: tuple[float, float] = (0.65, 1.25),
    slope: float = 0.35,
    tint: float = 0.08,
) -> np.ndarray:
    """Global brightness, a linear light gradient in a random direction and a colour-temperature tint."""
    h, w = img.shape[:2]
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * rng.uniform(0, slope) * 2
    g = (rng.uniform(*gain) * (1.0 + ramp))[..., None]
    t = np.float32(1.0 + rng.uniform(-tint, tint, 3))
    return np.clip(img.astype(np.float32) * g * t, 0, 255).astype(np.uint8)


def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian sensor noise with standard deviation ``sigma`` (grey levels)."""
    if sigma <= 0:
        return img
    n = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; ``sigma`` <= 0.3 is a no-op so light settings cost nothing."""
    return img if sigma <= 0.3 else cv2.GaussianBlur(img, (0, 0), sigma)


def big_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma done on a shrunken copy: the same look at a fraction of the cost."""
    f = max(1, int(sigma // 3))
    if f == 1:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg_soften(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG to get the blocky softness of a compressed camera stream."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def camera_effects(
    img: np.ndarray,
    rng: np.random.Generator,
    blur: tuple[float, float] = (0.0, 1.2),
    noise: tuple[float, float] = (1.5, 7.0),
    jpeg_p: float = 0.5,
) -> np.ndarray:
    """Lens blur, sensor noise and sometimes JPEG compression, in the order a camera applies them."""
    img = gaussian_blur(img, rng.uniform(*blur))
    img = add_noise(img, rng, rng.uniform(*noise))
    if rng.random() < jpeg_p:
        img = jpeg_soften(img, int(rng.integers(35, 90)))
    return img


def random_perspective(rng: np.random.Generator, size: Size, strength: float = 0.04) -> np.ndarray:
    """A 3x3 homography moving each image corner by up to ``strength`` of the image size."""
    w, h = size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jit = rng.uniform(-strength, strength, (4, 2)) * np.float32([w, h])
    return cv2.getPerspectiveTransform(src, (src + jit).astype(np.float32))


def warp_image(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply homography ``m``; border pixels are replicated so no black wedges appear."""
    h, w = img.shape[:2]
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_xyxy(xyxy: np.ndarray, m: np.ndarray | None, size: Size) -> np.ndarray:
    """Warp (N, 4) boxes by homography ``m`` and return the clipped bounding rectangles of their corners.

    The bounding rectangle of the four warped corners encloses the warped object because a homography
    maps the box (a convex set containing the object) to the convex hull of the warped corners.
    """
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    if m is not None and len(xyxy):
        x0, y0, x1, y1 = xyxy.T
        pts = np.stack(
            [np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1
        ).reshape(-1, 1, 2)
        pts = cv2.perspectiveTransform(pts, m).reshape(-1, 4, 2)
        xyxy = np.concatenate([pts.min(1), pts.max(1)], 1)
    w, h = size
    return np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)


def paste(dst: np.ndarray, sprite: np.ndarray, mask: np.ndarray, x: int, y: int, gain: float = 1.0) -> None:
    """Alpha-paste ``sprite`` (h, w, 3) with ``mask`` (h, w) in 0..1 at top-left (x, y), clipped to ``dst``."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    s = sprite[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32) * gain
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x, None]
    roi = dst[y0:y1, x0:x1]
    roi[:] = np.clip(roi * (1 - a) + s * a, 0, 255).astype(np.uint8)


def blob_mask(rng: np.random.Generator, w: int, h: int, n: int = 9, rough: float = 0.25) -> np.ndarray:
    """A filled irregular blob (uint8 0/255) roughly inscribed in a (w, h) box: an arm, a hand, a body."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = 1.0 - rng.uniform(0, rough, n)
    pts = np.stack([w / 2 + np.cos(ang) * r * w / 2, h / 2 + np.sin(ang) * r * h / 2], 1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    return mask


def text_lines(
    img: np.ndarray,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    color: tuple[int, ...],
    rng: np.random.Generator,
    n: int = 2,
) -> None:
    """Short dark bars standing in for printed text between (x0, y0) and (x1, y1)."""
    if x1 - x0 < 4 or y1 - y0 < 2:
        return
    step = (y1 - y0) / n
    for i in range(n):
        ya = int(y0 + i * step + step * 0.2)
        yb = max(ya + 1, int(y0 + (i + 1) * step - step * 0.2))
        xb = int(x0 + (x1 - x0) * rng.uniform(0.5, 1.0))
        cv2.rectangle(img, (x0, ya), (xb, yb), color, -1)


def _extent(pts: list[tuple[float, float, float]]) -> tuple[float, float, float, float]:
    """Bounding box of points each padded by its radius (a line's half thickness or a circle's radius)."""
    a = np.asarray(pts, np.float32)
    return (
        float((a[:, 0] - a[:, 2]).min() - 1),
        float((a[:, 1] - a[:, 2]).min() - 1),
        float((a[:, 0] + a[:, 2]).max() + 1),
        float((a[:, 1] + a[:, 2]).max() + 1),
    )


def draw_person(
    img: np.ndarray,
    foot: tuple[float, float],
    height: float,
    rng: np.random.Generator,
    phase: float | None = None,
    light: float = 1.0,
) -> tuple[float, float, float, float]:
    """Draw an articulated person with feet at ``foot``; returns the xyxy box enclosing every stroke."""
    fx, fy = foot
    u = height
    side = rng.random() < 0.6  # walking sideways, else facing the camera
    phase = rng.uniform(0, 2 * np.pi) if phase is None else phase
    swing = 0.45 * np.sin(phase) if side else 0.08 * np.sin(phase)
    shirt, legs_c = (
        shade(hsv_color(rng, (0.0, 0.9), (0.15, 0.95)), light),
        shade(hsv_color(rng, (0.0, 0.6), (0.1, 0.6)), light),
    )
    skin, hair = shade(skin_color(rng), light), shade(hsv_color(rng, (0.2, 0.7), (0.05, 0.4)), light)
    half = (0.08 if side else 0.11) * u
    hip_y, sh_y, knee = fy - 0.5 * u, fy - 0.81 * u, 0.24 * u
    leg_t, arm_t, head_r = max(1, int(0.075 * u)), max(1, int(0.055 * u)), max(1.0, 0.065 * u)
    strokes: list[tuple[float, float, float]] = []

    def line(p, q, color, t):
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, t, _AA)
        strokes.extend([(p[0], p[1], t / 2 + 1), (q[0], q[1], t / 2 + 1)])

    for sgn, lx in ((1, fx - half * 0.5), (-1, fx + half * 0.5)):
        hip = (lx, hip_y)
        kn = (lx + sgn * np.sin(swing) * knee * 1.1, hip_y + np.cos(swing) * knee)
        ft = (kn[0] + sgn * np.sin(swing * 0.6) * knee, fy - 0.03 * u)
        line(hip, kn, legs_c, leg_t)
        line(kn, ft, legs_c, leg_t)
        line(ft, (ft[0] + (0.06 * u if side else 0.02 * u), ft[1]), (25, 25, 25), max(1, int(0.05 * u)))
    torso = np.array(
        [
            [fx - half, sh_y],
            [fx + half, sh_y],
            [fx + half * 0.9, hip_y + 0.03 * u],
            [fx - half * 0.9, hip_y + 0.03 * u],
        ],
        np.float32,
    )
    cv2.fillPoly(img, [np.round(torso).astype(np.int32)], shirt, _AA)
    strokes.extend((float(x), float(y), 1.0) for x, y in torso)
    for sgn, ax in ((-1, fx - half), (1, fx + half)):
        sh = (ax if not side else fx, sh_y + 0.02 * u)
        el = (sh[0] + sgn * np.sin(swing) * 0.15 * u + (0 if side else sgn * 0.03 * u), sh[1] + 0.15 * u)
        hd = (el[0] + sgn * np.sin(swing) * 0.12 * u, el[1] + 0.14 * u)
        line(sh, el, shirt, arm_t)
        line(el, hd, shirt if rng.random() < 0.5 else skin, arm_t)
        cv2.circle(img, (int(hd[0]), int(hd[1])), max(1, int(arm_t * 0.6)), skin, -1, _AA)
        strokes.append((hd[0], hd[1], arm_t * 0.6 + 1))
    line((fx, sh_y), (fx, sh_y - 0.05 * u), skin, max(1, int(0.04 * u)))
    hc = (int(fx), int(sh_y - 0.05 * u - head_r))
    cv2.circle(img, hc, int(head_r), skin, -1, _AA)
    cv2.ellipse(img, hc, (int(head_r), int(head_r)), 0, 180, 360, hair, -1, _AA)
    strokes.append((hc[0], hc[1], head_r + 1))
    if rng.random() < 0.3:  # a bag on one side
        bx, by = fx + (half if rng.random() < 0.5 else -half) * 1.3, hip_y - 0.05 * u
        bs = 0.09 * u
        cv2.rectangle(
            img, (int(bx - bs), int(by)), (int(bx + bs), int(by + 1.3 * bs)), shade(hsv_color(rng), light), -1
        )
        strokes.extend([(bx - bs, by, 1.0), (bx + bs, by + 1.3 * bs, 1.0)])
    return _extent(strokes)
