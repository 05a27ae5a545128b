"""Detection parity: one template, a subclass per runtime, comparing decoded boxes with PyTorch's."""

import numpy as np
import pytest
import torch

from edgecam.export.bundle_writer import export_bundle
from edgecam.export.det_parity import compare_detections
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.decode import decode_detections
from edgecam.runtime.preprocess import PreprocessSpec, preprocess_batch
from edgecam.runtime.types import Detections
from edgecam.train.checkpoint import load_checkpoint
from edgecam.train.config import load_config
from edgecam.train.detection.datasets import load_detection_data
from edgecam.train.detection.trainer import train_detector
from edgecam.train.detection.validate import load_val_images

LOW_CONF = 0.003  # a two-epoch tiny detector scores low: compare its many weak boxes, not the few above 0.25


@pytest.fixture(scope="module")
def det_setup(tmp_path_factory):
    from edgecam.train.synth import synth_detection

    root = tmp_path_factory.mktemp("det")
    synth_detection("security", root / "data", 10, seed=3, imgsz=(256, 192))
    cfg = load_config(
        None,
        dict(
            task="detect",
            data=str(root / "data" / "data.yaml"),
            out=str(root / "run"),
            model="test_det_tiny",
            imgsz=96,
            epochs=2,
            batch=4,
            progress=False,
        ),
    )
    best = train_detector(cfg).best
    export_bundle(best, root / "bundle")
    det = load_detection_data(root / "data" / "data.yaml", "val")
    images = load_val_images(det) * 3
    return best, root / "bundle", images


def decode_all(raw, boxes, images, strides, hw):
    return [
        decode_detections(r, strides, hw, conf=LOW_CONF, letterbox=lb, orig_size=(im.shape[1], im.shape[0]))
        for r, lb, im in zip(raw, boxes, images, strict=True)
    ]


class DetParityTemplate:
    backend: str
    variant: str

    def test_decoded_boxes_agree_with_pytorch(self, det_setup):
        ckpt, bundle_path, images = det_setup
        model, meta = load_checkpoint(ckpt)
        spec, strides = meta["preprocess_spec"], meta["detect"]["strides"]
        batch, boxes = preprocess_batch(images, spec)
        with torch.no_grad():
            reference = model(torch.from_numpy(batch)).numpy()
        bundle = load_bundle(bundle_path)
        var = bundle.variant(self.variant)
        engine = create_backend(self.backend)
        engine.load(bundle.path_of(var), precision=var.precision)
        raw = engine.infer(batch)[0]
        hw = (spec.height, spec.width)
        ref_dets = decode_all(reference, boxes, images, strides, hw)
        cand_dets = decode_all(raw, boxes, images, strides, hw)
        assert sum(len(d) for d in ref_dets) > 0, "the comparison needs boxes"
        result = compare_detections(
            ref_dets, cand_dets, variant=self.variant, backend=self.backend, precision=var.precision, conf=LOW_CONF * 2
        )
        assert result.boxes > 10, result.describe()
        assert result.passed, result.describe()


class TestOnnxRuntimeDetections(DetParityTemplate):
    backend, variant = "onnxruntime", "onnx-fp32"


class TestOpenVinoFP32Detections(DetParityTemplate):
    backend, variant = "openvino", "openvino-fp32"


class TestOpenVinoFP16Detections(DetParityTemplate):
    backend, variant = "openvino", "openvino-fp16"


def _dets(rows):
    rows = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(int))


@pytest.mark.parametrize(
    ("ref", "cand", "passed"),
    [
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.9, 0]], True),
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10.2, 0.895, 0]], True),  # IoU 0.98, score off by 0.005
        ([[0, 0, 10, 10, 0.9, 0]], [], False),  # a box went missing
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.9, 1]], False),  # same place, other class
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 12, 0.9, 0]], False),  # IoU 0.83 < 0.95
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.8, 0]], False),  # score differs by 0.1
        ([[0, 0, 10, 10, 0.251, 0]], [[0, 0, 10, 10, 0.249, 0]], True),  # either side of the threshold: no flicker
        # boxes clipped to one rectangle (a weak model's whole-frame boxes): ties in IoU are settled by score
        (
            [[0, 0, 96, 96, 0.9, 0], [0, 0, 96, 96, 0.3, 0], [0, 0, 96, 96, 0.6, 0]],
            [[0, 0, 96, 96, 0.30001, 0], [0, 0, 96, 96, 0.59999, 0], [0, 0, 96, 96, 0.9, 0]],
            True,
        ),
        # ...but a score that really moved still fails when its box is tied with others
        ([[0, 0, 96, 96, 0.9, 0], [0, 0, 96, 96, 0.3, 0]], [[0, 0, 96, 96, 0.9, 0], [0, 0, 96, 96, 0.5, 0]], False),
    ],
)
def test_compare_detections_table(ref, cand, passed):
    result = compare_detections([_dets(ref)], [_dets(cand)], variant="v", backend="b", precision="fp32", conf=0.25)
    assert result.passed == passed, result.describe()


class TestOpenCvDetections(DetParityTemplate):
    """OpenCV DNN reading the detector's ONNX file (opset 18, dynamic batch)."""

    backend, variant = "opencv", "onnx-fp32"


def test_a_model_whose_boxes_collapse_onto_one_rectangle_passes_parity(tmp_path):
    """Every anchor predicts the whole frame with its own score: PyTorch and ONNX Runtime agree, so parity passes
    although each box has many same-rectangle ties on the other side."""
    from edgecam.export.onnx_export import export_onnx
    from edgecam.train.registry import create_model

    torch.manual_seed(0)
    model = create_model("test_det_tiny", num_classes=2).eval()
    for head in model.heads:
        torch.nn.init.zeros_(head.reg.weight)
        torch.nn.init.constant_(head.reg.bias, 8.0)  # log-distances at the clip: every box covers the frame
        torch.nn.init.normal_(head.cls.weight, 0, 0.5)
        torch.nn.init.constant_(head.cls.bias, 0.0)
    images = [np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8) for i in range(4)]
    spec = PreprocessSpec.square(96, resize="letterbox")
    batch, boxes = preprocess_batch(images, spec)
    with torch.no_grad():
        reference = model(torch.from_numpy(batch)).numpy()
    onnx_path = export_onnx(model, spec, tmp_path / "model.onnx", {}, ["preds"])
    engine = create_backend("onnxruntime")
    engine.load(onnx_path)
    raw = engine.infer(batch)[0]
    ref_dets = decode_all(reference, boxes, images, list(model.strides), (96, 96))
    cand_dets = decode_all(raw, boxes, images, list(model.strides), (96, 96))
    whole = ref_dets[0].xyxy
    assert len(whole) >= 3 and np.allclose(whole, [0, 0, 96, 96]), "the model must collapse its boxes"
    result = compare_detections(ref_dets, cand_dets, variant="v", backend="onnxruntime", precision="fp32", conf=0.25)
    assert result.boxes >= 3 and result.passed, result.describe()
