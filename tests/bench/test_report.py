"""The BENCHMARKS.md table's labels: how a pruned model and an engine's actual precision are named."""

import pytest

from edgecam.bench.report import engine_precision, pruned_label


@pytest.mark.parametrize(
    "source, gflops, label",
    [
        ({}, 1.0, "full"),
        ({"pruned": {"channel_ratio": 0.25, "base": {"gflops": 2.0}}}, 1.0, "pruned (-50% GFLOPs, 25% ch.)"),
        ({"pruned": {"channel_ratio": 0.5}}, 1.0, "pruned (50% ch.)"),
    ],
)
def test_pruned_label(source, gflops, label):
    assert pruned_label({"source": source, "model": {"gflops": gflops}}) == label


def test_engine_precision_shows_int8_convolutions_where_the_hint_says_f32():
    int8_ir = {"engine_precision": "f32", "conv_precisions": {"f32": 2, "u8": 18}}
    assert engine_precision(int8_ir, "int8") == "int8 (18/20 convs), f32 rest"
    assert engine_precision({"engine_precision": "bf16", "conv_precisions": {"bf16": 20}}, "bf16") == "bf16"
    assert engine_precision({"backend": "onnxruntime"}, "fp32") == "fp32"  # ONNX Runtime reports no hint
