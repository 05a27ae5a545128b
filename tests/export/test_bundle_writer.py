import json

import pytest

from edgecam.export.bundle_writer import export_bundle
from edgecam.export.onnx_export import read_metadata
from edgecam.export.openvino_convert import read_rt_info
from edgecam.runtime.bundle import METADATA_KEYS, load_bundle, sha256_file
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.evaluate import evaluate_bundle
from edgecam.runtime.golden import TOLERANCE
from edgecam.train.evaluate import evaluate_checkpoint


def test_manifest_describes_every_variant(exported_bundle):
    bundle = load_bundle(exported_bundle)
    m = bundle.manifest
    assert m["task"] == "classify" and m["class_names"] == ["blue", "green", "red"]
    assert m["input"]["shape"] == [-1, 3, 32, 32]
    assert set(bundle.variants) == {"onnx-fp32", "openvino-fp32", "openvino-fp16"}
    assert m["model"]["gflops"] > 0 and m["model"]["params_m"] > 0
    for var in bundle.variants.values():
        for rel, info in var.files.items():
            assert sha256_file(exported_bundle / rel) == info["sha256"]
            assert (exported_bundle / rel).stat().st_size == info["size_bytes"]
        assert var.metrics["parity"]["passed"]
    assert bundle.verify_checksums() == []
    assert not list(exported_bundle.glob("*.data")), "the ONNX file must be self-contained"


def test_lone_model_files_carry_the_metadata(exported_bundle):
    m = json.loads((exported_bundle / "edgecam.json").read_text())
    onnx_meta = read_metadata(exported_bundle / "model.onnx")
    ov_meta = read_rt_info(exported_bundle / "openvino-fp32" / "model.xml", METADATA_KEYS)
    for meta in (onnx_meta, ov_meta):
        assert json.loads(meta["class_names"]) == m["class_names"]
        assert json.loads(meta["preprocess"]) == m["preprocess"]
        assert meta["task"] == m["task"]


def test_val_is_the_same_for_checkpoint_and_every_variant(exported_bundle, tiny_checkpoint, color_data):
    ref = evaluate_checkpoint(tiny_checkpoint, color_data)
    assert ref["n"] == 36
    for backend, variant in [
        ("onnxruntime", "onnx-fp32"),
        ("openvino", "openvino-fp32"),
        ("openvino", "openvino-fp16"),
    ]:
        report = evaluate_bundle(exported_bundle, color_data, backend=backend, variant=variant)
        assert report["confusion_matrix"] == ref["confusion_matrix"], (backend, variant)
        stored = load_bundle(exported_bundle).variants[variant].metrics["top1"]
        assert stored == pytest.approx(report["top1"])


def test_existing_output_is_not_overwritten(tiny_checkpoint, color_data, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("precious")
    with pytest.raises(EdgecamError, match="not empty"):
        export_bundle(tiny_checkpoint, out, data=color_data)
    assert keep.read_text() == "precious"


def test_parity_failure_fails_loudly_and_writes_no_bundle(tiny_checkpoint, color_data, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCE["classify"]["fp32"], "parity_max_prob_diff", -1.0)  # nothing can pass
    out = tmp_path / "b"
    with pytest.raises(EdgecamError, match="disagrees with PyTorch") as info:
        export_bundle(tiny_checkpoint, out, data=color_data, variants=("onnx-fp32",))
    assert "onnx-fp32 on onnxruntime" in str(info.value) and "top-1 agreement" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(b"garbage"), "not a readable edgecam checkpoint"),
        (lambda p: None, "checkpoint not found"),
    ],
)
def test_bad_checkpoints(tmp_path, make, match):
    ckpt = tmp_path / "x.pt"
    make(ckpt)
    with pytest.raises(EdgecamError, match=match):
        export_bundle(ckpt, tmp_path / "out")


def test_unknown_variant(tiny_checkpoint, tmp_path):
    with pytest.raises(EdgecamError, match="unknown variant"):
        export_bundle(tiny_checkpoint, tmp_path / "out", variants=("tflite",))


def test_export_stores_golden_frames_that_verify(exported_bundle):
    from edgecam.runtime.verify import verify_bundle

    manifest = load_bundle(exported_bundle).manifest
    assert manifest["golden"]["count"] > 0
    assert set(manifest["golden"]["outputs"]) == set(manifest["variants"])
    report = verify_bundle(exported_bundle)
    assert report.passed, report.format()
    assert len(report.runs) >= len(manifest["variants"])
