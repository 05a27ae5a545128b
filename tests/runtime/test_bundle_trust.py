"""A tampered bundle never runs as if it were intact: the manifest's own digest, paths that stay inside the
bundle, the sha256 of the files a model loads, class names that fit the model, bounded input sizes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecam.runtime.bundle import DIGEST_KEY, MANIFEST, load_bundle, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.pipeline import run
from edgecam.runtime.verify import verify_bundle
from tests.runtime.conftest import solid
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

BACKENDS = ("onnxruntime", "openvino")


def read(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def hand_edit(root: Path, change) -> None:
    """Edit edgecam.json as a person or a script would, without sealing it again."""
    manifest = read(root)
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))


def sealed_edit(root: Path, change) -> None:
    """Edit it and seal it again, as a buggy exporter would: what the digest cannot catch, later checks must."""
    manifest = read(root)
    change(manifest)
    write_manifest(root, manifest)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- the manifest's own digest
def test_write_manifest_seals_the_canonical_json(tiny_bundle):
    manifest = read(tiny_bundle)
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert manifest[DIGEST_KEY] == hashlib.sha256(canonical.encode()).hexdigest()
    assert load_bundle(tiny_bundle).sealed


def test_reformatting_keeps_the_seal(bundle_copy):
    """Indentation and key order are not content: a manifest pretty-printed again still loads."""
    manifest = read(bundle_copy)
    reordered = dict(reversed(list(manifest.items())))
    (bundle_copy / MANIFEST).write_text(json.dumps(reordered, indent=7))
    assert load_bundle(bundle_copy).sealed


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(class_names=m["class_names"][:1]),
        lambda m: m["preprocess"].update(mean=[0.4, 0.5, 0.5]),
        lambda m: m["variants"]["onnx-fp32"]["files"]["model.onnx"].update(sha256="0" * 64),
        lambda m: m.update({DIGEST_KEY: "0" * 64}),
        lambda m: m.update({DIGEST_KEY: 5}),
    ],
    ids=["class_names", "preprocess", "a file checksum", "the digest", "a digest that is no string"],
)
def test_a_hand_edited_manifest_is_refused(bundle_copy, change):
    hand_edit(bundle_copy, change)
    with pytest.raises(EdgecamError, match=f"{MANIFEST} was changed after export") as info:
        load_bundle(bundle_copy)
    assert info.value.path == str(bundle_copy / MANIFEST)
    assert "re-export" in info.value.fix and "whole" in info.value.fix
    with pytest.raises(EdgecamError, match="changed after export"):
        verify_bundle(bundle_copy)


def test_a_manifest_of_an_earlier_edgecam_runs_with_one_warning(bundle_copy, synthetic_video, capsys):
    hand_edit(bundle_copy, lambda m: m.pop(DIGEST_KEY))
    bundle = load_bundle(bundle_copy)
    assert not bundle.sealed
    for _ in range(2):
        Model(bundle_copy, backend="onnxruntime", threads=1)
    summary = run(bundle_copy, str(synthetic_video.path), backend="onnxruntime", max_frames=2)
    assert summary.frames == 2
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if DIGEST_KEY in ln]
    assert len(warnings) == 1 and str(bundle_copy / MANIFEST) in warnings[0]


def test_verify_notes_an_unsealed_manifest_without_failing(bundle_copy, tiny_bundle):
    hand_edit(bundle_copy, lambda m: m.pop(DIGEST_KEY))
    report = verify_bundle(bundle_copy, threads=1)
    assert report.passed, report.problems
    assert any(DIGEST_KEY in n for n in report.notes)
    assert not any(DIGEST_KEY in n for n in verify_bundle(tiny_bundle, threads=1).notes)


# ---------------------------------------------------------------- paths inside the bundle
def _variant_file(path: str):
    def change(m: dict) -> None:
        var = m["variants"]["onnx-fp32"]
        var["file"] = path
        var["files"] = {path: var["files"]["model.onnx"]}

    return change


@pytest.mark.parametrize(
    ("change", "where", "why"),
    [
        (_variant_file("../../../../etc/passwd"), "variants.onnx-fp32.file", "outside the bundle"),
        (_variant_file("/etc/passwd"), "variants.onnx-fp32.file", "absolute"),
        (_variant_file("openvino/../../model.onnx"), "variants.onnx-fp32.file", "outside the bundle"),
        (_variant_file(""), "variants.onnx-fp32.file", "empty"),
        (_variant_file("model\x00.onnx"), "variants.onnx-fp32.file", "NUL"),
        (
            lambda m: m["variants"]["openvino-fp32"]["files"].update({"../x.bin": {"sha256": "0"}}),
            "variants.openvino-fp32.files",
            "outside the bundle",
        ),
        (
            lambda m: m.update(golden={"frames": "../frames.npz", "outputs": {"onnx-fp32": "o.npy"}, "files": {}}),
            "golden.frames",
            "outside the bundle",
        ),
        (
            lambda m: m.update(golden={"frames": "f.npz", "outputs": {"onnx-fp32": "/tmp/o.npy"}, "files": {}}),
            "golden.outputs.onnx-fp32",
            "absolute",
        ),
    ],
)
def test_paths_must_stay_inside_the_bundle(bundle_copy, change, where, why):
    sealed_edit(bundle_copy, change)
    for check in (True, False):  # `edgecam verify` loads without the existence check: it must refuse as well
        with pytest.raises(EdgecamError, match=why) as info:
            load_bundle(bundle_copy, check=check)
        assert info.value.message.startswith(where) and info.value.path == str(bundle_copy / MANIFEST)


def test_a_symlink_out_of_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle_copy / "model.onnx", outside)
    os.symlink(outside, bundle_copy / "model.onnx")
    with pytest.raises(EdgecamError, match="variants.onnx-fp32.file: path 'model.onnx' leads outside"):
        load_bundle(bundle_copy)


def test_a_path_that_stays_inside_is_fine(bundle_copy):
    sealed_edit(bundle_copy, _variant_file("openvino/../model.onnx"))
    model = Model(bundle_copy, backend="onnxruntime", threads=1)
    assert model.classify([solid("red")])[0].label == "red"


# ---------------------------------------------------------------- the files a model loads
def _swap_weights(root: Path) -> None:
    """Replace model.onnx by a valid model of the same shapes whose classes read other colours."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(root / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "W":
            init.CopyFrom(numpy_helper.from_array(np.roll(numpy_helper.to_array(init), 1, axis=0), "W"))
    onnx.save(model, str(root / "model.onnx"))


