"""Bundle reading: the error table, checksum verification and variant selection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecam.runtime.bundle import MANIFEST, SCHEMA_VERSION, load_bundle, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError


def edit_manifest(root: Path, change) -> None:
    """Change the manifest as an exporter would (sealed anew), so the checks behind the digest are reached."""
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    write_manifest(root, manifest)


def _missing_dir(root: Path) -> Path:
    shutil.rmtree(root)
    return root


def _no_manifest(root: Path) -> Path:
    (root / MANIFEST).unlink()
    return root


def _corrupt_json(root: Path) -> Path:
    (root / MANIFEST).write_text('{"schema_version": 1, "task": ')
    return root


def _not_an_object(root: Path) -> Path:
    (root / MANIFEST).write_text("[1, 2]")
    return root


def _edit(change):
    def apply(root: Path) -> Path:
        edit_manifest(root, change)
        return root

    return apply


def _missing_file(root: Path) -> Path:
    (root / "openvino" / "model.bin").unlink()
    return root


@pytest.mark.parametrize(
    ("damage", "message", "names_path"),
    [
        (_missing_dir, "bundle not found", True),
        (_no_manifest, "no edgecam.json", True),
        (_corrupt_json, "corrupt manifest", True),
        (_not_an_object, "not a JSON object", True),
        (_edit(lambda m: m.pop("class_names")), "lacks \\['class_names'\\]", True),
        (_edit(lambda m: m.pop("variants")), "lacks \\['variants'\\]", True),
        (_edit(lambda m: m.update(task="segment")), "unknown task 'segment'", True),
        (_edit(lambda m: m.update(schema_version=SCHEMA_VERSION + 1)), "newer than this edgecam", True),
        (_edit(lambda m: m.update(variants={})), "no model variants", True),
        (_edit(lambda m: m["variants"]["onnx-fp32"].pop("file")), "lacks \\['file'\\]", True),
        (_edit(lambda m: m["preprocess"].update(color="yuv")), "colour order", True),
        (_edit(lambda m: m.update(variants=[1, 2])), "malformed manifest", True),
        (_missing_file, "model.bin is missing", True),
    ],
)
def test_load_bundle_errors(bundle_copy, damage, message, names_path):
    root = damage(bundle_copy)
    with pytest.raises(EdgecamError, match=message) as info:
        load_bundle(root)
    if names_path:
        assert info.value.path is not None and str(bundle_copy) in info.value.path


def test_load_bundle_reads_the_manifest(tiny_bundle):
    bundle = load_bundle(tiny_bundle / MANIFEST)  # the manifest path works as well as the folder
    manifest = json.loads((tiny_bundle / MANIFEST).read_text())
    assert bundle.root == tiny_bundle
    assert bundle.task == manifest["task"]
    assert bundle.class_names == tuple(manifest["class_names"])
    assert bundle.preprocess.to_dict() == manifest["preprocess"]
    assert set(bundle.variants) == set(manifest["variants"])


def test_missing_file_allowed_without_check(bundle_copy):
    _missing_file(bundle_copy)
    assert load_bundle(bundle_copy, check=False).verify_checksums() == ["openvino/model.bin: missing"]


def test_verify_checksums_detects_a_tampered_file(bundle_copy):
    bundle = load_bundle(bundle_copy)
    assert bundle.verify_checksums() == []
    path = bundle_copy / "model.onnx"
    before = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert sha256_file(path) != before
    problems = bundle.verify_checksums()
    assert len(problems) == 1 and problems[0].startswith("model.onnx:") and "sha256" in problems[0]


@pytest.mark.parametrize(
    ("name", "formats", "expected"),
    [
        (None, None, "openvino-fp32"),  # first of default_variants
        (None, ("onnx",), "onnx-fp32"),
        (None, ("openvino", "onnx"), "openvino-fp32"),
        ("onnx-fp32", ("openvino", "onnx"), "onnx-fp32"),
        ("openvino-fp32", None, "openvino-fp32"),
    ],
)
def test_variant_selection(tiny_bundle, name, formats, expected):
    bundle = load_bundle(tiny_bundle)
    chosen = bundle.variant(name, formats)
    assert chosen.name == expected
    assert bundle.path_of(chosen) == tiny_bundle / chosen.file and bundle.path_of(chosen).is_file()


@pytest.mark.parametrize(
    ("name", "formats", "message"),
    [
        ("tflite-int8", None, "no variant 'tflite-int8'"),
        ("openvino-fp32", ("onnx",), "cannot run"),
        (None, ("tflite",), "no variant this backend can run"),
    ],
)
def test_variant_selection_errors(tiny_bundle, name, formats, message):
    with pytest.raises(EdgecamError, match=message):
        load_bundle(tiny_bundle).variant(name, formats)


def test_default_order_falls_back_to_listed_variants(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.pop("default_variants"))
    assert load_bundle(bundle_copy).variant(None, ("onnx",)).name == "onnx-fp32"


def test_variant_round_trip(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST).read_text())
    for name, variant in load_bundle(tiny_bundle).variants.items():
        assert {k: v for k, v in variant.to_dict().items() if k != "metrics"} == {
            k: v for k, v in manifest["variants"][name].items() if k != "metrics"
        }
