"""Property tests: whatever a manifest holds and whatever a detector outputs, the runtime gives a result or an
`EdgecamError`, never another exception (a traceback on the device, or a crash in a camera thread)."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecam.runtime.bundle import MANIFEST, load_bundle, write_manifest
from edgecam.runtime.decode import decode_detections_counted
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.manifest import parse_manifest
from edgecam.runtime.model import detect_settings, output_problem
from edgecam.runtime.preprocess import PreprocessSpec, resize_image
from edgecam.runtime.types import Detections

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)


@pytest.fixture(scope="module")
def workdir(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A copy of the tiny bundle whose manifest each example overwrites, and the intact manifest."""
    root = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("props") / "bundle"))
    return root, json.loads((root / MANIFEST).read_text())


def exercise(root: Path) -> None:
    """Load, and use what the runtime reads from a loaded bundle without running a model."""
    for check in (False, True):
        try:
            bundle = load_bundle(root, check=check)
        except EdgecamError:
            continue
        spec = bundle.preprocess
        assert isinstance(spec, PreprocessSpec) and 8 <= spec.height <= 4096 and 8 <= spec.width <= 4096
        assert all(math.isfinite(v) for v in spec.mean + spec.std) and 0 <= spec.pad_value <= 255
        assert isinstance(bundle.class_names, tuple) and bundle.class_names
        bundle.variant(None)
        bundle.verify_checksums()
        if bundle.task == "detect":
            detect_settings(bundle)
        output_problem(bundle, (1, len(bundle.class_names)), 1)


@SETTINGS
@given(document=json_values)
def test_any_json_document_is_a_bundle_or_an_edgecam_error(workdir, document):
    root, _ = workdir
    (root / MANIFEST).write_text(json.dumps(document))
    with contextlib.suppress(EdgecamError):
        parse_manifest(document)
    with contextlib.suppress(EdgecamError):
        exercise(root)


# Where a mutation lands: a key path into the intact manifest (the last key is set or deleted).
TARGETS = [
    ("schema_version",),
    ("task",),
    ("class_names",),
    ("preprocess",),
    ("preprocess", "height"),
    ("preprocess", "width"),
    ("preprocess", "mean"),
    ("preprocess", "std"),
    ("preprocess", "resize"),
    ("preprocess", "interpolation"),
    ("preprocess", "pad_value"),
    ("variants",),
    ("variants", "onnx-fp32"),
    ("variants", "onnx-fp32", "file"),
    ("variants", "onnx-fp32", "files"),
    ("variants", "onnx-fp32", "format"),
    ("variants", "openvino-fp32", "files", "openvino/model.bin"),
    ("default_variants",),
    ("detect",),
    ("golden",),
]


# Arbitrary JSON, and values near the ones the runtime reads (a number where a name goes, a name where a number).
VALUES = (
    json_values
    | st.integers(-10, 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["detect", "classify", "../x", "/etc/passwd", "model.onnx", "letterbox", "nan", "0.5"])
    | st.lists(st.one_of(st.floats(), st.text(max_size=3), st.integers()), min_size=3, max_size=3)
    | st.builds(
        lambda: {"strides": [8, 16, 32], "conf": 0.25}
    )  # a fresh dict per draw: one shared would nest in itself
)


@st.composite
def mutated(draw: st.DrawFn, intact: dict[str, Any]) -> dict[str, Any]:
    manifest = json.loads(json.dumps(intact))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(TARGETS))
        parent: Any = manifest
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()) and path[-1] in parent:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(VALUES)
    if draw(st.booleans()):
        manifest["task"] = "detect"
    return manifest


@SETTINGS
@given(data=st.data())
def test_any_mutated_manifest_is_a_bundle_or_an_edgecam_error(workdir, data):
    root, intact = workdir
    manifest = data.draw(mutated(intact))
    if data.draw(st.booleans()):
        write_manifest(root, manifest)  # sealed: the checks behind the digest are reached
    else:
        (root / MANIFEST).write_text(json.dumps(manifest))
    with contextlib.suppress(EdgecamError):
        exercise(root)


# ---------------------------------------------------------------- the box decoder
STRIDES = (8, 16, 32)
SIZE = 64
ANCHORS = sum((SIZE // s) ** 2 for s in STRIDES)


@st.composite
def outputs(draw: st.DrawFn) -> np.ndarray:
    """A detector's raw output for one image: mostly the right shape with any float in it, sometimes not."""
    if draw(st.integers(0, 4)) == 0:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=90))
    else:
        shape = (ANCHORS, 4 + draw(st.integers(1, 4)))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32])))
    return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)))


@settings(max_examples=200, deadline=None)
@given(
    preds=outputs(),
    conf=st.floats(0, 1),
    iou=st.floats(0, 1),
    frame=st.tuples(st.integers(1, 400), st.integers(1, 400)),
    letterbox=st.booleans(),
)
def test_any_detector_output_decodes_to_finite_boxes_or_an_edgecam_error(preds, conf, iou, frame, letterbox):
    """The model's output is what varies: the settings (strides, thresholds) are checked when the bundle loads
    (`detect_settings`), and a bad one there is a programming error (ValueError), as test_decode.py shows."""
    height, width = frame
    box = resize_image(np.zeros((height, width, 3), np.uint8), PreprocessSpec.square(SIZE, resize="letterbox"))[1]
    try:
        dets, dropped = decode_detections_counted(
            preds, STRIDES, (SIZE, SIZE), conf, iou, letterbox=box if letterbox else None, orig_size=(width, height)
        )
    except EdgecamError:
        return
    assert isinstance(dets, Detections) and dropped >= 0
    assert np.isfinite(dets.xyxy).all() and np.isfinite(dets.scores).all()
    assert ((dets.scores > conf) & (dets.scores <= 1)).all()
    assert (dets.xyxy >= 0).all() and (dets.xyxy[:, [0, 2]] <= width).all() and (dets.xyxy[:, [1, 3]] <= height).all()
    assert ((dets.class_ids >= 0) & (dets.class_ids < preds.shape[1] - 4)).all()
    if np.isfinite(np.asarray(preds, np.float64)).all():
        assert dropped == 0
    json.dumps([dets.xyxy.tolist(), dets.scores.tolist()], allow_nan=False)  # what a JSON line would hold
