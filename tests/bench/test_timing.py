"""Timing a plain model file in its own process, and the reference virtualenv's failure path."""

import pytest
import torch

from edgecam.bench import reference_env
from edgecam.bench.timing import time_model_file
from edgecam.export.onnx_export import export_onnx
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.registry import create_model


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    spec = PreprocessSpec.square(32)
    model = create_model("test_tiny", num_classes=3).eval()
    return export_onnx(model, spec, tmp_path_factory.mktemp("onnx") / "m.onnx", {}, ["logits"])


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_model_file_is_timed_in_a_child_process(tiny_onnx, engine):
    result = time_model_file(tiny_onnx, engine, runs=5, warmup=1, threads=1, throughput_seconds=0.3)
    assert result["input_shape"] == [1, 3, 32, 32]  # the dynamic batch is timed at 1
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    if engine == "openvino":
        assert result["fps_throughput"] > 0


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EdgecamError, match="timing failed"):
        time_model_file(bad, "onnxruntime", runs=2, warmup=0)


def test_a_reference_env_that_cannot_be_made_says_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the venv folder should go")
    assert reference_env.ensure_reference_env(blocker / "venv") is None
    assert reference_env.last_error and "cannot create" in reference_env.last_error
