"""The one preprocessing: training, calibration, parity checks and the runtime all call these functions.

Everything that turns a camera image into a model input is driven by a `PreprocessSpec`, stored in the
checkpoint and in the bundle manifest. No mean/std constants live anywhere else in edgecam.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a tensor. `mean`/`std` are on the 0..1 scale, in the model's colour order."""

    height: int
    width: int
    resize: str = "stretch"
    color: str = "rgb"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    layout: str = "nchw"
    interpolation: str = "linear"
    pad_value: int = 114

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise EdgecamError(f"input size {self.height}x{self.width} is too small", fix="use at least 8x8")
        if self.resize not in RESIZE_MODES:
            raise EdgecamError(f"unknown resize mode {self.resize!r}", fix=f"use one of {RESIZE_MODES}")
        if self.color not in ("rgb", "bgr"):
            raise EdgecamError(f"unknown colour order {self.color!r}", fix="use 'rgb' or 'bgr'")
        if self.layout != "nchw":
            raise EdgecamError(f"unsupported layout {self.layout!r}", fix="use 'nchw'")
        if self.interpolation not in _INTERPOLATION:
            choices = list(_INTERPOLATION)
            raise EdgecamError(f"unknown interpolation {self.interpolation!r}", fix=f"use one of {choices}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise EdgecamError("mean and std need three values each, std > 0")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def square(cls, size: int, **kwargs: Any) -> PreprocessSpec:
        return cls(height=int(size), width=int(size), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        try:
            return cls(**data)
        except TypeError as exc:
            raise EdgecamError(f"malformed preprocessing spec: {exc}") from None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.height, self.width)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was mapped into the model input, so boxes can be mapped back."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float


def resize_image(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox]:
    """Resize a BGR uint8 image to the model size (stretch or letterbox), still uint8 BGR."""
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise EdgecamError(f"expected an HxWx3 image, got shape {getattr(image, 'shape', None)}")
    h, w = image.shape[:2]
    interp = _INTERPOLATION[spec.interpolation]
    if spec.resize == "stretch":
        out = cv2.resize(image, (spec.width, spec.height), interpolation=interp)
        return out, Letterbox(spec.width / w, spec.height / h, 0.0, 0.0)
    scale = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    pad_x, pad_y = (spec.width - nw) // 2, (spec.height - nh) // 2
    out = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
    return out, Letterbox(scale, scale, float(pad_x), float(pad_y))


def normalize(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 BGR HxWx3 at model size -> float32 CxHxW, colour order and mean/std from the spec (into `out`, a
    batch's slot, when given: no second 1 MB buffer and copy per frame)."""
    planes = cv2.split(image)  # per-channel OpenCV arithmetic: ~6x faster than numpy broadcasting over HxWx3
    if spec.color == "rgb":
        planes = planes[::-1]
    mean = np.asarray(spec.mean, np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    if out is None:
        out = np.empty((3, *image.shape[:2]), np.float32)
    for c, plane in enumerate(planes):
        channel = out[c]
        channel[...] = plane
        cv2.subtract(channel, float(mean[c]), dst=channel)
        cv2.multiply(channel, float(scale[c]), dst=channel)
    return out


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox]:
    """One BGR uint8 image -> (float32 CxHxW tensor, letterbox info)."""
    resized, box = resize_image(image, spec)
    return normalize(resized, spec), box


def preprocess_batch(images: list[np.ndarray], spec: PreprocessSpec) -> tuple[np.ndarray, list[Letterbox]]:
    """Several BGR uint8 images -> (float32 NxCxHxW batch, letterbox info per image)."""
    batch = np.empty((len(images), 3, spec.height, spec.width), dtype=np.float32)
    boxes = []
    for i, image in enumerate(images):
        resized, box = resize_image(image, spec)
        normalize(resized, spec, out=batch[i])
        boxes.append(box)
    return batch, boxes


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Crop (x, y, w, h) from a frame, clipped to the frame; an ROI wholly outside it is an error."""
    x, y, w, h = (int(v) for v in roi)
    H, W = image.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        raise EdgecamError(f"ROI {roi} lies outside the {W}x{H} frame", fix="give x,y,w,h inside the frame")
    return image[y0:y1, x0:x1]


def denormalize(tensor: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Inverse of `normalize` (CxHxW float -> HxWx3 uint8 BGR), for plots and debugging."""
    x = tensor.transpose(1, 2, 0) * (np.asarray(spec.std) * 255.0) + np.asarray(spec.mean) * 255.0
    x = np.clip(x, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x[:, :, ::-1]) if spec.color == "rgb" else x