@pytest.mark.parametrize(
    ("backend", "rel", "damage"),
    [
        ("onnxruntime", "model.onnx", _swap_weights),
        ("openvino", "openvino/model.bin", lambda root: flip_byte(root / "openvino" / "model.bin")),
    ],
)
def test_model_refuses_a_file_whose_sha256_differs(bundle_copy, backend, rel, damage):
    damage(bundle_copy)
    with pytest.raises(EdgecamError, match=f"{rel}: sha256 differs") as info:
        Model(bundle_copy, backend=backend, threads=1)
    assert info.value.path == str(bundle_copy / rel) and "re-export" in info.value.fix


def test_only_the_loaded_variant_is_hashed(bundle_copy):
    """A damaged OpenVINO file does not stop the ONNX variant (verify reports it; run uses what it loads)."""
    flip_byte(bundle_copy / "openvino" / "model.bin")
    assert Model(bundle_copy, backend="onnxruntime", threads=1).classify([solid("green")])[0].label == "green"


def test_a_model_file_without_a_checksum_is_refused(bundle_copy):
    sealed_edit(bundle_copy, lambda m: m["variants"]["onnx-fp32"].update(files={}))
    with pytest.raises(EdgecamError, match="model.onnx has no checksum"):
        Model(bundle_copy, backend="onnxruntime", threads=1)


# ---------------------------------------------------------------- class names against the model
@pytest.mark.parametrize("backend", BACKENDS)
def test_class_names_cut_to_one_fail_at_load(bundle_copy, backend):
    sealed_edit(bundle_copy, lambda m: m.update(class_names=["blue"]))
    with pytest.raises(EdgecamError, match="3 logits per image .* the manifest names 1 classes") as info:
        Model(bundle_copy, backend=backend, threads=1)
    assert (
        info.value.path is not None and info.value.path.startswith(str(bundle_copy)) and "re-export" in info.value.fix
    )


def test_run_with_class_names_cut_is_a_clear_error(bundle_copy, synthetic_video, tmp_path):
    sealed_edit(bundle_copy, lambda m: m.update(class_names=["blue"]))
    with pytest.raises(EdgecamError, match="manifest names 1 classes"):
        run(bundle_copy, str(synthetic_video.path), jsonl=tmp_path / "out.jsonl")


