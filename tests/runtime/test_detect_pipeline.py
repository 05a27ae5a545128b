"""A detect bundle through Model and `run`, on both backends: the constant tiny detector's two boxes come back
in original-frame pixels, in the JSON lines and drawn on the saved video."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.bundle import MANIFEST, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.pipeline import run
from edgecam.runtime.preprocess import resize_image
from edgecam.runtime.types import Frame
from tests.runtime.detect_fixtures import CLASS_NAMES, WANTED, build_tiny_detect_bundle

BACKENDS = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny_detect")


@pytest.fixture
def detect_copy(detect_bundle: Path, tmp_path: Path) -> Path:
    """A private copy whose manifest a test may change."""
    return Path(shutil.copytree(detect_bundle, tmp_path / "bundle"))


def edit_manifest(root: Path, **changes: object) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    manifest.update(changes)
    write_manifest(root, manifest)


def expected_boxes(model: Model, image: np.ndarray) -> np.ndarray:
    """WANTED's input-pixel boxes mapped into `image` with the letterbox `resize_image` used for it."""
    _, box = resize_image(image, model.spec)
    xyxy = np.array([b.xyxy for b in WANTED], np.float64)
    xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - box.pad_x) / box.scale_x
    xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - box.pad_y) / box.scale_y
    return xyxy


@pytest.mark.parametrize("backend", BACKENDS)
def test_detect_frame_maps_boxes_into_the_frame(detect_bundle, backend):
    model = Model(detect_bundle, backend=backend, threads=1)
    frame = Frame(np.zeros((120, 160, 3), np.uint8))
    dets = model.detect_frame(frame)
    np.testing.assert_allclose(dets.xyxy, expected_boxes(model, frame.image), atol=1e-2)
    np.testing.assert_allclose(dets.scores, [b.score for b in WANTED], rtol=1e-4)
    assert dets.class_ids.tolist() == [b.class_id for b in WANTED]
    assert {"preprocess", "infer", "postprocess"} <= set(model.times.summary())
    assert len(model.detect_frame(frame, conf=0.9)) == 1  # per-call threshold: only the 0.95 box is left


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_uses_each_images_own_letterbox(detect_bundle, backend):
    model = Model(detect_bundle, backend=backend, threads=1)
    images = [np.zeros((120, 160, 3), np.uint8), np.zeros((200, 100, 3), np.uint8)]  # landscape, portrait
    for image, dets in zip(images, model.detect(images), strict=True):
        expected = np.clip(expected_boxes(model, image), 0, [image.shape[1], image.shape[0]] * 2)
        np.testing.assert_allclose(dets.xyxy, expected, atol=1e-2)


def test_thresholds_come_from_the_manifest(detect_copy):
    edit_manifest(detect_copy, detect={"strides": [8, 16, 32], "conf": 0.9})
    model = Model(detect_copy, backend="onnxruntime", threads=1)
    assert model.detect_settings.conf == 0.9 and model.detect_settings.iou == 0.5
    assert model.detect_frame(Frame(np.zeros((64, 64, 3), np.uint8))).class_ids.tolist() == [0]
    assert Model(detect_copy, backend="onnxruntime", conf=0.1).detect_settings.conf == 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_writes_boxes_and_an_annotated_video(detect_bundle, synthetic_video, tmp_path, backend):
    out_video, out_jsonl = tmp_path / "det.mp4", tmp_path / "det.jsonl"
    summary = run(detect_bundle, str(synthetic_video.path), backend=backend, save_video=out_video, jsonl=out_jsonl)
    n = synthetic_video.n_frames
    assert summary.frames == n and summary.task == "detect"
    assert summary.label_counts == dict(Counter({CLASS_NAMES[b.class_id]: n for b in WANTED}))
    lines = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    expected = expected_boxes(Model(detect_bundle, backend=backend), synthetic_video.draw(0))
    assert len(lines) == n
    for line in lines:
        assert [r["label"] for r in line["results"]] == [CLASS_NAMES[b.class_id] for b in WANTED]
        np.testing.assert_allclose([r["xyxy"] for r in line["results"]], expected, atol=0.02)

    cap = cv2.VideoCapture(str(out_video))
    ok, drawn = cap.read()
    frames = 1 + sum(1 for _ in iter(lambda: cap.read()[0], False))
    cap.release()
    assert ok and frames == n and drawn.shape == (synthetic_video.height, synthetic_video.width, 3)
    x1, y1, x2, _ = (int(round(v)) for v in expected[1])
    edge = (slice(y1, y1 + 2), slice(x1 + 4, x2 - 4))  # the top edge of the car's box, on plain background
    source = synthetic_video.draw(0).astype(np.int16)
    assert np.abs(drawn[edge].astype(np.int16) - source[edge]).mean() > 40


