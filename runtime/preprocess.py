"""The one preprocessing: training, calibration, parity checks and the runtime all call these functions.

Everything that turns a camera image into a model input is driven by a `PreprocessSpec`, stored in the
checkpoint and in the bundle manifest. No mean/std constants live anywhere else in edgecam.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

MIN_SIDE, MAX_SIDE = 8, 4096  # model input pixels per side
_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
RESIZE_MODES = ("stretch", "letterbox")


def _real(value: Any) -> float:
    """A number from a manifest as float; strings and booleans are refused (float("nan") would pass otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


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
        for key in ("height", "width", "pad_value"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise EdgecamError(f"preprocess.{key} {value!r} is not an integer")
            object.__setattr__(self, key, int(value))
        for key in ("height", "width"):
            value = getattr(self, key)
            if value < MIN_SIDE:
                raise EdgecamError(f"preprocess.{key} {value} is too small", fix=f"use at least {MIN_SIDE}")
            if value > MAX_SIDE:  # a typo or a hostile manifest: 100000 per side would allocate 112 GiB per frame
                raise EdgecamError(f"preprocess.{key} {value} is too large", fix=f"use at most {MAX_SIDE} per side")
        if not 0 <= self.pad_value <= 255:
            raise EdgecamError(f"preprocess.pad_value {self.pad_value} is not a uint8 level", fix="use 0..255")
        if self.resize not in RESIZE_MODES:
            raise EdgecamError(f"unknown resize mode {self.resize!r}", fix=f"use one of {RESIZE_MODES}")
        if self.color not in ("rgb", "bgr"):
            raise EdgecamError(f"unknown colour order {self.color!r}", fix="use 'rgb' or 'bgr'")
        if self.layout != "nchw":
            raise EdgecamError(f"unsupported layout {self.layout!r}", fix="use 'nchw'")
        if self.interpolation not in _INTERPOLATION:
            choices = list(_INTERPOLATION)
            raise EdgecamError(f"unknown interpolation {self.interpolation!r}", fix=f"use one of {choices}")
        try:
            mean, std = tuple(_real(v) for v in self.mean), tuple(_real(v) for v in self.std)
        except (TypeError, ValueError):
            mean = std = ()
        if len(mean) != 3 or len(std) != 3 or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
            raise EdgecamError("preprocess.mean and preprocess.std need three values each, finite numbers, std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

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


def _check_image(image: np.ndarray) -> None:
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise EdgecamError(f"expected an HxWx3 image, got shape {getattr(image, 'shape', None)}")


def _geometry(h: int, w: int, spec: PreprocessSpec) -> tuple[int, int, int, int, Letterbox]:
    """Where the resized image lands in the model input: (width, height, x, y) of that region and the Letterbox."""
    if spec.resize == "stretch":
        return spec.width, spec.height, 0, 0, Letterbox(spec.width / w, spec.height / h, 0.0, 0.0)
    scale = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (spec.width - nw) // 2, (spec.height - nh) // 2
    return nw, nh, pad_x, pad_y, Letterbox(scale, scale, float(pad_x), float(pad_y))


def _resize_into(image: np.ndarray, dst: np.ndarray, spec: PreprocessSpec) -> None:
    """Resize `image` into `dst`, a view into a canvas: cv2 writes through it, so there is no second copy."""
    written = cv2.resize(image, dst.shape[1::-1], dst=dst, interpolation=_INTERPOLATION[spec.interpolation])
    if written is not dst:  # cv2 allocated instead (it never does for a matching uint8 view); keep the result
        dst[...] = written


def resize_image(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox]:
    """Resize a BGR uint8 image to the model size (stretch or letterbox), still uint8 BGR."""
    _check_image(image)
    nw, nh, pad_x, pad_y, box = _geometry(*image.shape[:2], spec)
    if spec.resize == "stretch":
        return cv2.resize(image, (nw, nh), interpolation=_INTERPOLATION[spec.interpolation]), box
    out = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    region = out[pad_y : pad_y + nh, pad_x : pad_x + nw]
    if (nw, nh) == image.shape[1::-1]:
        region[...] = image
    elif image.dtype == np.uint8:
        _resize_into(image, region, spec)
    else:  # other dtypes are cast into the uint8 canvas, as they always were
        region[...] = cv2.resize(image, (nw, nh), interpolation=_INTERPOLATION[spec.interpolation])
    return out, box


@functools.lru_cache(maxsize=16)
def _lookup_tables(spec: PreprocessSpec) -> np.ndarray:
    """(3, 1, 256) float32: the normalised value of every uint8 level, per tensor channel (in the model's colour
    order), with the float32 arithmetic of `_normalize_arithmetic`, so a table look-up gives the same bits."""
    levels = np.arange(256, dtype=np.float32)
    mean = np.asarray(spec.mean, np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    tables = np.stack([(levels - mean[c]) * scale[c] for c in range(3)]).reshape(3, 1, 256)
    tables.flags.writeable = False  # shared by every call through the cache
    return tables


def _plane_order(spec: PreprocessSpec) -> tuple[int, int, int]:
    """The BGR plane each tensor channel reads."""
    return (2, 1, 0) if spec.color == "rgb" else (0, 1, 2)


def _normalize_arithmetic(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray) -> None:
    """Any dtype: convert, subtract, multiply plane by plane in float32 (the look-up tables' arithmetic)."""
    planes = cv2.split(image)
    mean = np.asarray(spec.mean, np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    for c, p in enumerate(_plane_order(spec)):
        channel = out[c]
        channel[...] = planes[p]
        cv2.subtract(channel, float(mean[c]), dst=channel)
        cv2.multiply(channel, float(scale[c]), dst=channel)


def normalize(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 BGR HxWx3 at model size -> float32 CxHxW, colour order and mean/std from the spec (into `out`, a
    batch's slot or a region of it, when given: no second 1 MB buffer and copy per frame)."""
    if out is None:
        out = np.empty((3, *image.shape[:2]), np.float32)
    if image.dtype != np.uint8:  # no look-up table for these; the arithmetic gives what it always gave
        _normalize_arithmetic(image, spec, out)
        return out
    planes = cv2.split(image)
    tables = _lookup_tables(spec)
    for c, p in enumerate(_plane_order(spec)):
        channel = out[c]
        written = cv2.LUT(planes[p], tables[c], dst=channel)  # one pass per plane: uint8 -> normalised float32
        if written is not channel:
            channel[...] = written
    return out


def _preprocess_into(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray) -> Letterbox:
    """One image into `out` (3xHxW float32): the picture is resized into a buffer of its own size and normalised
    into its region of `out`; the padding is filled with the normalised pad value (no canvas, no look-ups on it)."""
    _check_image(image)
    nw, nh, pad_x, pad_y, box = _geometry(*image.shape[:2], spec)
    if image.dtype != np.uint8:  # rare: the general path
        resized, _ = resize_image(image, spec)
        normalize(resized, spec, out=out)
        return box
    if spec.resize == "letterbox" and (nw, nh) == image.shape[1::-1]:
        resized = image
    else:
        resized = np.empty((nh, nw, 3), np.uint8)
        _resize_into(image, resized, spec)
    normalize(resized, spec, out=out[:, pad_y : pad_y + nh, pad_x : pad_x + nw])
    if (nw, nh) != (spec.width, spec.height):
        tables = _lookup_tables(spec)
        for c in range(3):
            pad = tables[c, 0, spec.pad_value]
            out[c, :pad_y] = pad
            out[c, pad_y + nh :] = pad
            out[c, pad_y : pad_y + nh, :pad_x] = pad
            out[c, pad_y : pad_y + nh, pad_x + nw :] = pad
    return box


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox]:
    """One BGR uint8 image -> (float32 CxHxW tensor, letterbox info)."""
    out = np.empty(spec.input_shape, np.float32)
    return out, _preprocess_into(image, spec, out)


def preprocess_batch(images: list[np.ndarray], spec: PreprocessSpec) -> tuple[np.ndarray, list[Letterbox]]:
    """Several BGR uint8 images -> (float32 NxCxHxW batch, letterbox info per image)."""
    batch = np.empty((len(images), 3, spec.height, spec.width), dtype=np.float32)
    return batch, [_preprocess_into(image, spec, batch[i]) for i, image in enumerate(images)]


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