def test_verify_fails_when_class_names_do_not_fit(bundle_copy):
    sealed_edit(bundle_copy, lambda m: m.update(class_names=["blue", "green"]))
    report = verify_bundle(bundle_copy, threads=1)
    assert not report.passed
    assert report.problems and all("manifest names 2 classes" in p for p in report.problems), report.problems
    assert all("class_names" in p for p in report.problems)  # the fix says what to re-export


def test_verify_with_golden_frames_fails_when_class_names_do_not_fit(tmp_path):
    from tests.runtime.test_verify import add_golden, golden_images

    root = build_tiny_detect_bundle(tmp_path / "det")
    add_golden(root, golden_images(4))
    assert verify_bundle(root, backend="onnxruntime", threads=1).passed
    sealed_edit(root, lambda m: m.update(class_names=["person"]))
    report = verify_bundle(root, backend="onnxruntime", threads=1)
    assert not report.passed and len(report.problems) == 1
    assert re.search(r"expects \[\d+, 84, 5\]", report.problems[0]), report.problems


# ---------------------------------------------------------------- input sizes
@pytest.mark.parametrize(
    ("preprocess", "message"),
    [
        ({"height": 100000, "width": 100000}, "preprocess.height 100000 is too large"),
        ({"height": 32, "width": 4097}, "preprocess.width 4097 is too large"),
        ({"height": "32"}, "preprocess.height '32' is not an integer"),
        ({"height": 32.5}, "preprocess.height 32.5 is not an integer"),
        ({"mean": [0.5, "nan", 0.5]}, "three values each, finite"),
        ({"std": [0.25, float("nan"), 0.25]}, "three values each, finite"),
        ({"pad_value": 300}, "preprocess.pad_value 300"),
    ],
)
def test_preprocessing_out_of_bounds_is_a_clear_error(bundle_copy, preprocess, message):
    sealed_edit(bundle_copy, lambda m: m["preprocess"].update(preprocess))
    with pytest.raises(EdgecamError, match=message) as info:
        load_bundle(bundle_copy)
    assert info.value.path == str(bundle_copy / MANIFEST)


def test_the_largest_allowed_input_loads(bundle_copy):
    sealed_edit(bundle_copy, lambda m: m["preprocess"].update(height=4096, width=4096))
    assert load_bundle(bundle_copy).preprocess.input_shape == (3, 4096, 4096)


@pytest.mark.parametrize(
    "text",
    ['{"schema_version": ' + "1" * 5000 + "}", "[" * 100_000 + "]" * 100_000],
    ids=["an integer of 5000 digits", "nesting 100000 deep"],
)
def test_hostile_json_is_a_corrupt_manifest(bundle_copy, text):
    (bundle_copy / MANIFEST).write_text(text)
    with pytest.raises(EdgecamError, match="corrupt manifest"):
        load_bundle(bundle_copy)


def test_an_oversized_manifest_is_refused_unread(bundle_copy):
    with open(bundle_copy / MANIFEST, "r+b") as fh:
        fh.truncate(17 << 20)  # sparse: nothing is written, the size is what counts
    with pytest.raises(EdgecamError, match="bytes, more than"):
        load_bundle(bundle_copy)


def test_empty_class_names_are_refused(bundle_copy):
    sealed_edit(bundle_copy, lambda m: m.update(class_names=[]))
    with pytest.raises(EdgecamError, match="class_names is empty"):
        load_bundle(bundle_copy)


# ---------------------------------------------------------------- what the command line shows
@pytest.mark.parametrize(
    ("damage", "command", "expected"),
    [
        (lambda r: hand_edit(r, lambda m: m.update(class_names=["blue"])), "run", "was changed after export"),
        (lambda r: sealed_edit(r, _variant_file("../../../../etc/passwd")), "run", "leads outside the bundle"),
        (lambda r: sealed_edit(r, lambda m: m.update(class_names=["blue"])), "run", "manifest names 1 classes"),
        (lambda r: sealed_edit(r, lambda m: m.update(class_names=["blue"])), "verify", "manifest names 1 classes"),
        (lambda r: sealed_edit(r, lambda m: m["preprocess"].update(height=100000)), "run", "preprocess.height"),
    ],
)
def test_the_cli_gives_one_line_and_exit_2(bundle_copy, synthetic_video, damage, command, expected):
    import subprocess
    import sys

    damage(bundle_copy)
    args = [str(bundle_copy), "--source", str(synthetic_video.path)] if command == "run" else [str(bundle_copy)]
    result = subprocess.run(
        [sys.executable, "-m", "edgecam", command, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and expected in result.stderr, result.stderr
