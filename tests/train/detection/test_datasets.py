"""YOLO and COCO loading: valid data, every kind of broken label, background images, and the hard errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.train.detection.datasets import load_coco, load_detection_data, load_yolo, yolo_label_path
from edgecam.train.synth import synth_detection

W, H = 40, 30
GOOD = "0 0.5 0.5 0.5 0.4"


def write_yolo(root: Path, labels: dict[str, str | None], names=("a", "b"), yaml_text: str | None = None) -> Path:
    """A hand-made YOLO split `train`: one WxH image per stem; a None label means no label file."""
    for stem, text in labels.items():
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / "train" / f"{stem}.png"), np.full((H, W, 3), 90, np.uint8))
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    if yaml_text is None:
        yaml_text = f"train: images/train\nval: images/train\nnames: [{', '.join(names)}]\n"
    (root / "data.yaml").write_text(yaml_text)
    return root / "data.yaml"


def yolo_to_xyxy(line: str, w: int, h: int) -> list[float]:
    _, cx, cy, bw, bh = (float(v) for v in line.split())
    return [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    return out, synth_detection("security", out, 10, seed=3, imgsz=(96, 72))


def test_synth_dataset_loads_with_the_right_counts_and_boxes(synth):
    out, info = synth
    total = 0
    for split in ("train", "val"):
        det = load_yolo(out / "data.yaml", split)
        assert len(det) == info[split] and det.class_names == tuple(info["names"]) and not det.problems
        for s in det.samples:
            assert (s.width, s.height) == (96, 72)
            lines = [ln for ln in yolo_label_path(s.path).read_text().splitlines() if ln.strip()]
            assert s.classes.tolist() == [int(ln.split()[0]) for ln in lines]
            expected = np.asarray([yolo_to_xyxy(ln, 96, 72) for ln in lines], np.float32).reshape(-1, 4)
            np.testing.assert_allclose(s.xyxy, np.clip(expected, 0, [96, 72, 96, 72]), atol=1e-3)
            total += len(lines)
    assert total == info["boxes"]


@pytest.mark.parametrize(
    "line, reason",
    [
        ("0 0.5 0.5 0.2", "expected 5 values"),
        ("0 0.5 0.5 0.2 0.2 0.1", "expected 5 values"),
        ("0 0.5 abc 0.2 0.2", "non-numeric"),
        ("0 0.5 nan 0.2 0.2", "non-finite"),
        ("2 0.5 0.5 0.2 0.2", "out of range"),
        ("-1 0.5 0.5 0.2 0.2", "out of range"),
        ("0.5 0.5 0.5 0.2 0.2", "not an integer"),
        ("0 1.2 0.5 0.2 0.2", "outside [0, 1]"),
        ("0 0.95 0.5 0.2 0.2", "outside [0, 1]"),
        ("1 0.5 -0.01 0.2 0.01", "outside [0, 1]"),
        ("0 0.5 0.5 0 0.2", "zero or negative size"),
        ("0 0.5 0.5 0.2 -0.1", "zero or negative size"),
    ],
)
def test_bad_label_line_is_skipped_and_reported_with_file_and_line(tmp_path, capsys, line, reason):
    yaml_path = write_yolo(tmp_path, {"img": f"{GOOD}\n\n{line}\n"})
    det = load_yolo(yaml_path, "train")
    assert len(det) == 1 and len(det.samples[0].classes) == 1  # the good line survives
    label = tmp_path / "labels" / "train" / "img.txt"
    assert len(det.problems) == 1 and det.problems[0].startswith(f"{label}:3: ")
    assert reason in det.problems[0]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 1" in err[0] and f"{label}:3" in err[0]


def test_coordinates_within_tolerance_are_clipped_not_rejected(tmp_path):
    det = load_yolo(write_yolo(tmp_path, {"img": "1 0.5 0.5 1.0008 0.5\n"}), "train")
    assert not det.problems
    x1, _, x2, _ = det.samples[0].xyxy[0]
    assert (x1, x2) == (0.0, W)


def test_background_images_and_unreadable_images(tmp_path, capsys):
    yaml_path = write_yolo(tmp_path, {"a": GOOD, "empty": "", "nolabel": None, "broken": GOOD})
    (tmp_path / "images" / "train" / "broken.png").write_bytes(b"not a png")
    det = load_yolo(yaml_path, "train")
    counts = {s.path.stem: len(s.classes) for s in det.samples}
    assert counts == {"a": 1, "empty": 0, "nolabel": 0}
    assert len(det.problems) == 1 and "broken.png" in det.problems[0]
    assert "skipped 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "labels, yaml_text, message",
    [
        ({"a": None, "b": ""}, None, "no valid labels"),
        ({"a": "5 0.5 0.5 0.1 0.1"}, None, "no valid labels"),
        ({"a": GOOD}, "train: images/train\nnc: 2\n", "no class names"),
        ({"a": GOOD}, "train: images/train\nnames: {0: a, 2: b}\n", "not 0..n-1"),
        ({"a": GOOD}, "train: images/train\nnc: 3\nnames: [a, b]\n", "nc: 3 but 2 names"),
        ({"a": GOOD}, "names: [a, b]\n", "no 'train' entry"),
        ({"a": GOOD}, "train: images/nowhere\nnames: [a]\n", "split not found"),
        ({"a": GOOD}, "train: [images/train\n", "malformed YAML"),
    ],
)
def test_unusable_dataset_is_an_error_naming_the_file(tmp_path, labels, yaml_text, message):
    yaml_path = write_yolo(tmp_path, labels, yaml_text=yaml_text)
    with pytest.raises(EdgecamError, match=message) as info:
        load_yolo(yaml_path, "train")
    assert info.value.path == str(yaml_path) and info.value.fix


def test_missing_yaml_is_an_error(tmp_path):
    with pytest.raises(EdgecamError, match="not found") as info:
        load_yolo(tmp_path / "data.yaml", "val")
    assert info.value.path == str(tmp_path / "data.yaml")


def test_names_as_dict_relative_path_and_image_list(tmp_path):
    write_yolo(tmp_path / "ds", {"a": "1 0.5 0.5 0.2 0.2", "b": GOOD})
    (tmp_path / "ds" / "list.txt").write_text("./images/train/b.png\n\nimages/train/a.png\n")
    yaml_text = "path: ds\ntrain: list.txt\nval: images/train\nnames: {1: second, 0: first}\n"
    (tmp_path / "data.yaml").write_text(yaml_text)
    det = load_yolo(tmp_path / "data.yaml", "train")
    assert det.class_names == ("first", "second") and det.root == tmp_path / "ds"
    assert [s.path.stem for s in det.samples] == ["b", "a"]
    assert [s.classes.tolist() for s in det.samples] == [[0], [1]]


@pytest.mark.parametrize(
    "image, label",
    [
        ("/d/images/train/a.jpg", "/d/labels/train/a.txt"),
        ("/d/images/x/images/a.png", "/d/images/x/labels/a.txt"),
        ("/d/pictures/a.jpeg", "/d/pictures/a.txt"),
    ],
)
def test_label_path_rule(image, label):
    assert yolo_label_path(Path(image)) == Path(label)


def coco_from_yolo(det, root: Path, cat_ids: list[int]) -> dict:
    """COCO dict for a YOLO split, with non-contiguous, shuffled category ids and one crowd box per image."""
    images, anns = [], []
    for i, s in enumerate(det.samples):
        images.append({"id": 100 + i, "file_name": str(s.path.relative_to(root)), "width": s.width, "height": s.height})
        for (x1, y1, x2, y2), c in zip(s.xyxy.tolist(), s.classes.tolist(), strict=True):
            bbox = [x1, y1, x2 - x1, y2 - y1]
            anns.append({"id": len(anns), "image_id": 100 + i, "category_id": cat_ids[c], "bbox": bbox, "iscrowd": 0})
        crowd = [0, 0, s.width, s.height]
        anns.append({"id": len(anns), "image_id": 100 + i, "category_id": cat_ids[0], "bbox": crowd, "iscrowd": 1})
    cats = [{"id": cid, "name": name} for cid, name in zip(cat_ids, det.class_names, strict=True)][::-1]
    return {"images": images, "annotations": anns, "categories": cats}


def test_coco_round_trip_matches_yolo(synth, tmp_path):
    out, _ = synth
    det = load_yolo(out / "data.yaml", "train")
    cat_ids = [7 + 5 * k for k in range(len(det.class_names))]
    (out / "train.json").write_text(json.dumps(coco_from_yolo(det, out, cat_ids)))
    coco = load_detection_data(out / "train.json")
    assert coco.class_names == det.class_names and not coco.problems
    assert [s.path for s in coco.samples] == [s.path for s in det.samples]
    for a, b in zip(coco.samples, det.samples, strict=True):
        assert a.classes.tolist() == b.classes.tolist()  # crowd boxes skipped, ids mapped back
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    (out / "train.json").unlink()


@pytest.mark.parametrize(
    "ann, reason",
    [
        ({"bbox": [1, 2, 3]}, "bbox must be"),
        ({"bbox": ["a", 2, 3, 4]}, "non-numeric"),
        ({"bbox": [1, 2, 0, 4]}, "zero or negative size"),
        ({"bbox": [-10, 2, 5, 4]}, "outside"),
        ({"bbox": [30, 2, 20, 4]}, "outside"),
        ({"category_id": 99}, "unknown category"),
        ({"image_id": 42}, "unknown image id"),
    ],
)
def test_coco_bad_annotation_is_reported(tmp_path, ann, reason):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((H, W, 3), np.uint8))
    good = {"id": 1, "image_id": 5, "category_id": 3, "bbox": [2, 3, 10, 8]}
    data = {
        "images": [{"id": 5, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [good, {**good, "id": 2, **ann}],
        "categories": [{"id": 3, "name": "thing"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    det = load_detection_data(path)
    assert len(det.samples) == 1 and det.samples[0].xyxy.tolist() == [[2, 3, 12, 11]]
    assert len(det.problems) == 1 and det.problems[0].startswith(f"{path}: annotation id 2: ")
    assert reason in det.problems[0]


def test_coco_errors(tmp_path):
    with pytest.raises(EdgecamError, match="not found"):
        load_coco(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EdgecamError, match="malformed JSON"):
        load_coco(tmp_path / "bad.json")
    (tmp_path / "nocat.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(EdgecamError, match="categories"):
        load_coco(tmp_path / "nocat.json")


@pytest.mark.parametrize("target", ["folder", "yaml", "other"])
def test_dispatch(tmp_path, target):
    yaml_path = write_yolo(tmp_path, {"a": GOOD})
    path = {"folder": tmp_path, "yaml": yaml_path, "other": tmp_path / "images"}[target]
    if target == "other":
        with pytest.raises(EdgecamError, match="not a detection dataset"):
            load_detection_data(path, "train")
    else:
        assert len(load_detection_data(path, "train")) == 1


def test_coco_problems_are_reported_once_when_loaded_as_train_and_val(tmp_path, capsys):
    """A COCO file is one split: training loads it as "train" and as "val", and must warn about it once."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((H, W, 3), np.uint8))
    good = {"id": 1, "image_id": 5, "category_id": 3, "bbox": [2, 3, 10, 8]}
    data = {
        "images": [{"id": 5, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [good, {**good, "id": 2, "bbox": [1, 2, 0, 4]}],
        "categories": [{"id": 3, "name": "thing"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    train, val = load_detection_data(path, "train"), load_detection_data(path, "val")
    assert train.problems == val.problems and len(train.problems) == 1  # still recorded on every load
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 1 bad label(s)/image(s)" in warnings[0]
