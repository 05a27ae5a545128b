"""INT8 export: both INT8 variants load and run, the ONNX file is QDQ u8s8, a genuine accuracy collapse is caught."""

import json
import shutil

import cv2
import numpy as np
import onnx
import openvino as ov
import pytest
import torch

from edgecam.cli import build_parser
from edgecam.export import quantize as q
from edgecam.export.bundle_writer import export_bundle
from edgecam.export.onnx_export import export_onnx, read_metadata
from edgecam.export.openvino_convert import read_rt_info
from edgecam.runtime.bundle import METADATA_KEYS, load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.evaluate import evaluate_bundle
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.registry import create_model

CALIB = 16


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, tiny_checkpoint, color_data):
    out = tmp_path_factory.mktemp("int8") / "tiny"
    export_bundle(tiny_checkpoint, out, data=color_data, int8=True, calib=CALIB)
    return out


@pytest.fixture(scope="module")
def constant_calibration_data(tmp_path_factory, color_data):
    """The real validation images, but a training split of flat mid-grey frames: calibration learns useless ranges
    (INT8 top-1 falls to chance). Black frames are not enough for every tiny checkpoint: one kept top-1 1.0."""
    root = tmp_path_factory.mktemp("flat")
    shutil.copytree(color_data / "val", root / "val")
    for name in ("blue", "green", "red"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / "train" / name / f"{i}.png"), np.full((40, 40, 3), 128, np.uint8))
    return root


def test_int8_variants_are_recorded_with_their_recipe_and_gate(int8_bundle, color_data):
    bundle = load_bundle(int8_bundle)
    assert {"openvino-int8", "onnx-int8", "openvino-bf16"} <= set(bundle.variants)
    assert bundle.verify_checksums() == []
    reference_top1 = bundle.manifest["parity"]["pytorch"]["top1"]
    for name in ("openvino-int8", "onnx-int8"):
        var = bundle.variants[name]
        assert var.precision == "int8"
        assert var.extra["calibration"] == {"frames": CALIB, "source": str(color_data), "split": "train"}
        assert var.extra["quantization"]["ignored_scope"] == []  # a classifier has no detection head
        gate = var.extra["gate"]
        assert gate["passed"] and gate["metric"] == "top1" and gate["before"] == pytest.approx(reference_top1)
        assert gate["after"] == pytest.approx(var.metrics["top1"])
        assert "passed" in var.metrics["parity"]  # the tensor comparison is kept, for information
        assert var.extra["engine"]["backend"] == var.extra["backend"]
    assert bundle.variants["openvino-int8"].extra["quantization"]["preset"] == q.OV_PRESET
    assert bundle.variants["openvino-int8"].extra["engine"]["engine_precision"]


def test_engine_reports_the_precision_its_convolutions_really_run_at(int8_bundle):
    """The hint reads f32 for an INT8 IR; the compiled graph shows INT8 kernels, and none in the FP32 variant."""
    bundle = load_bundle(int8_bundle)
    int8 = bundle.variants["openvino-int8"].extra["engine"]["conv_precisions"]
    fp32 = bundle.variants["openvino-fp32"].extra["engine"]["conv_precisions"]
    assert int8.get("u8", 0) + int8.get("i8", 0) > 0
    assert set(fp32) == {"f32"} and sum(fp32.values()) == sum(int8.values())


def test_bf16_variant_is_the_fp32_ir_under_another_hint(int8_bundle):
    bundle = load_bundle(int8_bundle)
    bf16, fp32 = bundle.variants["openvino-bf16"], bundle.variants["openvino-fp32"]
    assert bf16.file == fp32.file and bf16.files == fp32.files and bf16.precision == "bf16"
    assert bf16.extra["gate"]["passed"] and "gate" not in fp32.extra  # bf16 answers to the accuracy gate
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert "bf" in bf16.extra["engine"]["engine_precision"].lower()
        assert fp32.extra["engine"]["engine_precision"] == "f32"


