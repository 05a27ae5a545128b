"""Detection augmentation on (BGR uint8 image, xyxy float32 (K, 4) pixel boxes, class ids (K,)) that keeps boxes right.

Geometry is written in the pixel-corner convention (pixel i spans [i, i+1)), the one `cv2.resize` and the
shared letterbox use, so a box drawn at integer edges still encloses exactly its pixels after any transform.
After augmentation the image goes through the one preprocessing (`runtime.preprocess.preprocess`) and
`letterbox_boxes` maps the boxes with the `Letterbox` it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import Letterbox

Item = tuple[np.ndarray, np.ndarray, np.ndarray]  # (image, xyxy boxes, class ids)
PAD = 114  # fill of uncovered pixels, the same grey as the letterbox padding
MIN_SIZE = 2.0  # boxes narrower or shorter than this many pixels are dropped
MIN_KEEP = 0.3  # boxes that keep less than this fraction of their area after clipping are dropped


@dataclass(frozen=True)
class DetAugmentConfig:
    """Each switch is independent; `DetAugmentConfig.off()` changes nothing."""

    mosaic: float = 1.0  # probability of a 2x2 mosaic with three other images
    scale: tuple[float, float] = (0.5, 1.5)  # random zoom range of the affine step ((1, 1) = off)
    translate: float = 0.1  # max shift, fraction of the output size
    degrees: float = 0.0  # max rotation
    flip: float = 0.5  # probability of a horizontal flip
    hsv_h: float = 0.015  # hue gain (fraction of the hue circle)
    hsv_s: float = 0.7  # saturation gain
    hsv_v: float = 0.4  # value gain
    blur: float = 0.01  # probability of a Gaussian blur

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise EdgecamError(f"augment scale {self.scale} must be (lo, hi) with 0 < lo <= hi", fix="e.g. [0.5, 1.5]")
        for name in ("mosaic", "flip", "blur"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EdgecamError(f"augment {name}={getattr(self, name)} is a probability", fix="use 0..1")
        if not 0.0 <= self.translate < 0.5 or min(self.degrees, self.hsv_h, self.hsv_s, self.hsv_v) < 0:
            raise EdgecamError("augment translate must be in [0, 0.5) and degrees/hsv gains >= 0")

    @classmethod
    def off(cls) -> DetAugmentConfig:
        return cls(mosaic=0, scale=(1, 1), translate=0, degrees=0, flip=0, hsv_h=0, hsv_s=0, hsv_v=0, blur=0)

    @property
    def affine(self) -> bool:
        return self.scale != (1.0, 1.0) or bool(self.translate) or bool(self.degrees)

    @property
    def enabled(self) -> bool:
        return bool(self.mosaic or self.affine or self.flip or self.hsv_h or self.hsv_s or self.hsv_v or self.blur)

    def without_mosaic(self) -> DetAugmentConfig:
        """The same augmentation with mosaic closed, for the last epochs (real-looking images before the end)."""
        return replace(self, mosaic=0.0)


def augment_detection(
    img: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    cfg: DetAugmentConfig,
    out_size: tuple[int, int],
    mosaic_items_fn: Callable[[np.random.Generator], Sequence[Item]] | None = None,
) -> Item:
    """Mosaic -> affine -> flip -> HSV -> blur, each by `cfg`; `mosaic_items_fn(rng)` gives the 3 other images.

    `out_size` is the model input (W, H): mosaic and affine render at that size; with both off the image
    keeps its size and the letterbox does the rest.
    """
    item = _as_item(img, boxes, classes)
    if cfg.mosaic and mosaic_items_fn is not None and rng.random() < cfg.mosaic:
        item = mosaic([item, *mosaic_items_fn(rng)], rng, out_size)
    if cfg.affine:
        item = random_affine(*item, rng, cfg.scale, cfg.translate, cfg.degrees, out_size)
    img, boxes, classes = item
    if cfg.flip and rng.random() < cfg.flip:
        img, boxes, classes = hflip(img, boxes, classes)
    if cfg.hsv_h or cfg.hsv_s or cfg.hsv_v:
        img = hsv_jitter(img, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
    if cfg.blur and rng.random() < cfg.blur:
        img = blur(img, rng)
    return img, boxes, classes


def letterbox_boxes(boxes: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Boxes in the augmented image's pixels -> model-input pixels, with the Letterbox `preprocess` returned."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    gain = (letterbox.scale_x, letterbox.scale_y, letterbox.scale_x, letterbox.scale_y)
    pad = (letterbox.pad_x, letterbox.pad_y, letterbox.pad_x, letterbox.pad_y)
    return (boxes * gain + pad).astype(np.float32)


# ------------------------------------------------------------------------------------------------ geometry


def affine_matrix(
    in_size: tuple[int, int], out_size: tuple[int, int], scale: float = 1.0, degrees: float = 0.0, shift=(0.0, 0.0)
) -> np.ndarray:
    """3x3 matrix (corner convention): fit the image into `out_size` as the letterbox would, zoom by `scale`
    and rotate about its centre, place that centre at the output centre plus `shift` pixels."""
    (w, h), (W, H) = in_size, out_size
    fit = min(W / w, H / h)
    centre = np.float64([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    rotate = np.vstack([cv2.getRotationMatrix2D((0.0, 0.0), degrees, fit * scale), [0, 0, 1]])
    place = np.float64([[1, 0, W / 2 + shift[0]], [0, 1, H / 2 + shift[1]], [0, 0, 1]])
    return place @ rotate @ centre


def warp_affine(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, m: np.ndarray, out_size) -> Item:
    """Apply the 3x3 corner-convention affine `m`: each box becomes the enclosing rectangle of its 4 corners,
    clipped to the output; boxes that lose > 70 % of their area or get thinner than 2 px are dropped."""
    W, H = int(out_size[0]), int(out_size[1])
    boxes, classes = _as_item(img, boxes, classes)[1:]
    # OpenCV maps pixel centres (index i at i, not i + 0.5): conjugate by the half-pixel shift.
    half = np.float64([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    m_cv = (np.linalg.inv(half) @ m @ half)[:2]
    out = cv2.warpAffine(img, m_cv, (W, H), flags=cv2.INTER_LINEAR, borderValue=(PAD, PAD, PAD))
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    corners = np.stack([np.stack([x, y, np.ones_like(x)], 1) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], 1)
    moved = corners @ m.T  # (K, 4, 3)
    rect = np.concatenate([moved[..., :2].min(1), moved[..., :2].max(1)], 1)
    return (out, *_clip_and_filter(rect, classes, (0, 0, W, H)))


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.5, 1.5),
    translate: float = 0.1,
    degrees: float = 0.0,
    out_size: tuple[int, int] | None = None,
) -> Item:
    """Random zoom/rotation/shift rendered at `out_size` (W, H; default: the input size), see `affine_matrix`."""
    h, w = img.shape[:2]
    W, H = out_size if out_size is not None else (w, h)
    s = rng.uniform(scale[0], scale[1])
    a = rng.uniform(-degrees, degrees)
    shift = rng.uniform(-translate, translate, 2) * (W, H)
    return warp_affine(img, boxes, classes, affine_matrix((w, h), (W, H), s, a, shift), (W, H))


def mosaic(items: Sequence[Item], rng: np.random.Generator, out_size: tuple[int, int]) -> Item:
    """Four images in a 2x2 around a random centre of a (W, H) canvas, each fitted to the canvas as the
    letterbox would and cropped to its quadrant; boxes shifted, clipped and dropped as in `warp_affine`."""
    if len(items) != 4:
        raise ValueError(f"mosaic needs 4 items, got {len(items)}")
    W, H = int(out_size[0]), int(out_size[1])
    xc, yc = int(rng.uniform(0.25 * W, 0.75 * W)), int(rng.uniform(0.25 * H, 0.75 * H))
    canvas = np.full((H, W, 3), PAD, np.uint8)
    all_boxes, all_classes = [], []
    for k, item in enumerate(items):
        img, boxes, classes = _as_item(*item)
        h, w = img.shape[:2]
        fit = min(W / w, H / h)
        nw, nh = max(1, round(w * fit)), max(1, round(h * fit))
        tile = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else img
        left, top = k in (0, 2), k in (0, 1)
        ox, oy = (xc - nw if left else xc), (yc - nh if top else yc)  # tile's top-left on the canvas
        qx0, qx1 = (max(0, ox), xc) if left else (xc, min(W, ox + nw))
        qy0, qy1 = (max(0, oy), yc) if top else (yc, min(H, oy + nh))
        if qx1 > qx0 and qy1 > qy0:
            canvas[qy0:qy1, qx0:qx1] = tile[qy0 - oy : qy1 - oy, qx0 - ox : qx1 - ox]
        moved = boxes.astype(np.float64) * (nw / w, nh / h, nw / w, nh / h) + (ox, oy, ox, oy)
        b, c = _clip_and_filter(moved, classes, (qx0, qy0, qx1, qy1))
        all_boxes.append(b)
        all_classes.append(c)
    return canvas, np.concatenate(all_boxes), np.concatenate(all_classes)


def hflip(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> Item:
    """Mirror left-right; x becomes W - x."""
    img, boxes, classes = _as_item(img, boxes, classes)
    w = img.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), flipped, classes


# ------------------------------------------------------------------------------------------------- colour


def hsv_jitter(img: np.ndarray, rng: np.random.Generator, hue: float, sat: float, val: float) -> np.ndarray:
    """Random hue shift and saturation/value gains (YOLO-style, via lookup tables: cheap on 2 cores)."""
    r = rng.uniform(-1, 1, 3) * (hue, sat, val) + 1
    h, s, v = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with a 3 or 5 px kernel: motion/focus softness of cheap camera lenses."""
    k = int(rng.choice([3, 5]))
    return cv2.GaussianBlur(img, (k, k), 0)


# ------------------------------------------------------------------------------------------------ helpers


def _as_item(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> Item:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if len(boxes) != len(classes):
        raise ValueError(f"{len(boxes)} boxes but {len(classes)} class ids")
    return img, boxes, classes


def _clip_and_filter(rect: np.ndarray, classes: np.ndarray, region: tuple[int, int, int, int]):
    """Clip (K, 4) rectangles to `region` (x0, y0, x1, y1); keep those with enough area and size left."""
    x0, y0, x1, y1 = region
    clipped = np.clip(rect, (x0, y0, x0, y0), (x1, y1, x1, y1))
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    area = (rect[:, 2] - rect[:, 0]) * (rect[:, 3] - rect[:, 1])
    keep = (w >= MIN_SIZE) & (h >= MIN_SIZE) & (w * h >= MIN_KEEP * area)
    return clipped[keep].astype(np.float32).reshape(-1, 4), classes[keep]
