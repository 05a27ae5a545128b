"""A model that outputs NaN or inf (trained to NaN, a damaged export whose checksums were updated) never writes
NaN into JSON: a classifier's frame fails and is counted, a detector loses the non-finite anchors, counted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgecam.runtime.bundle import MANIFEST, load_bundle, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.golden import compare_classify, default_tolerance
from edgecam.runtime.model import Model
from edgecam.runtime.pipeline import run
from edgecam.runtime.sinks.jsonl import JsonlSink
from edgecam.runtime.types import Classification, Detections, Frame
from edgecam.runtime.verify import verify_bundle
from tests.runtime.conftest import solid
from tests.runtime.detect_fixtures import (
    CLASS_NAMES,
    INPUT_SIZE,
    STRIDES,
    WANTED,
    anchor_index,
    build_tiny_detect_bundle,
)

BACKENDS = ("onnxruntime", "openvino")


def strict_lines(path: Path) -> list[dict]:
    """Every line as JSON that has no NaN / Infinity (what a strict reader such as a browser's JSON.parse wants)."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-JSON constant {name}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def retrain(root: Path, name: str, change) -> None:
    """Change one initializer of model.onnx, convert the OpenVINO IR again and re-seal every checksum: the bundle
    is intact as a file set, its model is what is broken (checksums cannot catch a model trained to NaN)."""
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    model = onnx.load(str(root / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init).copy()), name))
    onnx.save(model, str(root / "model.onnx"))
    xml = root / "openvino" / "model.xml"
    ov.save_model(ov.convert_model(str(root / "model.onnx")), str(xml), compress_to_fp16=False)
    manifest = json.loads((root / MANIFEST).read_text())
    for var in manifest["variants"].values():
        for rel, info in var["files"].items():
            info.update(sha256=sha256_file(root / rel), size_bytes=(root / rel).stat().st_size)
    write_manifest(root, manifest)


def nan_weights(w: np.ndarray) -> np.ndarray:
    w[:] = np.nan
    return w


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_classifier_with_nan_weights_writes_no_nan_and_counts_every_frame(
    bundle_copy, synthetic_video, tmp_path, backend
):
    retrain(bundle_copy, "W", nan_weights)
    assert (
        load_bundle(bundle_copy).verify_checksums() == []
    )  # the files are as the manifest says: only the model is bad
    out = tmp_path / "out.jsonl"
    summary = run(bundle_copy, str(synthetic_video.path), backend=backend, jsonl=out)
    n = synthetic_video.n_frames
    assert strict_lines(out) == []  # no line has a score to give
    assert summary.nonfinite == n and summary.inference_errors == n and summary.frames == 0
    assert "NaN / inf" in summary.format_table()
    # a run in which no frame could be inferred did not do its job: `edgecam run` exits 1 with this line
    assert summary.problems == [f"every inference failed ({n} frames, {n} with NaN / inf outputs)"]


def test_a_classifier_with_inf_logits_fails_the_frame_not_the_run(bundle_copy):
    retrain(bundle_copy, "B", lambda b: np.array([0.0, np.inf, 0.0], np.float32))
    model = Model(bundle_copy, backend="onnxruntime", threads=1)
    with pytest.raises(EdgecamError, match="NaN or inf"):
        model.classify([solid("red")])
    assert model.nonfinite == 1


def _broken_detector(root: Path) -> None:
    """The car's anchor has NaN box distances and a background anchor an inf person logit."""
    car = WANTED[1]
    x1, y1, x2, y2 = car.xyxy
    cell = (int((x1 + x2) / 2 // car.stride), int((y1 + y2) / 2 // car.stride))
    car_row = anchor_index(INPUT_SIZE, INPUT_SIZE, STRIDES, car.stride, *cell)
    background = anchor_index(INPUT_SIZE, INPUT_SIZE, STRIDES, 32, 1, 1)

    def change(preds: np.ndarray) -> np.ndarray:
        preds[0, car_row, :4] = np.nan
        preds[0, background, 4] = np.inf
        return preds

    retrain(root, "boxes", change)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_detector_drops_non_finite_anchors_and_counts_the_frames(tmp_path, synthetic_video, backend):
    root = build_tiny_detect_bundle(tmp_path / "det")
    _broken_detector(root)
    out = tmp_path / "det.jsonl"
    summary = run(root, str(synthetic_video.path), backend=backend, jsonl=out)
    n = synthetic_video.n_frames
    lines = strict_lines(out)
    assert len(lines) == n and summary.frames == n
    assert all([r["label"] for r in line["results"]] == [CLASS_NAMES[WANTED[0].class_id]] for line in lines)
    assert all(math.isfinite(r["score"]) and r["score"] < 0.99 for line in lines for r in line["results"])
    assert summary.nonfinite == n and summary.inference_errors == 0


def test_jsonl_sink_refuses_nan_and_keeps_writing(tmp_path):
    path = tmp_path / "out.jsonl"
    frame = Frame(solid("red"))
    with JsonlSink(path, CLASS_NAMES) as sink:
        sink.write(frame, [Detections(np.array([[1, 2, 3, 4]], np.float32), [np.nan], [0])])
        sink.write(frame, [Classification(np.array([np.inf, 0.0, 0.0]), ("a", "b", "c"))])
        sink.write(frame, [Detections(np.array([[1, 2, 3, 4]], np.float32), [0.5], [1])])
    lines = strict_lines(path)
    assert sink.rejected == 2 and sink.lines == 1 and len(lines) == 1
    assert lines[0]["results"][0][0]["label"] == CLASS_NAMES[1]


def test_verify_fails_a_model_that_outputs_nan_without_golden_frames(bundle_copy):
    assert verify_bundle(bundle_copy, threads=1).passed
    retrain(bundle_copy, "W", nan_weights)
    report = verify_bundle(bundle_copy, threads=1)
    assert set(report.files.values()) == {"ok"} and not report.passed
    assert len(report.problems) == 4, report.problems  # onnx-fp32 on three engines, openvino-fp32 on OpenVINO
    assert all("NaN or inf" in p and "re-export a good checkpoint" in p for p in report.problems)


def test_verify_fails_a_model_that_outputs_nan_on_its_golden_frames(tmp_path):
    from tests.runtime.conftest import build_tiny_bundle
    from tests.runtime.test_verify import add_golden, golden_images

    root = build_tiny_bundle(tmp_path / "tiny")
    add_golden(root, golden_images())
    retrain(root, "W", nan_weights)
    report = verify_bundle(root, backend="onnxruntime", threads=1)
    assert len(report.problems) == 1 and "NaN or inf" in report.problems[0], report.problems


def test_a_nan_output_never_agrees_with_its_reference():
    """Golden frames that all show class 0: argmax of NaN is 0 too, so only the probabilities can tell."""
    reference = np.array([[3.0, 0.0, 0.0]] * 4, np.float32)
    result = compare_classify(reference, np.full_like(reference, np.nan), default_tolerance("classify", "fp32"))
    assert not result.passed and "max |Δ prob|" in result.problems[0]


def test_the_count_is_a_prometheus_counter():
    from edgecam.runtime.telemetry import Telemetry

    telemetry = Telemetry(device="box1")
    telemetry.record("cam", {"nonfinite": 3})
    telemetry.record("cam", {"nonfinite": 5})
    assert 'edgecam_nonfinite_outputs_total{camera="cam",device="box1"} 5.0' in telemetry.exposition().decode()