@pytest.mark.parametrize(("backend", "variant"), [("openvino", "openvino-int8"), ("onnxruntime", "onnx-int8")])
def test_int8_files_run_on_their_backends(int8_bundle, color_data, backend, variant):
    report = evaluate_bundle(int8_bundle, color_data, backend=backend, variant=variant)
    assert report["n"] == 36
    assert report["top1"] == pytest.approx(load_bundle(int8_bundle).variants[variant].metrics["top1"])


def test_onnx_int8_is_qdq_with_uint8_activations_and_per_channel_int8_weights(int8_bundle):
    path = int8_bundle / "model-int8.onnx"
    assert q.onnx_qdq_types(path) == {"activations": {"uint8"}, "weights": {"int8"}}
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    init = {i.name: i for i in proto.graph.initializer}
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init]
    conv_scales = [init[n.input[1]] for n in weight_dq if len(init[n.input[0]].dims) == 4]
    assert conv_scales and all(len(s.dims) == 1 and s.dims[0] > 1 for s in conv_scales)  # one scale per channel
    assert read_metadata(path) == read_metadata(int8_bundle / "model.onnx")


def test_openvino_int8_ir_is_quantized_and_self_describing(int8_bundle):
    xml = int8_bundle / "openvino-int8" / "model.xml"
    model = ov.Core().read_model(str(xml))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
    assert q.ov_float_ops(model) == []  # every conv and the classifier layer run in INT8
    assert read_rt_info(xml, METADATA_KEYS) == read_rt_info(int8_bundle / "openvino-fp32" / "model.xml", METADATA_KEYS)


def test_collapsed_int8_fails_the_export_with_the_numbers(tiny_checkpoint, constant_calibration_data, tmp_path):
    out = tmp_path / "b"
    with pytest.raises(EdgecamError, match="accuracy gate failed") as info:
        export_bundle(tiny_checkpoint, out, data=constant_calibration_data, variants=("onnx-fp32",), int8=True, calib=9)
    message = str(info.value)
    assert "openvino-int8: top1 " in message and "onnx-int8: top1 " in message and "allowed 0.5" in message
    assert "--allow-drop" in message
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_allow_drop_writes_the_bundle_and_records_the_failed_gate(
    tiny_checkpoint, constant_calibration_data, tmp_path, capsys
):
    out = tmp_path / "b"
    manifest = export_bundle(
        tiny_checkpoint,
        out,
        data=constant_calibration_data,
        variants=("onnx-fp32",),
        int8=True,
        calib=9,
        allow_drop=True,
    )
    assert capsys.readouterr().out == ""  # quantizer progress bars stay off stdout (`--json`)
    gate = load_bundle(out).variants["openvino-int8"].extra["gate"]
    assert gate == manifest["variants"]["openvino-int8"]["gate"]
    assert not gate["passed"] and gate["accepted_by_allow_drop"] and gate["drop"] > 0.5
    assert manifest["default_variants"] == ["onnx-fp32"]  # a failed INT8 variant is never picked by default


def test_max_drop_returns_the_sensitive_layers_to_float(tiny_checkpoint, constant_calibration_data, tmp_path):
    manifest = export_bundle(
        tiny_checkpoint, tmp_path / "b", data=constant_calibration_data, variants=(), calib=9, max_drop=0.5
    )
    ov_int8, onnx_int8 = manifest["variants"]["openvino-int8"], manifest["variants"]["onnx-int8"]
    reverted = ov_int8["quantization"]["reverted_layers"]
    assert reverted and ov_int8["quantization"]["max_drop_points"] == 0.5
    assert ov_int8["gate"]["passed"] and ov_int8["gate"]["drop"] <= 0.5
    assert onnx_int8["quantization"]["reverted_layers"] == [name.split("/")[0] for name in reverted]
    assert set(onnx_int8["quantization"]["reverted_layers"]) <= set(onnx_int8["quantization"]["ignored_scope"])