def test_run_with_conf_override_finds_nothing(detect_bundle, synthetic_video, tmp_path):
    summary = run(detect_bundle, str(synthetic_video.path), jsonl=tmp_path / "none.jsonl", conf=0.99, max_frames=3)
    assert summary.frames == 3 and summary.label_counts == {}
    assert [json.loads(line)["results"] for line in (tmp_path / "none.jsonl").read_text().splitlines()] == [[]] * 3


# --- errors ------------------------------------------------------------------------------------------------


def test_roi_with_a_detector_is_an_error(detect_bundle, synthetic_video, tmp_path):
    with pytest.raises(EdgecamError, match="--roi is for classifiers"):
        run(detect_bundle, str(synthetic_video.path), rois=[(0, 0, 10, 10)], jsonl=tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def test_conf_with_a_classifier_is_an_error(tiny_bundle, synthetic_video):
    with pytest.raises(EdgecamError, match="--conf and --iou are for detectors"):
        run(tiny_bundle, str(synthetic_video.path), conf=0.5)


@pytest.mark.parametrize(
    ("detect", "message"),
    [
        (None, "'detect' entry"),
        ({"conf": 0.3}, "'detect' entry"),
        ({"strides": "eight"}, "malformed 'detect'"),
        ({"strides": [8, 0]}, "must be positive"),
        ({"strides": [8, 16, 48]}, "not a multiple of the largest stride 48"),
        ({"strides": [8], "conf": 2}, r"conf 2.0 and iou 0.5 must lie in \[0, 1\]"),
        ({"strides": [8], "max_det": 0}, "max_det 0"),
    ],
)
def test_bad_detect_entry_names_the_bundle(detect_copy, detect, message):
    edit_manifest(detect_copy, detect=detect)
    with pytest.raises(EdgecamError, match=message) as info:
        Model(detect_copy, backend="onnxruntime")
    assert info.value.path == str(detect_copy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strides_that_do_not_match_the_output_fail_at_load(detect_copy, backend):
    edit_manifest(detect_copy, detect={"strides": [8, 16]})
    with pytest.raises(EdgecamError, match=r"output shape \[1, 84, 6\], while the manifest expects \[1, 80, 6\]"):
        Model(detect_copy, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_names_that_do_not_match_the_output_fail_at_load(detect_copy, backend):
    edit_manifest(detect_copy, class_names=["person"])
    with pytest.raises(EdgecamError, match=r"expects \[1, 84, 5\] \(1 class names") as info:
        Model(detect_copy, backend=backend)
    assert info.value.path is not None and info.value.path.startswith(str(detect_copy))


def test_a_shared_engine_view_still_checks_each_output(detect_copy):
    """A view infers through its caller's function, unchecked at load: the per-frame check stays."""
    model = Model(detect_copy, backend="onnxruntime").view(lambda batch: np.zeros((len(batch), 84, 5), np.float32))
    with pytest.raises(EdgecamError, match="4 \\+ 2 classes"):
        model.detect_frame(Frame(np.zeros((64, 64, 3), np.uint8)))


def test_tasks_do_not_mix(detect_bundle, tiny_bundle):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(EdgecamError, match="not a classifier"):
        Model(detect_bundle, backend="onnxruntime").classify([image])
    with pytest.raises(EdgecamError, match="not a detector"):
        Model(tiny_bundle, backend="onnxruntime").detect([image])
