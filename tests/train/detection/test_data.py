"""The torch detection dataset: shapes, dtypes, the collate layout, targets on the right pixels."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from edgecam.runtime.imagefolder import read_image
from edgecam.runtime.preprocess import PreprocessSpec, denormalize, preprocess
from edgecam.train.detection.augment import DetAugmentConfig, letterbox_boxes
from edgecam.train.detection.data import DetectionDataset, collate_detection
from edgecam.train.detection.datasets import load_yolo
from edgecam.train.detection.samples import DetDataset, DetSample
from edgecam.train.detection.trainer import WORKER_CONTEXT
from edgecam.train.synth import synth_detection

from .test_augment import assert_boxes_match_pixels, scene

SPEC = PreprocessSpec(96, 128, resize="letterbox")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> DetDataset:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synth_detection("security", out, 12, seed=1, imgsz=(160, 120))
    return load_yolo(out / "data.yaml", "train")


@pytest.mark.parametrize("aug", [None, DetAugmentConfig(), DetAugmentConfig(mosaic=0.0, degrees=10.0)])
def test_items_have_the_right_shapes_and_lie_inside_the_input(det, aug):
    ds = DetectionDataset(det, SPEC, aug, seed=0)
    assert len(ds) == len(det)
    for i in range(len(ds)):
        x, t, index = ds[i]
        assert index == i and x.dtype == torch.float32 and x.shape == (3, SPEC.height, SPEC.width)
        assert t.dtype == torch.float32 and t.ndim == 2 and t.shape[1] == 5
        assert torch.all(t[:, 1:] >= 0) and torch.all(t[:, [1, 3]] <= SPEC.width)
        assert torch.all(t[:, [2, 4]] <= SPEC.height)
        assert torch.all(t[:, 3] > t[:, 1]) and torch.all(t[:, 4] > t[:, 2])
        assert set(t[:, 0].tolist()) <= set(range(len(det.class_names)))


def test_without_augmentation_targets_are_the_letterboxed_ground_truth(det):
    ds = DetectionDataset(det, SPEC, None, seed=0)
    for i, s in enumerate(det.samples):
        x, t, _ = ds[i]
        expected, letterbox = preprocess(read_image(s.path), SPEC)
        assert np.array_equal(x.numpy(), expected)
        assert t[:, 0].tolist() == s.classes.tolist()
        np.testing.assert_allclose(t[:, 1:].numpy(), letterbox_boxes(s.xyxy, letterbox), atol=1e-4)


def test_collate_layout(det):
    ds = DetectionDataset(det, SPEC, DetAugmentConfig(), seed=0)
    items = [ds[i] for i in range(len(ds))]
    images, targets, indices = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=collate_detection)))
    assert images.shape == (len(ds), 3, SPEC.height, SPEC.width) and images.dtype == torch.float32
    assert targets.dtype == torch.float32 and targets.shape == (sum(len(t) for _, t, _ in items), 6)
    assert indices.tolist() == list(range(len(ds)))
    for b, (x, t, _) in enumerate(items):
        assert torch.equal(images[b], x)
        assert torch.equal(targets[targets[:, 0] == b][:, 1:], t)


def test_collate_of_background_only_batch():
    x = torch.zeros(3, 8, 8)
    images, targets, indices = collate_detection([(x, torch.zeros(0, 5), 4), (x, torch.zeros(0, 5), 9)])
    assert images.shape == (2, 3, 8, 8) and targets.shape == (0, 6) and indices.tolist() == [4, 9]


def test_epochs_reproducible_and_different(det):
    ds = DetectionDataset(det, SPEC, DetAugmentConfig(), seed=5)
    first = ds[0]
    ds.set_epoch(1)
    other = ds[0]
    ds.set_epoch(0)
    again = ds[0]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def check_persistent_workers(data_yaml: str) -> None:
    """Worker copies of the dataset must follow set_epoch/close_mosaic (shared memory, not plain attributes)."""
    det = load_yolo(data_yaml, "train")
    ds = DetectionDataset(det, SPEC, replace(DetAugmentConfig.off(), mosaic=1.0, flip=0.5), seed=3)
    dl = DataLoader(
        ds,
        batch_size=2,
        collate_fn=collate_detection,
        num_workers=1,
        persistent_workers=True,
        multiprocessing_context=WORKER_CONTEXT,
    )
    for epoch, closed in [(0, False), (1, False), (2, True)]:
        ds.set_epoch(epoch)
        ds.close_mosaic(closed)
        images, _, indices = next(iter(dl))
        assert torch.equal(images, torch.stack([ds[int(i)][0] for i in indices]))


def test_persistent_workers_see_set_epoch_and_close_mosaic(det):
    # In a fresh interpreter: after the export/runtime tests have loaded OpenVINO, NNCF and OpenCV threads into the
    # pytest process, starting a DataLoader worker there crashed the whole run (segfault); users train in a clean one.
    data_yaml = str(det.root / "data.yaml")
    code = f"from tests.train.detection.test_data import check_persistent_workers as c; c({data_yaml!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_close_mosaic_turns_it_off(det):
    ds = DetectionDataset(det, SPEC, replace(DetAugmentConfig.off(), mosaic=1.0), seed=0)
    plain = DetectionDataset(det, SPEC, None, seed=0)
    assert not torch.equal(ds[0][0], plain[0][0])  # a mosaic
    ds.close_mosaic()
    assert torch.equal(ds[0][0], plain[0][0]) and torch.equal(ds[0][1], plain[0][1])


def test_augmented_targets_sit_on_their_objects(tmp_path: Path):
    """End to end: coloured boxes through mosaic + affine + flip + letterbox land on their own pixels."""
    samples = []
    for k, (w, h) in enumerate([(200, 150), (120, 180), (160, 160), (180, 120)]):
        img, boxes, classes = scene(w, h, [(int(0.1 * w), int(0.15 * h), int(0.6 * w), int(0.7 * h))], first=k)
        path = tmp_path / f"{k}.png"
        cv2.imwrite(str(path), img)
        samples.append(DetSample(path, w, h, boxes, classes))
    det = DetDataset(samples, tuple("abcd"), tmp_path)
    spec = PreprocessSpec(112, 144, resize="letterbox", pad_value=114)
    aug = replace(DetAugmentConfig(), scale=(0.8, 1.2), hsv_h=0, hsv_s=0, hsv_v=0, blur=0)
    ds = DetectionDataset(det, spec, aug, seed=2)
    for epoch in range(4):
        ds.set_epoch(epoch)
        ds.close_mosaic(epoch >= 2)  # without mosaic every colour is unique: check against the whole image
        for i in range(len(ds)):
            x, t, _ = ds[i]
            img = denormalize(x.numpy(), spec)
            assert_boxes_match_pixels(img, t[:, 1:].numpy(), t[:, 0].long().numpy(), local=epoch < 2)
