"""The real-image benchmark sets: built offline from packaged photographs and handwriting, labels that fit."""

import cv2
import pytest

from edgecam.bench.real import SECTION, read_section, write_section
from edgecam.bench.realdata import (
    CLUTTER_PHOTOS,
    DET_SETS,
    HELDOUT_PHOTOS,
    TUNING_PHOTOS,
    build_classification_set,
    build_detection_set,
    load_glyphs,
    load_photo,
    split_glyphs,
)
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import load_splits
from edgecam.train.detection.datasets import load_detection_data


@pytest.mark.parametrize("name", list(DET_SETS))
def test_detection_sets_are_valid_yolo_with_boxes_around_the_ink(name, tmp_path):
    spec = DET_SETS[name]
    data = build_detection_set(name, tmp_path / name, n_train=6, n_val=3)
    train, val = load_detection_data(data, "train"), load_detection_data(data, "val")
    assert len(train.samples) == 6 and len(val.samples) == 3
    assert train.class_names == tuple(str(d) for d in range(10))
    for sample in train.samples + val.samples:
        img = cv2.imread(str(sample.path))
        h, w = img.shape[:2]
        assert 360 <= w <= 640 and 300 <= h <= 480
        assert 1 <= len(sample.classes) <= spec.per_image[1]
        heights = sample.xyxy[:, 3] - sample.xyxy[:, 1]
        assert heights.min() >= spec.size[0] - 3 and heights.max() <= spec.size[1] + 1, heights
        assert (sample.xyxy[:, :2] >= 0).all() and (sample.xyxy[:, 2] <= w).all() and (sample.xyxy[:, 3] <= h).all()


def test_the_same_seed_builds_the_same_set(tmp_path):
    a = build_detection_set("mnist-det", tmp_path / "a", n_train=2, n_val=1)
    b = build_detection_set("mnist-det", tmp_path / "b", n_train=2, n_val=1)
    for split in ("train", "val"):
        labels_a = sorted((a.parent / "labels" / split).iterdir())
        labels_b = sorted((b.parent / "labels" / split).iterdir())
        assert [p.read_text() for p in labels_a] == [p.read_text() for p in labels_b]


def test_glyph_splits_are_disjoint_and_stratified():
    _, labels = load_glyphs("optdigits")
    train, val = split_glyphs(labels, 0.2, seed=1)
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(labels)
    assert set(labels[val]) == set(range(10))


def test_held_out_sets_share_no_photograph_with_the_tuning_sets():
    assert not set(TUNING_PHOTOS) & set(HELDOUT_PHOTOS)
    assert not set(CLUTTER_PHOTOS) & (set(TUNING_PHOTOS) | set(HELDOUT_PHOTOS))
    for name in (*TUNING_PHOTOS, *HELDOUT_PHOTOS, *CLUTTER_PHOTOS):
        img = load_photo(name)
        assert img.ndim == 3 and min(img.shape[:2]) >= 128, name


def test_classification_set_is_an_image_folder(tmp_path):
    root = build_classification_set("mnist-cls", tmp_path / "cls", size=64, limit=3)
    train, val = load_splits(root, 0.2, 0)
    assert train.classes == tuple(str(d) for d in range(10))
    img = cv2.imread(str(next((root / "val").rglob("*.png"))))
    assert img.shape == (64, 64, 3)


def test_a_set_is_never_written_over_existing_files(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(EdgecamError, match="not empty"):
        build_detection_set("mnist-det", tmp_path / "x", n_train=1, n_val=1)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_the_real_image_section_replaces_only_itself(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Classifier\n\nold table\n\n" + SECTION + "\n\nfirst\n\n## Runtime\n\nrt\n")
    write_section(path, [SECTION, "", "second"])
    text = path.read_text()
    assert "first" not in text and "second" in text
    assert "old table" in text and "## Runtime\n\nrt" in text
    assert read_section(path) == [SECTION, "", "second"]
    assert text.count(SECTION) == 1
