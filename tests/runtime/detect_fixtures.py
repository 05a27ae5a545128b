"""A tiny detection bundle built without torch: its `preds` output is a constant that encodes known boxes.

`encode_preds` writes raw detector outputs straight from the output contract (anchor order, log-distances in
stride units, class logits), independently of `edgecam.runtime.decode`, so tests can check the decoder against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.runtime.bundle import sha256_file, write_manifest
from edgecam.runtime.preprocess import PreprocessSpec

CLASS_NAMES = ("person", "car")
STRIDES = (8, 16, 32)
INPUT_SIZE = 64
BACKGROUND_LOGIT = -10.0


@dataclass(frozen=True)
class RawBox:
    """One box to encode: xyxy in model-input pixels, its class, its logit and the stride of its anchor."""

    xyxy: tuple[float, float, float, float]
    class_id: int
    logit: float
    stride: int

    @property
    def score(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit))


# The two boxes the tiny detector finds, a weaker near-duplicate of the first (NMS removes it) and a box below
# the default confidence of 0.25.
WANTED = (RawBox((8, 20, 28, 44), 0, 3.0, 8), RawBox((36, 12, 60, 40), 1, 2.0, 16))
DUPLICATE = RawBox((9, 21, 29, 45), 0, 0.5, 16)
WEAK = RawBox((0, 0, 30, 30), 1, -3.0, 32)


def anchor_index(height: int, width: int, strides: tuple[int, ...], stride: int, gx: int, gy: int) -> int:
    """Index of grid cell (gx, gy) of level `stride`: levels in ascending stride, row-major inside a level."""
    offset = 0
    for s in sorted(strides):
        if s == stride:
            return offset + gy * (width // s) + gx
        offset += (height // s) * (width // s)
    raise ValueError(f"stride {stride} not in {strides}")


def encode_preds(
    boxes: tuple[RawBox, ...] | list[RawBox], height: int, width: int, strides: tuple[int, ...], num_classes: int
) -> np.ndarray:
    """Raw (A, 4 + C) predictions holding `boxes`, each at the anchor of its stride nearest its centre."""
    total = sum((height // s) * (width // s) for s in strides)
    preds = np.zeros((total, 4 + num_classes), np.float32)
    preds[:, 4:] = BACKGROUND_LOGIT
    for box in boxes:
        x1, y1, x2, y2 = box.xyxy
        s = box.stride
        gx, gy = int((x1 + x2) / 2 // s), int((y1 + y2) / 2 // s)
        px, py = (gx + 0.5) * s, (gy + 0.5) * s
        dist = np.array([px - x1, py - y1, x2 - px, y2 - py], np.float64)
        if np.any(dist <= 0):
            raise ValueError(f"the anchor ({px}, {py}) lies outside {box.xyxy}")
        i = anchor_index(height, width, strides, s, gx, gy)
        preds[i, :4] = np.log(dist / s)
        preds[i, 4 + box.class_id] = box.logit
    return preds


def _file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def build_tiny_detect_bundle(root: Path, boxes: tuple[RawBox, ...] = (*WANTED, DUPLICATE, WEAK)) -> Path:
    """Write a detect bundle (ONNX + OpenVINO IR + edgecam.json): preds = constant + 0 * mean(images)."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    spec = PreprocessSpec.square(INPUT_SIZE, resize="letterbox")
    const = encode_preds(boxes, INPUT_SIZE, INPUT_SIZE, STRIDES, len(CLASS_NAMES))[None]
    anchors, channels = const.shape[1:]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "shape"], ["mean3"]),
            helper.make_node("Mul", ["mean3", "zero"], ["zeros"]),
            helper.make_node("Add", ["zeros", "boxes"], ["preds"]),  # broadcasts the constant to the batch
        ],
        "tiny_constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("preds", TensorProto.FLOAT, ["N", anchors, channels])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            numpy_helper.from_array(const, "boxes"),
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
        "task": "detect",
        "class_names": list(CLASS_NAMES),
        "preprocess": spec.to_dict(),
        "input": {"name": "images", "shape": [-1, 3, INPUT_SIZE, INPUT_SIZE]},
        "detect": {"strides": list(STRIDES), "conf": 0.25, "iou": 0.5, "max_det": 300},
        "variants": {
            "onnx-fp32": {
                "format": "onnx",
                "precision": "fp32",
                "file": "model.onnx",
                "files": {"model.onnx": _file_entry(onnx_path)},
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
