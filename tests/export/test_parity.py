"""One template, one subclass per runtime: the exported model agrees with PyTorch on the same frames."""

import numpy as np
import pytest
import torch

from edgecam.export.parity import compare_logits
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.imagefolder import load_images, scan
from edgecam.runtime.preprocess import preprocess_batch
from edgecam.train.checkpoint import load_checkpoint


class ParityTemplate:
    backend: str
    variant: str

    @pytest.fixture(scope="class")
    def frames(self, color_data, tiny_checkpoint):
        _, meta = load_checkpoint(tiny_checkpoint)
        images, _, _ = load_images(scan(color_data / "val", tuple(meta["class_names"])))
        batch, _ = preprocess_batch(images, meta["preprocess_spec"])
        return batch

    def candidate(self, bundle_path, frames):
        bundle = load_bundle(bundle_path)
        var = bundle.variant(self.variant)
        engine = create_backend(self.backend)
        engine.load(bundle.path_of(var), precision=var.precision)
        return var, engine.infer(frames)[0]

    def test_agrees_with_pytorch(self, exported_bundle, tiny_checkpoint, frames):
        model, _ = load_checkpoint(tiny_checkpoint)
        with torch.no_grad():
            reference = model(torch.from_numpy(frames)).numpy()
        var, logits = self.candidate(exported_bundle, frames)
        result = compare_logits(reference, logits, variant=self.variant, backend=self.backend, precision=var.precision)
        assert result.passed, result.describe()
        assert result.top1_agreement >= 0.995
        assert result.frames == len(frames)

    def test_batch_size_does_not_change_the_answer(self, exported_bundle, frames):
        _, together = self.candidate(exported_bundle, frames)
        _, alone = self.candidate(exported_bundle, frames[:1])
        np.testing.assert_allclose(alone[0], together[0], atol=1e-4)


class TestOnnxRuntimeFP32(ParityTemplate):
    backend, variant = "onnxruntime", "onnx-fp32"


class TestOpenVinoFP32(ParityTemplate):
    backend, variant = "openvino", "openvino-fp32"


class TestOpenVinoFP16(ParityTemplate):
    backend, variant = "openvino", "openvino-fp16"


class TestOpenVinoReadsOnnx(ParityTemplate):
    backend, variant = "openvino", "onnx-fp32"


@pytest.mark.parametrize(
    ("shift", "agreement_ok", "prob_ok"),
    [(0.0, True, True), (1e-6, True, True), (0.5, True, False)],
)
def test_compare_logits_thresholds(shift, agreement_ok, prob_ok):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 3)).astype(np.float32) * 4
    cand = ref.copy()
    cand[:, 0] += shift
    result = compare_logits(ref, cand, variant="v", backend="b", precision="fp32")
    assert (result.max_prob_diff <= result.prob_tolerance) == prob_ok
    assert (result.top1_agreement >= 0.995) == agreement_ok or shift > 0.1


def test_disagreeing_top1_fails():
    ref = np.array([[2.0, 0.0, 0.0]] * 10, np.float32)
    cand = ref.copy()
    cand[0] = [0.0, 2.0, 0.0]
    result = compare_logits(ref, cand, variant="v", backend="b", precision="fp32")
    assert result.top1_agreement == pytest.approx(0.9) and not result.passed


class TestOpenCvFP32(ParityTemplate):
    """OpenCV DNN: a third engine reading the same ONNX file (new graph engine on OpenCV 5, else classic)."""

    backend, variant = "opencv", "onnx-fp32"
