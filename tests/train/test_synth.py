"""Tests for the synthetic scene generator: determinism, labels, box geometry, dataset layout, videos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgecam.runtime.errors import EdgecamError
from edgecam.train.synth import (
    RETAIL_CLASSES,
    SCENARIOS,
    SECURITY_CLASSES,
    make_security_video,
    make_shelf_video,
    render_shelf,
    render_street,
    synth_classification,
    synth_detection,
)
from edgecam.train.synth.draw import draw_person, random_perspective, warp_image, warp_xyxy
from edgecam.train.synth.retail import N_SKUS, draw_layout, facing_plan, make_layout, product_sprite
from edgecam.train.synth.security import draw_vehicle

RENDERERS = {
    "shelf": lambda rng: render_shelf(rng, (320, 240)).image,
    "street": lambda rng: render_street(rng, (160, 120)).image,
    "street_tampered": lambda rng: render_street(rng, (160, 120), content="tampered").image,
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _edge_density(img: np.ndarray) -> float:
    grey = cv2.cvtColor(cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return float((cv2.Canny(grey, 60, 150) > 0).mean())


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_render_is_deterministic(name):
    render = RENDERERS[name]
    a, b = render(np.random.default_rng(7)), render(np.random.default_rng(7))
    c = render(np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_shelf_scene_labels_are_consistent():
    rng = np.random.default_rng(3)
    for _ in range(4):
        scene = render_shelf(rng, (480, 360), state_probs=(1, 1, 1))
        h, w = scene.image.shape[:2]
        assert {s.state for s in scene.slots} <= set(RETAIL_CLASSES)
        assert len(scene.gaps) == sum(s.state == "empty" for s in scene.slots)
        for b in scene.boxes:
            x0, y0, x1, y1 = b.xyxy
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        centres = np.array([[(b.xyxy[0] + b.xyxy[2]) / 2, (b.xyxy[1] + b.xyxy[3]) / 2] for b in scene.products])
        for s in scene.slots:
            x, y, sw, sh = s.xywh
            assert min(x, y) >= 0 and x + sw <= w and y + sh <= h
            inside = (centres[:, 0] > x) & (centres[:, 0] < x + sw) & (centres[:, 1] > y) & (centres[:, 1] < y + sh)
            if s.state == "empty":
                assert not inside.any()
            else:
                assert inside.any()


@pytest.mark.parametrize("probs,state", [((1, 0, 0), "stocked"), ((0, 1, 0), "low"), ((0, 0, 1), "empty")])
def test_state_probs_select_the_state(probs, state):
    scene = render_shelf(np.random.default_rng(0), (320, 240), state_probs=probs)
    assert {s.state for s in scene.slots} == {state}
    assert (len(scene.products) == 0) == (state == "empty")


def test_product_boxes_enclose_drawn_pixels():
    """Painting products onto an empty shelf may only change pixels inside their (pre-warp) boxes."""
    layout = make_layout(np.random.default_rng(5), (480, 360))
    rng = np.random.default_rng(6)
    plans = [facing_plan(g, RETAIL_CLASSES[i % 3], rng) for i, g in enumerate(layout.slots)]
    empty, _ = draw_layout(layout, ["empty"] * len(plans), np.random.default_rng(1), plans=[[]] * len(plans))
    full, boxes = draw_layout(layout, ["?"] * len(plans), np.random.default_rng(1), plans=plans)
    inside = np.zeros(empty.shape[:2], bool)
    for b in boxes:
        x0, y0, x1, y1 = (int(v) for v in b.xyxy)
        inside[y0:y1, x0:x1] = True
    changed = np.abs(full.astype(int) - empty.astype(int)).max(2) > 0
    assert boxes and changed.any()
    assert not (changed & ~inside).any()


@pytest.mark.parametrize("sku", range(N_SKUS))
def test_product_sprite_fills_its_box(sku):
    _, mask = product_sprite(sku, 30, 60)
    rows, cols = np.nonzero(mask)
    assert rows.min() == 0 and rows.max() == 59 and cols.min() == 0 and cols.max() == 29


@pytest.mark.parametrize("seed", range(4))
def test_warped_box_encloses_warped_object(seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((240, 320, 3), np.uint8)
    x0, y0 = int(rng.integers(0, 200)), int(rng.integers(0, 150))
    box = (x0, y0, x0 + int(rng.integers(10, 100)), y0 + int(rng.integers(10, 80)))
    img[box[1] : box[3], box[0] : box[2]] = 255
    m = random_perspective(rng, (320, 240), 0.08)
    warped = warp_image(img, m)
    wx0, wy0, wx1, wy1 = warp_xyxy([box], m, (320, 240))[0]
    ys, xs = np.nonzero(warped[..., 0] > 0)
    assert xs.min() >= np.floor(wx0) - 1 and xs.max() <= np.ceil(wx1) + 1
    assert ys.min() >= np.floor(wy0) - 1 and ys.max() <= np.ceil(wy1) + 1


def _check_tight_box(canvas: np.ndarray, bg: int, xyxy) -> None:
    changed = np.abs(canvas.astype(int) - bg).max(2) > 0
    x0, y0, x1, y1 = (int(np.floor(xyxy[0])), int(np.floor(xyxy[1])), int(np.ceil(xyxy[2])), int(np.ceil(xyxy[3])))
    inside = np.zeros_like(changed)
    inside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    assert changed.any() and not (changed & ~inside).any()
    ys, xs = np.nonzero(changed)
    assert xs.min() - x0 <= 4 and x1 - xs.max() <= 4 and ys.min() - y0 <= 4 and y1 - ys.max() <= 4


@pytest.mark.parametrize("height,phase", [(40, 0.0), (120, 1.0), (200, 2.5), (300, 4.0)])
def test_person_box_is_tight(height, phase):
    for seed in range(3):
        canvas = np.full((400, 400, 3), 128, np.uint8)
        xyxy = draw_person(canvas, (200, 350), height, np.random.default_rng(seed), phase=phase)
        _check_tight_box(canvas, 128, xyxy)


@pytest.mark.parametrize("kind,facing", [("car", 1), ("car", -1), ("van", 1), ("truck", -1)])
def test_vehicle_box_is_tight(kind, facing):
    canvas = np.full((300, 500, 3), 128, np.uint8)
    xyxy = draw_vehicle(canvas, 60, 250, 320, np.random.default_rng(0), kind=kind, facing=facing)
    _check_tight_box(canvas, 128, xyxy)


@pytest.mark.parametrize("content", SECURITY_CLASSES)
def test_street_content_matches_label(content):
    rng = np.random.default_rng(11)
    for _ in range(5):
        scene = render_street(rng, (160, 120), content=content)
        kinds = [b.cls for b in scene.boxes]
        assert scene.label == content and scene.image.shape == (120, 160, 3)
        if content in ("clear", "tampered"):
            assert kinds == []
        elif content == "person":
            assert "person" in kinds and "vehicle" not in kinds
        else:
            assert "vehicle" in kinds
        for b in scene.boxes:
            assert 0 <= b.xyxy[0] < b.xyxy[2] <= 160 and 0 <= b.xyxy[1] < b.xyxy[3] <= 120


def test_retail_states_differ_in_edge_density():
    rng = np.random.default_rng(2)
    dens: dict[str, list[float]] = {c: [] for c in RETAIL_CLASSES}
    for _ in range(5):
        scene = render_shelf(rng, state_probs=(1, 1, 1))
        for s in scene.slots:
            x, y, w, h = s.xywh
            dens[s.state].append(_edge_density(scene.image[y : y + h, x : x + w]))
    mean = {c: np.mean(v) for c, v in dens.items()}
    assert mean["stocked"] > 1.3 * mean["low"] > 1.3 * 1.1 * mean["empty"]


def test_tampered_frames_have_less_detail():
    rng = np.random.default_rng(4)
    dens = {
        c: np.mean([_edge_density(render_street(rng, (160, 120), c).image) for _ in range(12)])
        for c in SECURITY_CLASSES
    }
    assert dens["tampered"] < 0.5 * min(dens["clear"], dens["person"], dens["vehicle"])


@pytest.mark.parametrize("scenario,n,crop", [("retail", 30, None), ("retail", 13, 40), ("security", 20, None)])
def test_classification_layout_and_balance(tmp_path, scenario, n, crop):
    out = tmp_path / "ds"
    res = synth_classification(scenario, out, n, seed=1, crop_size=crop)
    classes = list(RETAIL_CLASSES if scenario == "retail" else SECURITY_CLASSES)
    assert res["classes"] == classes and res["out"] == str(out)
    per_class = [res["train"][c] + res["val"][c] for c in classes]
    assert sum(per_class) == n and max(per_class) - min(per_class) <= 1
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(classes)
        for c in classes:
            files = sorted((out / split / c).glob("*.png"))
            assert len(files) == res[split][c] >= 1
            img = cv2.imread(str(files[0]))
            assert img is not None and img.shape[2] == 3
            if crop:
                assert img.shape[:2] == (crop, crop)
    meta = json.loads((out / "synth.json").read_text())
    assert (meta["scenario"], meta["seed"], meta["n"], meta["classes"]) == (scenario, 1, n, classes)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_classification_is_byte_identical_per_seed(tmp_path, scenario):
    a, b, c = (
        synth_classification(scenario, tmp_path / name, 12, seed=s)["out"] for name, s in (("a", 3), ("b", 3), ("c", 4))
    )
    fa, fb, fc = _files(Path(a)), _files(Path(b)), _files(Path(c))
    assert fa == fb
    assert fa.keys() == fc.keys() and fa != fc


def _nonempty(tmp_path: Path) -> Path:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    return tmp_path / "full"


@pytest.mark.parametrize(
    "scenario,n,out,kwargs",
    [
        ("parking", 30, "new", {}),
        ("retail", 5, "new", {}),
        ("security", 7, "new", {}),
        ("retail", 30, "full", {}),
        ("retail", 30, "new", {"val_fraction": 1.0}),
    ],
)
def test_classification_errors(tmp_path, scenario, n, out, kwargs):
    path = _nonempty(tmp_path) if out == "full" else tmp_path / out
    with pytest.raises(EdgecamError) as err:
        synth_classification(scenario, path, n, **kwargs)
    if scenario == "parking":
        assert all(s in str(err.value) for s in SCENARIOS)
    if out == "full":
        assert "empty folder" in str(err.value)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_detection_labels_are_valid_yolo(tmp_path, scenario):
    w, h = 320, 240
    res = synth_detection(scenario, tmp_path / "det", 5, seed=0, imgsz=(w, h))
    data = yaml.safe_load((tmp_path / "det" / "data.yaml").read_text())
    assert data["names"] == res["names"] and data["train"] == "images/train" and data["val"] == "images/val"
    assert Path(data["path"]) == (tmp_path / "det").resolve()
    max_id, n_images = -1, 0
    for split in ("train", "val"):
        for img_path in sorted((tmp_path / "det" / "images" / split).glob("*.jpg")):
            n_images += 1
            assert cv2.imread(str(img_path)).shape == (h, w, 3)
            label = tmp_path / "det" / "labels" / split / f"{img_path.stem}.txt"
            for line in label.read_text().splitlines():
                fields = line.split()
                assert len(fields) == 5
                cls, (cx, cy, bw, bh) = int(fields[0]), map(float, fields[1:])
                max_id = max(max_id, cls)
                assert 0 <= cls < len(data["names"])
                assert cx - bw / 2 >= -1e-5 and cx + bw / 2 <= 1 + 1e-5
                assert cy - bh / 2 >= -1e-5 and cy + bh / 2 <= 1 + 1e-5
                assert bw * w >= 3 - 1e-3 and bh * h >= 3 - 1e-3
    assert n_images == 5 and res["boxes"] > 0
    assert max_id < len(data["names"])


def test_shelf_video_opens_with_ground_truth(tmp_path):
    size = (320, 240)
    video = make_shelf_video(tmp_path / "shelf.mp4", seconds=1.5, fps=10, size=size, seed=2)
    cap = cv2.VideoCapture(str(video.path))
    assert cap.isOpened()
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (size[1], size[0], 3)
        frames += 1
    cap.release()
    assert frames == video.n_frames == 15 == len(video.labels)
    for x, y, w, h in video.rois:
        assert min(x, y) >= 0 and min(w, h) > 0 and x + w <= size[0] and y + h <= size[1]
    assert all(len(row) == len(video.rois) and set(row) <= set(RETAIL_CLASSES) for row in video.labels)
    assert video.labels[0] != video.labels[-1]  # something was taken or restocked
    meta = json.loads(video.path.with_suffix(".json").read_text())
    assert meta["labels"] == video.labels and [tuple(r) for r in meta["rois"]] == video.rois
    assert meta["classes"] == list(RETAIL_CLASSES) and meta["fps"] == 10
    # version 2: slot names as the example config writes them, and the slots the shopper hides in each frame
    assert meta["version"] == 2 and meta["slots"] == video.slot_names and meta["slots"][0] == "r1-1"
    assert len(set(meta["slots"])) == len(video.rois) and len(meta["occluded"]) == video.n_frames
    assert all(0 <= i < len(video.rois) for row in meta["occluded"] for i in row)


def test_security_video_opens_with_boxes(tmp_path):
    size = (320, 240)
    video = make_security_video(tmp_path / "street.mp4", seconds=2, fps=8, size=size, seed=1)
    cap = cv2.VideoCapture(str(video.path))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == video.n_frames == 16
    cap.release()
    assert len(video.boxes) == len(video.labels) == 16
    for boxes in video.boxes:
        for b in boxes:
            assert b.cls in ("person", "vehicle")
            assert 0 <= b.xyxy[0] < b.xyxy[2] <= size[0] and 0 <= b.xyxy[1] < b.xyxy[3] <= size[1]
    meta = json.loads(video.path.with_suffix(".json").read_text())
    assert meta["version"] == 2 and meta["ids"] == video.ids
    assert [len(i) for i in video.ids] == [len(b) for b in video.boxes]
    classes: dict[int, set[str]] = {}  # an id is one actor: always the same class
    for boxes, ids in zip(video.boxes, video.ids, strict=True):
        for b, i in zip(boxes, ids, strict=True):
            classes.setdefault(i, set()).add(b.cls)
    assert classes and all(len(c) == 1 for c in classes.values())


def test_video_rejects_bad_timing(tmp_path):
    with pytest.raises(EdgecamError):
        make_shelf_video(tmp_path / "v.mp4", seconds=0)
