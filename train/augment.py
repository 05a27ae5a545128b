"""Classification augmentation on uint8 BGR images, before the one shared preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Each switch is independent; all zero/False means no augmentation."""

    flip: float = 0.5  # probability of a horizontal flip
    crop_scale: float = 0.7  # random resized crop keeps this fraction of the area at least (1.0 = off)
    crop_ratio: float = 0.25  # aspect-ratio jitter of that crop, +-fraction
    rotate: float = 8.0  # max degrees
    jitter: float = 0.3  # brightness/contrast/saturation jitter strength
    hue: float = 0.03  # hue jitter, fraction of the hue circle
    blur: float = 0.2  # probability of a Gaussian blur

    @property
    def enabled(self) -> bool:
        return any([self.flip, self.crop_scale < 1.0, self.rotate, self.jitter, self.hue, self.blur])


def random_resized_crop(img: np.ndarray, rng: np.random.Generator, scale: float, ratio: float) -> np.ndarray:
    h, w = img.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(scale, 1.0)
        aspect = (w / h) * np.exp(rng.uniform(np.log(1 - ratio), np.log(1 + ratio)))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img[y : y + ch, x : x + cw]
    return img


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float, hue: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    if hue:
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 180.0) % 180.0
    if strength:
        hsv[..., 1] *= rng.uniform(1 - strength, 1 + strength)
        hsv[..., 2] *= rng.uniform(1 - strength, 1 + strength)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    if strength:
        contrast = rng.uniform(1 - strength, 1 + strength)
        mean = out.mean()
        out = np.clip((out.astype(np.float32) - mean) * contrast + mean, 0, 255).astype(np.uint8)
    return out


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A randomly augmented copy of a BGR uint8 image (the label is unchanged by every operation)."""
    if cfg.crop_scale < 1.0:
        img = random_resized_crop(img, rng, cfg.crop_scale, cfg.crop_ratio)
    if cfg.flip and rng.random() < cfg.flip:
        img = img[:, ::-1]
    if cfg.rotate:
        img = rotate(np.ascontiguousarray(img), rng.uniform(-cfg.rotate, cfg.rotate))
    if cfg.jitter or cfg.hue:
        img = color_jitter(np.ascontiguousarray(img), rng, cfg.jitter, cfg.hue)
    if cfg.blur and rng.random() < cfg.blur:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    return np.ascontiguousarray(img)
