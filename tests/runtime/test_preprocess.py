"""The one preprocessing, as tables of cases: resize modes, colour order, normalisation, ROI crops, the spec."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import (
    PreprocessSpec,
    crop_roi,
    denormalize,
    normalize,
    preprocess,
    preprocess_batch,
    resize_image,
)

RNG = np.random.default_rng(0)


def image(h: int, w: int, value: int | tuple[int, int, int] = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


@pytest.mark.parametrize(("h", "w"), [(48, 64), (64, 48), (32, 32), (7, 300), (480, 640)])
@pytest.mark.parametrize(("sh", "sw"), [(32, 32), (24, 40)])
def test_stretch_fills_the_input(h, w, sh, sw):
    spec = PreprocessSpec(sh, sw, resize="stretch")
    tensor, box = preprocess(image(h, w), spec)
    assert tensor.shape == (3, sh, sw) and tensor.dtype == np.float32
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == pytest.approx((sw / w, sh / h, 0, 0))


@pytest.mark.parametrize(("h", "w"), [(50, 100), (100, 50), (64, 64), (30, 200), (33, 17)])
def test_letterbox_keeps_aspect_and_pads(h, w):
    spec = PreprocessSpec.square(64, resize="letterbox", pad_value=114)
    resized, box = resize_image(image(h, w, 10), spec)
    scale = min(64 / w, 64 / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (64 - nw) // 2, (64 - nh) // 2
    assert resized.shape == (64, 64, 3)
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == pytest.approx((scale, scale, pad_x, pad_y))
    content = np.zeros((64, 64), bool)
    content[pad_y : pad_y + nh, pad_x : pad_x + nw] = True
    assert (resized[content] == 10).all()
    assert (resized[~content] == spec.pad_value).all()


@pytest.mark.parametrize(
    ("color", "bgr_value", "hottest_channel"),
    [
        ("rgb", (0, 0, 255), 0),  # red is channel 0 of an rgb tensor
        ("rgb", (255, 0, 0), 2),  # blue is channel 2
        ("bgr", (0, 0, 255), 2),  # a bgr tensor keeps OpenCV's order
        ("bgr", (255, 0, 0), 0),
        ("rgb", (0, 255, 0), 1),
    ],
)
def test_colour_order(color, bgr_value, hottest_channel):
    tensor, _ = preprocess(image(16, 16, bgr_value), PreprocessSpec.square(16, color=color))
    means = tensor.reshape(3, -1).mean(axis=1)
    assert int(np.argmax(means)) == hottest_channel


@pytest.mark.parametrize(
    ("mean", "std", "bgr_value"),
    [
        ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (0, 128, 255)),
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (10, 200, 90)),
        ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (255, 0, 77)),
    ],
)
def test_mean_std_normalisation(mean, std, bgr_value):
    spec = PreprocessSpec.square(8, mean=mean, std=std)  # rgb: channel c of the tensor is bgr_value[2 - c]
    tensor = normalize(image(8, 8, bgr_value), spec)
    for c in range(3):
        expected = (bgr_value[2 - c] / 255.0 - mean[c]) / std[c]
        assert tensor[c] == pytest.approx(np.full((8, 8), expected), abs=1e-5)


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_denormalize_round_trip(color):
    spec = PreprocessSpec(24, 40, color=color, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    original = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    back = denormalize(normalize(original, spec), spec)
    assert back.shape == original.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - original.astype(int)).max() <= 1


def test_batch_matches_single_images():
    spec = PreprocessSpec.square(16, resize="letterbox")
    images = [image(20, 30, 50), image(40, 10, 200)]
    batch, boxes = preprocess_batch(images, spec)
    assert batch.shape == (2, 3, 16, 16)
    for i, img in enumerate(images):
        single, box = preprocess(img, spec)
        assert np.array_equal(batch[i], single) and boxes[i] == box


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((0, 5, 3))])
def test_resize_rejects_non_bgr_images(bad):
    with pytest.raises(EdgecamError, match="HxWx3"):
        resize_image(bad, PreprocessSpec.square(16))


@pytest.mark.parametrize(
    ("roi", "expected_slice"),
    [
        ((10, 20, 30, 40), (slice(20, 60), slice(10, 40))),
        ((0, 0, 100, 80), (slice(0, 80), slice(0, 100))),
        ((90, 70, 50, 50), (slice(70, 80), slice(90, 100))),  # clipped at the edge
        ((-5, -5, 10, 10), (slice(0, 5), slice(0, 5))),
    ],
)
def test_crop_roi(roi, expected_slice):
    frame = RNG.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    assert np.array_equal(crop_roi(frame, roi), frame[expected_slice])


@pytest.mark.parametrize("roi", [(100, 0, 10, 10), (0, 80, 5, 5), (-20, 0, 10, 10), (10, 10, 0, 5)])
def test_crop_roi_outside_the_frame(roi):
    with pytest.raises(EdgecamError, match="outside"):
        crop_roi(np.zeros((80, 100, 3), np.uint8), roi)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 4, "width": 32}, "too small"),
        ({"resize": "crop"}, "resize mode"),
        ({"color": "yuv"}, "colour order"),
        ({"layout": "nhwc"}, "layout"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"mean": (0.5, 0.5)}, "three values"),
        ({"std": (0.2, 0.0, 0.2)}, "std > 0"),
    ],
)
def test_spec_validation(kwargs, message):
    args = {"height": 32, "width": 32, **kwargs}
    with pytest.raises(EdgecamError, match=message):
        PreprocessSpec(**args)


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec.square(32),
        PreprocessSpec(48, 64, resize="letterbox", color="bgr", mean=(0, 0, 0), std=(1, 1, 1), pad_value=0),
        PreprocessSpec(16, 16, interpolation="area"),
    ],
)
def test_spec_dict_round_trip(spec):
    data = spec.to_dict()
    assert PreprocessSpec.from_dict(data) == spec
    assert isinstance(data["mean"], list) and spec.input_shape == (3, spec.height, spec.width)


def test_spec_from_malformed_dict():
    with pytest.raises(EdgecamError, match="malformed"):
        PreprocessSpec.from_dict({"height": 32, "width": 32, "gamma": 2.2})
