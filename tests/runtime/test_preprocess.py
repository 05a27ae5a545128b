"""The one preprocessing, as tables of cases: resize modes, colour order, normalisation, ROI crops, the spec."""

from __future__ import annotations

import cv2
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


# --- equivalence with a plain reference (the fused path must not change a single value) -------------------


def reference_preprocess(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, tuple[float, ...]]:
    """The textbook path: cv2.resize, paste into a padded canvas, then (x / 255 - mean) / std in float64."""
    interp = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[spec.interpolation]
    h, w = image.shape[:2]
    if spec.resize == "stretch":
        canvas = cv2.resize(image, (spec.width, spec.height), interpolation=interp)
        geometry = (spec.width / w, spec.height / h, 0.0, 0.0)
    else:
        scale = min(spec.width / w, spec.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (spec.width - nw) // 2, (spec.height - nh) // 2
        canvas = np.full((spec.height, spec.width, 3), spec.pad_value, np.uint8)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        geometry = (scale, scale, float(pad_x), float(pad_y))
    if spec.color == "rgb":
        canvas = canvas[:, :, ::-1]
    x = (canvas.astype(np.float64) / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    return x.transpose(2, 0, 1), geometry


def todays_arithmetic(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The float32 arithmetic the pipeline has always used: (x - mean * 255) * (1 / (std * 255)), per channel."""
    canvas, _ = resize_image(image, spec)
    if spec.color == "rgb":
        canvas = canvas[:, :, ::-1]
    mean = np.asarray(spec.mean, np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    return np.stack([(canvas[:, :, c].astype(np.float32) - mean[c]) * scale[c] for c in range(3)])


def assert_matches_reference(img: np.ndarray, spec: PreprocessSpec) -> None:
    expected, geometry = reference_preprocess(img, spec)
    tensor, box = preprocess(img, spec)
    batch, boxes = preprocess_batch([img], spec)
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == pytest.approx(geometry, rel=0, abs=0)
    assert tensor.dtype == np.float32 and tensor.shape == spec.input_shape
    assert np.abs(tensor - expected).max() <= 1e-5
    assert np.array_equal(tensor, todays_arithmetic(img, spec))  # bit for bit what the pipeline gave before
    assert np.array_equal(batch[0], tensor) and boxes[0] == box


SPECS = [
    PreprocessSpec.square(320, resize="letterbox", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    PreprocessSpec.square(320, resize="letterbox", color="bgr", pad_value=0),
    PreprocessSpec(96, 160, resize="letterbox", pad_value=255, interpolation="area"),
    PreprocessSpec(33, 17, resize="letterbox", interpolation="nearest", mean=(0.1, 0.9, 0.3), std=(2.0, 0.01, 0.5)),
    PreprocessSpec.square(64),  # stretch
    PreprocessSpec(24, 40, color="bgr", interpolation="area", mean=(0, 0, 0), std=(1, 1, 1)),
]
SIZES = [(720, 1280), (1280, 720), (320, 320), (321, 319), (96, 160), (1, 1), (1, 300), (300, 1), (7, 5), (33, 17)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.height}x{s.width}-{s.resize}-{s.color}-{s.interpolation}")
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_matches_reference(spec, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    assert_matches_reference(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), spec)


def test_matches_reference_on_random_specs():
    """A property test without hypothesis (not a dependency): 300 random specs, image sizes and contents."""
    rng = np.random.default_rng(2024)
    for _ in range(300):
        spec = PreprocessSpec(
            height=int(rng.integers(8, 90)),
            width=int(rng.integers(8, 90)),
            resize=str(rng.choice(["stretch", "letterbox"])),
            color=str(rng.choice(["rgb", "bgr"])),
            mean=tuple(rng.uniform(0, 1, 3)),
            std=tuple(rng.uniform(0.01, 2, 3)),
            interpolation=str(rng.choice(["linear", "area", "nearest"])),
            pad_value=int(rng.integers(0, 256)),
        )
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        assert_matches_reference(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), spec)


def test_every_level_normalises_as_before():
    """All 256 uint8 levels of every channel: the look-up tables give today's float32 arithmetic exactly."""
    spec = PreprocessSpec(16, 16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = np.stack([levels, levels[::-1], levels.T], axis=2)
    assert np.array_equal(normalize(img, spec), todays_arithmetic(img, spec))


def test_views_and_mixed_batches():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    spec = PreprocessSpec(48, 64, resize="letterbox")
    crop = crop_roi(frame, (17, 9, 101, 77))  # a non-contiguous view, as ROI classification passes
    assert_matches_reference(crop, spec)
    images = [frame, crop, frame[::2, ::3], np.ascontiguousarray(frame[:64, :48])]
    batch, boxes = preprocess_batch(images, spec)
    for i, img in enumerate(images):
        single, box = preprocess(img, spec)
        assert np.array_equal(batch[i], single) and boxes[i] == box


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_non_uint8_images_keep_their_old_path(resize):
    """A float image is not what cameras give, but it worked before and gives the same tensor now."""
    spec = PreprocessSpec(32, 48, resize=resize)
    img = np.random.default_rng(1).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    canvas, _ = resize_image(img, spec)
    assert canvas.dtype == (np.float32 if resize == "stretch" else np.uint8)  # letterbox: cast into a uint8 canvas
    if canvas.dtype == np.float32:
        mean = np.asarray(spec.mean, np.float32) * 255.0
        scale = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
        expected = np.stack([(canvas[:, :, 2 - c] - mean[c]) * scale[c] for c in range(3)])
    else:
        expected = todays_arithmetic(img, spec)
    assert np.array_equal(preprocess(img, spec)[0], expected)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((0, 5, 3))])
def test_preprocess_rejects_non_bgr_images(bad):
    with pytest.raises(EdgecamError, match="HxWx3"):
        preprocess(bad, PreprocessSpec.square(16))
    with pytest.raises(EdgecamError, match="HxWx3"):
        preprocess_batch([np.zeros((10, 10, 3), np.uint8), bad], PreprocessSpec.square(16, resize="letterbox"))
