"""OpenCV DNN reads the bundle's ONNX file and agrees with ONNX Runtime: a third, independent consumer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecam.runtime.backends import backend_names, create_backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.preprocess import preprocess_batch
from edgecam.runtime.types import Frame
from tests.runtime.detect_fixtures import WANTED, build_tiny_detect_bundle


@pytest.fixture(scope="module")
def tiny_detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("det") / "det")


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (30 + 7 * i, 50, 3), dtype=np.uint8) for i in range(n)]


def outputs(bundle_path: Path, backend: str, batch: np.ndarray) -> np.ndarray:
    bundle = load_bundle(bundle_path)
    engine = create_backend(backend)
    engine.load(bundle.path_of(bundle.variant("onnx-fp32")), threads=1)
    return engine.infer(batch)[0]


def test_registered_for_onnx_only():
    assert "opencv" in backend_names()
    assert create_backend("opencv").formats == ("onnx",)


@pytest.mark.parametrize("which", ["classify", "detect"])
@pytest.mark.parametrize("n", [1, 5])
def test_agrees_with_onnxruntime(tiny_bundle, tiny_detect_bundle, which, n):
    path = tiny_bundle if which == "classify" else tiny_detect_bundle
    batch, _ = preprocess_batch(frames(n), load_bundle(path).preprocess)
    got, want = outputs(path, "opencv", batch), outputs(path, "onnxruntime", batch)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_model_classifies_and_detects_with_opencv(tiny_bundle, tiny_detect_bundle, colours):
    model = Model(tiny_bundle, backend="opencv", threads=1)
    assert model.variant.name == "onnx-fp32"
    labels = [model.classify_frame(Frame(np.full((48, 64, 3), bgr, np.uint8)))[0].label for bgr in colours.values()]
    assert labels == list(colours)
    dets = Model(tiny_detect_bundle, backend="opencv", threads=1).detect([np.zeros((64, 64, 3), np.uint8)])[0]
    np.testing.assert_allclose(dets.xyxy, [b.xyxy for b in WANTED], atol=1e-3)
    info = model.engine.info()
    assert info["backend"] == "opencv" and info["version"]


def test_refuses_an_openvino_variant(tiny_bundle):
    with pytest.raises(EdgecamError, match="which this backend cannot run"):
        Model(tiny_bundle, backend="opencv", variant="openvino-fp32")


@pytest.mark.parametrize(
    ("content", "device", "message"),
    [
        (b"not an onnx file", "CPU", "OpenCV .* DNN cannot read the model: Failed to parse ONNX model"),
        (None, "CPU", "cannot read the model"),
        (b"", "GPU", "CPU only"),
    ],
)
def test_load_errors_name_the_file_and_the_fix(tmp_path, content, device, message):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgecamError, match=message) as info:
        create_backend("opencv").load(path, device=device)
    if device == "CPU":
        assert info.value.path == str(path) and "onnxruntime" in (info.value.fix or "")


def test_an_unconnected_output_is_an_error_not_none(tiny_bundle, tmp_path):
    """OpenCV returns None for an output no node produces (seen with a byte flipped in a name)."""
    import onnx

    model = onnx.load(str(tiny_bundle / "model.onnx"))
    model.graph.node[-1].output[0] = "other"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    engine = create_backend("opencv")
    engine.load(tmp_path / "broken.onnx")
    with pytest.raises(EdgecamError, match=r"no output \['logits'\]"):
        engine.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_a_qdq_int8_model_runs_on_the_classic_engine(tiny_bundle, tmp_path):
    """OpenCV 5.0's new engine cannot read QDQ graphs; the backend falls back to the classic one, which can."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    batch, _ = preprocess_batch(frames(4), load_bundle(tiny_bundle).preprocess)

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter({"images": batch[i : i + 1]} for i in range(len(batch)))

        def get_next(self) -> dict | None:
            return next(self.rows, None)

    int8 = tmp_path / "int8.onnx"
    quantize_static(
        str(tiny_bundle / "model.onnx"),
        str(int8),
        Calibration(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    engine = create_backend("opencv")
    engine.load(int8, threads=1, precision="int8")
    reference = create_backend("onnxruntime")
    reference.load(int8, threads=1)
    np.testing.assert_allclose(engine.infer(batch)[0], reference.infer(batch)[0], atol=1e-4)