def test_detector_heads_are_found_in_both_graphs_and_kept_float(tmp_path):
    torch.manual_seed(0)
    model = create_model("test_det_tiny", num_classes=3).eval()
    spec = PreprocessSpec.square(64, resize="letterbox")
    path = export_onnx(model, spec, tmp_path / "det.onnx", {"task": "detect"}, ["preds"])
    proto = onnx.load(str(path))
    heads = q.onnx_head_nodes(proto)
    weights = {n.name: n.input[1] for n in proto.graph.node if len(n.input) > 1}
    assert sorted(weights[h].rsplit(".", 2)[-2] for h in heads) == ["cls"] * 3 + ["reg"] * 3
    ir = ov.convert_model(str(path))
    ov_heads = q.ov_head_ops(ir)
    assert len(ov_heads) == 6 and q.onnx_names_for(ov_heads, proto) == (heads, [])
    calib = q.CalibrationSet(spec, [], "random", None, random_count=4)
    quantized, info = q.quantize_openvino(ir, calib, ov_heads)
    assert q.ov_float_ops(quantized) == sorted(ov_heads) and info["float_layers"] == sorted(ov_heads)


def test_calibration_frames_come_from_the_training_split(color_data):
    spec = PreprocessSpec.square(32)
    calib = q.load_calibration("classify", spec, ("blue", "green", "red"), color_data, 500)
    assert len(calib) == 120 and calib.split == "train"  # every readable training image; the corrupt one skipped
    assert all("train" in p.parts and p.name != "corrupt.png" for p in calib.paths)
    assert calib.frame(0).shape == (1, 3, 32, 32) and calib.frame(0).dtype == np.float32
    again = q.load_calibration("classify", spec, ("blue", "green", "red"), color_data, 10)
    assert again.paths == q.load_calibration("classify", spec, ("blue", "green", "red"), color_data, 10).paths
    noise = q.load_calibration("classify", spec, ("blue", "green", "red"), None, 5)
    assert noise.describe() == {"frames": 5, "source": "random", "split": None}
    with pytest.raises(EdgecamError, match="at least 1"):
        q.load_calibration("classify", spec, ("blue",), color_data, 0)


@pytest.mark.parametrize("max_drop", [-0.1, 100.0])
def test_max_drop_out_of_range_is_refused_before_any_work(tiny_checkpoint, tmp_path, max_drop):
    with pytest.raises(EdgecamError, match="in points"):
        export_bundle(tiny_checkpoint, tmp_path / "b", max_drop=max_drop)
    assert not (tmp_path / "b").exists()


def test_export_command_takes_the_int8_flags():
    args = build_parser().parse_args(
        ["export", "ck.pt", "--out", "b", "--int8", "--calib", "8", "--max-drop", "0.5", "--allow-drop"]
    )
    assert (args.int8, args.calib, args.max_drop, args.allow_drop) == (True, 8, 0.5, True)
    defaults = build_parser().parse_args(["export", "ck.pt", "--out", "b"])
    assert (defaults.int8, defaults.calib, defaults.max_drop, defaults.allow_drop) == (False, 300, None, False)


def test_quantize_command_writes_only_the_int8_variants_asked_for_with_their_gates(
    tiny_checkpoint, color_data, tmp_path, capsys
):
    from edgecam.cli import main

    out = tmp_path / "q"
    args = ["quantize", str(tiny_checkpoint), "--out", str(out), "--data", str(color_data)]
    assert main([*args, "--engine", "openvino", "--calib", "8", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert set(manifest["variants"]) == {"onnx-fp32", "openvino-int8"}
    gate = manifest["variants"]["openvino-int8"]["gate"]
    assert gate["metric"] == "top1" and gate["passed"]
    assert load_bundle(out).verify_checksums() == []
    assert main([*args, "--engine", "onnxruntime", "--calib", "8", "--json"]) == 2  # the folder exists: no --force
    assert "--force" in capsys.readouterr().err
