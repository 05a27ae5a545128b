"""Augmentation keeps boxes right: every box must tightly enclose the pixels of its own colour afterwards."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgecam.runtime.preprocess import PreprocessSpec, resize_image
from edgecam.train.detection.augment import (
    PAD,
    DetAugmentConfig,
    affine_matrix,
    augment_detection,
    hflip,
    letterbox_boxes,
    mosaic,
    random_affine,
    warp_affine,
)

# Box k is filled with COLORS[k]; channels only 0/255 so an edge pixel (a blend with black or grey) is
# never mistaken for another box's colour.
COLORS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255,) * 3])
PALETTE = np.vstack([COLORS, [(0, 0, 0), (PAD, PAD, PAD)]]).astype(np.float32)
GEOMETRIC = replace(DetAugmentConfig(), hsv_h=0, hsv_s=0, hsv_v=0, blur=0)  # colours must survive the check


def scene(w: int, h: int, boxes: list[tuple[int, int, int, int]], first: int = 0):
    """Black WxH image with box k filled in COLORS[first + k]; boxes as float32 xyxy, classes = colour ids."""
    img = np.zeros((h, w, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        img[y1:y2, x1:x2] = COLORS[first + k]
    classes = np.arange(first, first + len(boxes))
    return img, np.asarray(boxes, np.float32).reshape(-1, 4), classes


def color_rect(img: np.ndarray, k: int) -> np.ndarray | None:
    """Bounding rectangle (corner convention) of the pixels whose nearest palette entry is COLORS[k]."""
    d = ((img[:, :, None, :].astype(np.float32) - PALETTE) ** 2).sum(-1)
    ys, xs = np.nonzero(d.argmin(-1) == k)
    return None if len(xs) == 0 else np.float32([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def color_count(img: np.ndarray, k: int) -> int:
    d = ((img[:, :, None, :].astype(np.float32) - PALETTE) ** 2).sum(-1)
    return int((d.argmin(-1) == k).sum())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_boxes_match_pixels(img, boxes, classes, rotated: bool = False, local: bool = False):
    """Each kept box tightly encloses its colour's pixels (so a box without pixels left is a failure).

    With `local` (an image may repeat, as in a dataset's mosaic), or for boxes sharing a colour, each box is
    checked against the pixels of its colour within 1 px around it.

    A rotated box cut by the image border is only checked to enclose its pixels: the enclosing rectangle of
    a rotated box, clipped, is looser than what remains visible of it (the clipped-off corner).
    """
    assert img.dtype == np.uint8 and boxes.dtype == np.float32 and len(boxes) == len(classes)
    h, w = img.shape[:2]
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= w + 1e-3) and np.all(boxes[:, [1, 3]] <= h + 1e-3)
    for box, k in zip(boxes, classes, strict=True):
        if not local and (classes == k).sum() == 1:
            rect = color_rect(img, int(k))
        else:
            x0, y0 = (max(0, int(v) - 1) for v in box[:2])
            rect = color_rect(img[y0 : int(np.ceil(box[3])) + 1, x0 : int(np.ceil(box[2])) + 1], int(k))
            rect = None if rect is None else rect + np.float32([x0, y0, x0, y0])
        assert rect is not None, f"box {box} of colour {k} has no pixels"
        assert np.all(rect[:2] >= box[:2] - 1) and np.all(rect[2:] <= box[2:] + 1), (k, box, rect)
        clipped = box[0] < 1e-3 or box[1] < 1e-3 or box[2] > w - 1e-3 or box[3] > h - 1e-3
        if not (rotated and clipped):
            assert iou(box, rect) >= 0.9, (k, box, rect)


SCENE_BOXES = [(10, 10, 60, 50), (80, 20, 130, 90), (150, 5, 195, 40), (20, 100, 90, 150), (140, 90, 196, 156)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "scale, translate, degrees, out_size",
    [
        ((0.6, 0.6), 0.0, 0.0, (160, 160)),
        ((1.5, 1.5), 0.0, 0.0, (200, 160)),
        ((1.0, 1.0), 0.3, 0.0, (200, 160)),
        ((0.7, 1.4), 0.25, 0.0, (128, 192)),
        ((1.0, 1.0), 0.1, 25.0, (200, 160)),
    ],
)
def test_random_affine_keeps_boxes_on_their_pixels(seed, scale, translate, degrees, out_size):
    img, boxes, classes = scene(200, 160, SCENE_BOXES)
    out, b, c = random_affine(img, boxes, classes, np.random.default_rng(seed), scale, translate, degrees, out_size)
    assert out.shape == (out_size[1], out_size[0], 3)
    assert_boxes_match_pixels(out, b, c, rotated=degrees > 0)
    gain = min(out_size[0] / 200, out_size[1] / 160) * scale[1]  # largest possible zoom
    cos, sin = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    for k in set(classes.tolist()) - set(c.tolist()):  # dropped: at most 30 % of its enclosing rectangle shows
        x1, y1, x2, y2 = SCENE_BOXES[k]
        w, h = (x2 - x1) * gain, (y2 - y1) * gain
        assert color_count(out, k) < 0.3 * (w * cos + h * sin) * (w * sin + h * cos) + w + h


@pytest.mark.parametrize("shift", [0.0, 30.0, 85.0, 92.0, 150.0, 210.0])
def test_boxes_moved_outside_are_dropped_by_the_70_percent_rule(shift):
    boxes = [(0, 10, 40, 50), (60, 10, 100, 50), (110, 10, 150, 50), (160, 10, 199, 50)]
    img, b, c = scene(200, 100, boxes)
    m = affine_matrix((200, 100), (200, 100), shift=(-shift, 0.0))  # slide everything left by `shift` px
    out, ob, oc = warp_affine(img, b, c, m, (200, 100))
    visible = [(min(x2 - shift, 200) - max(x1 - shift, 0)) / (x2 - x1) for x1, _, x2, _ in boxes]
    assert oc.tolist() == [k for k, v in enumerate(visible) if v > 0.3]
    assert_boxes_match_pixels(out, ob, oc)


def test_thin_remainder_is_dropped():
    img, b, c = scene(100, 100, [(10, 10, 12, 80), (40, 40, 90, 90)])
    out, ob, oc = warp_affine(img, b, c, np.eye(3), (100, 100))
    assert oc.tolist() == [0, 1]  # 2 px wide survives
    m = affine_matrix((100, 100), (100, 100), scale=0.7)
    assert warp_affine(img, b, c, m, (100, 100))[2].tolist() == [1]  # 1.4 px wide does not


def tile(first: int, n: int, w: int, h: int):
    """A w x h scene with n well-separated boxes in colours first..first+n-1."""
    cells = [(0.08, 0.1, 0.42, 0.45), (0.55, 0.5, 0.92, 0.9)]
    boxes = [(int(a * w), int(b * h), int(c * w), int(d * h)) for a, b, c, d in cells[:n]]
    return scene(w, h, boxes, first)


TILES = [tile(0, 2, 200, 150), tile(2, 2, 120, 180), tile(4, 2, 160, 160), tile(6, 1, 180, 120)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("out_size", [(160, 160), (192, 128)])
def test_mosaic_keeps_boxes_on_their_pixels(seed, out_size):
    img, b, c = mosaic(TILES, np.random.default_rng(seed), out_size)
    assert img.shape == (out_size[1], out_size[0], 3)
    assert_boxes_match_pixels(img, b, c)
    W, H = out_size
    for t_img, t_boxes, t_classes in TILES:  # visible fraction decides, against the box fitted to the canvas
        fit = min(W / t_img.shape[1], H / t_img.shape[0])
        for box, k in zip(t_boxes, t_classes, strict=True):
            full = (box[2] - box[0]) * (box[3] - box[1]) * fit**2
            seen = color_count(img, int(k)) / full
            if seen < 0.2:
                assert k not in c
            elif seen > 0.4:
                assert k in c


def test_hflip_mirrors_boxes():
    img, b, c = scene(200, 160, SCENE_BOXES)
    out, ob, oc = hflip(img, b, c)
    assert np.array_equal(out, img[:, ::-1]) and np.array_equal(oc, c)
    for box, k in zip(ob, oc, strict=True):
        assert np.array_equal(box, color_rect(out, int(k)))


@pytest.mark.parametrize("seed", range(4))
def test_full_geometric_pipeline_keeps_boxes(seed):
    cfg = replace(GEOMETRIC, scale=(0.8, 1.25), degrees=5.0, flip=0.5)
    items = TILES[1:]
    img, b, c = augment_detection(*TILES[0], np.random.default_rng(seed), cfg, (192, 160), lambda rng: items)
    assert img.shape == (160, 192, 3)
    assert_boxes_match_pixels(img, b, c, rotated=True)


@pytest.mark.parametrize("frame, spec", [((90, 160), (128, 128)), ((200, 80), (128, 128)), ((120, 90), (96, 160))])
def test_letterbox_boxes_map_rectangles(frame, spec):
    w, h = frame
    boxes = [(int(0.1 * w), int(0.1 * h), int(0.45 * w), int(0.4 * h)), (int(0.5 * w), int(0.55 * h), w, h)]
    img, b, c = scene(w, h, boxes)
    resized, lb = resize_image(img, PreprocessSpec(spec[0], spec[1], resize="letterbox", pad_value=PAD))
    mapped = letterbox_boxes(b, lb)
    assert mapped.dtype == np.float32 and mapped.shape == (2, 4)
    assert_boxes_match_pixels(resized, mapped, c)


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_same_seed_same_result_and_different_seed_differs():
    cfg = replace(DetAugmentConfig(), degrees=10.0, blur=0.5)

    def run(seed):
        return augment_detection(*TILES[0], np.random.default_rng(seed), cfg, (128, 128), lambda rng: TILES[1:])

    assert same(run(7), run(7))
    assert not same(run(7), run(8))


def test_all_off_is_identity():
    cfg = DetAugmentConfig.off()
    assert not cfg.enabled
    img, b, c = TILES[0]
    out = augment_detection(img, b, c, np.random.default_rng(0), cfg, (64, 64), lambda rng: TILES[1:])
    assert same(out, (img, b, c))


@pytest.mark.parametrize("field", [{"hsv_h": 0.1}, {"hsv_s": 0.7}, {"hsv_v": 0.5}, {"blur": 1.0}])
def test_colour_switches_change_pixels_not_boxes(field):
    img = np.random.default_rng(0).integers(30, 220, (50, 60, 3), dtype=np.uint8)
    b, c = TILES[0][1:]
    rng = np.random.default_rng(1)
    out, ob, oc = augment_detection(img, b, c, rng, replace(DetAugmentConfig.off(), **field), (64, 64))
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert same((ob, oc), (b, c))


@pytest.mark.parametrize(
    "field", [{"scale": (0, 1)}, {"scale": (1.5, 0.5)}, {"mosaic": 1.5}, {"flip": -0.1}, {"translate": 0.6}]
)
def test_invalid_config_is_an_error(field):
    from edgecam.runtime.errors import EdgecamError

    with pytest.raises(EdgecamError):
        DetAugmentConfig(**field)
