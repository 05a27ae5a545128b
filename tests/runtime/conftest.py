"""Shared runtime fixtures: a tiny classifier bundle built without torch, a synthetic video, an image folder.

The tiny classifier predicts the dominant colour: global average pool -> a 3x3 Gemm that maps each colour
channel of the tensor to the class of that colour. Expected labels in tests come from the colours drawn here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.bundle import sha256_file, write_manifest
from edgecam.runtime.preprocess import PreprocessSpec

CLASS_NAMES = ("blue", "green", "red")
COLORS_BGR = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}
CHANNEL_NAMES = {"r": "red", "g": "green", "b": "blue"}
INPUT_SIZE = 32


def solid(name: str, height: int = 48, width: int = 64) -> np.ndarray:
    """A BGR image of one pure colour."""
    return np.full((height, width, 3), COLORS_BGR[name], dtype=np.uint8)


def _file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def build_tiny_bundle(root: Path) -> Path:
    """Write a valid classify bundle (ONNX + OpenVINO IR + edgecam.json) with onnx.helper, no torch."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    spec = PreprocessSpec.square(INPUT_SIZE)
    # Tensor channel c holds colour spec.color[c]; class k reads the channel of its own colour.
    weights = np.zeros((len(CLASS_NAMES), 3), np.float32)
    for c, letter in enumerate(spec.color):
        weights[CLASS_NAMES.index(CHANNEL_NAMES[letter]), c] = 2.0
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
        ],
        "tiny_colour_classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASS_NAMES)])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.zeros(len(CLASS_NAMES), np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = root / "model.onnx"
    onnx.save(model, str(onnx_path))
    (root / "openvino").mkdir(exist_ok=True)
    xml = root / "openvino" / "model.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    manifest = {
        "schema_version": 1,
        "task": "classify",
        "class_names": list(CLASS_NAMES),
        "preprocess": spec.to_dict(),
        "input": {"name": "images", "shape": [-1, 3, INPUT_SIZE, INPUT_SIZE]},
        "variants": {
            "onnx-fp32": {
                "format": "onnx",
                "precision": "fp32",
                "file": "model.onnx",
                "files": {"model.onnx": _file_entry(onnx_path)},
                "metrics": {},
            },
            "openvino-fp32": {
                "format": "openvino",
                "precision": "fp32",
                "file": "openvino/model.xml",
                "files": {
                    "openvino/model.xml": _file_entry(xml),
                    "openvino/model.bin": _file_entry(xml.with_suffix(".bin")),
                },
            },
        },
        "default_variants": ["openvino-fp32", "onnx-fp32"],
    }
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="session")
def colours() -> dict[str, tuple[int, int, int]]:
    """Class name -> the BGR colour the tiny classifier labels with it, in class order."""
    return {name: COLORS_BGR[name] for name in CLASS_NAMES}


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@dataclass(frozen=True)
class SyntheticVideo:
    """A video whose every frame has a known dominant colour and two fixed coloured squares (the ROIs)."""

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    rois: dict[tuple[int, int, int, int], str]  # (x, y, w, h) -> colour name of that square

    def background(self, index: int) -> str:
        return CLASS_NAMES[index % len(CLASS_NAMES)]

    def draw(self, index: int) -> np.ndarray:
        image = solid(self.background(index), self.height, self.width)
        for (x, y, w, h), name in self.rois.items():
            image[y : y + h, x : x + w] = COLORS_BGR[name]
        return image


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    rois = {(8, 8, 48, 48): "red", (100, 60, 48, 48): "blue"}
    video = SyntheticVideo(tmp_path_factory.mktemp("video") / "colours.mp4", 20, 10.0, 160, 120, rois)
    writer = cv2.VideoWriter(str(video.path), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, (video.width, video.height))
    assert writer.isOpened()
    for i in range(video.n_frames):
        writer.write(video.draw(i))
    writer.release()
    return video


@dataclass(frozen=True)
class ImageFolder:
    path: Path
    labels: list[str]  # colour of each readable image, in name order
    corrupt: list[str]  # names of the unreadable images


@pytest.fixture
def image_folder(tmp_path: Path) -> ImageFolder:
    """Five solid-colour images, one corrupt .jpg between them and a non-image file that must be ignored."""
    root = tmp_path / "images"
    root.mkdir()
    labels = ["red", "green", "blue", "green", "red"]
    for i, name in enumerate(labels):
        cv2.imwrite(str(root / f"img_{i:02d}.png"), solid(name, 40 + i, 50))
    (root / "img_02b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return ImageFolder(root, labels, ["img_02b.jpg"])


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    """2 s of 160x120 at 10 FPS, a red box sliding over grey: what the stream server serves as a camera."""
    path = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(20):
        image = np.full((120, 160, 3), 90, np.uint8)
        image[40:70, 5 * i : 5 * i + 30] = (0, 0, 255)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto on loopback, not yet started (`broker.start()`); skipped without mosquitto, failed in CI."""
    import os

    from tests.runtime.test_mqtt import MOSQUITTO, Broker

    if MOSQUITTO is None:
        reason = "mosquitto is not installed (apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the MQTT tests")
        pytest.skip(reason)
    b = Broker(tmp_path)
    yield b
    b.stop()
