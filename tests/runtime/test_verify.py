"""`edgecam verify`: checksums name the damaged file, golden frames catch a swapped model, absent golden is said."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgecam.cli import main
from edgecam.export.golden_writer import golden_indices, write_golden
from edgecam.runtime import backends
from edgecam.runtime.backends import Backend, backend_names, create_backend
from edgecam.runtime.bundle import load_bundle, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.golden import compare_classify, compare_detect, default_tolerance, load_frames
from edgecam.runtime.preprocess import preprocess_batch
from edgecam.runtime.types import Detections
from edgecam.runtime.verify import verify_bundle
from tests.runtime.conftest import COLORS_BGR, build_tiny_bundle
from tests.runtime.detect_fixtures import WANTED, build_tiny_detect_bundle

ENGINES = {"onnx-fp32": "onnxruntime", "openvino-fp32": "openvino"}


def golden_images(n: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Noisy frames of several sizes, each with a clearly dominant colour (so top-1 is stable)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        image = rng.integers(0, 60, (40 + 3 * i, 64 - 2 * i, 3), dtype=np.uint8)
        image[4:-4, 4:-4] = np.maximum(image[4:-4, 4:-4], COLORS_BGR[("blue", "green", "red")[i % 3]])
        images.append(image)
    return images


def add_golden(root: Path, images: list[np.ndarray]) -> dict:
    """What export does: each variant's output on the frames through the engine that validated it."""
    bundle = load_bundle(root)
    batch, _ = preprocess_batch(images, bundle.preprocess)
    outputs = {}
    for name, var in bundle.variants.items():
        engine = create_backend(ENGINES[name])
        engine.load(bundle.path_of(var), threads=1)
        outputs[name] = engine.infer(batch)[0]
    precisions = {n: v.precision for n, v in bundle.variants.items()}
    entry = write_golden(root, images, outputs, bundle.task, precisions=precisions, engines=ENGINES)
    write_manifest(root, {**bundle.manifest, "golden": entry})
    return entry


@pytest.fixture(scope="module")
def golden_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_tiny_bundle(tmp_path_factory.mktemp("golden") / "tiny")
    add_golden(root, golden_images())
    return root


@pytest.fixture
def damaged(golden_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the golden bundle that a test may damage."""
    return Path(shutil.copytree(golden_bundle, tmp_path / "bundle"))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def swap_model(root: Path, transform: Callable[[np.ndarray], np.ndarray], edit_manifest: bool) -> None:
    """Replace model.onnx by a valid model of the same shapes with other weights; optionally re-sum it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(root / "model.onnx"))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "W":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(transform(numpy_helper.to_array(init)), "W"))
    onnx.save(model, str(root / "model.onnx"))
    if edit_manifest:
        manifest = json.loads((root / "edgecam.json").read_text())
        manifest["variants"]["onnx-fp32"]["files"]["model.onnx"]["sha256"] = sha256_file(root / "model.onnx")
        write_manifest(root, manifest)


@pytest.mark.parametrize("backend", [None, "onnxruntime", "openvino", "opencv"])
def test_intact_bundle_verifies(golden_bundle, backend):
    report = verify_bundle(golden_bundle, backend=backend, threads=1)
    assert report.passed, report.problems
    assert report.golden_frames == 8 and set(report.files.values()) == {"ok"}
    ran = {(r.variant, r.backend) for r in report.runs}
    expected = {
        None: {("onnx-fp32", b) for b in ("onnxruntime", "openvino", "opencv")} | {("openvino-fp32", "openvino")},
        "onnxruntime": {("onnx-fp32", "onnxruntime")},
        "openvino": {("onnx-fp32", "openvino"), ("openvino-fp32", "openvino")},
        "opencv": {("onnx-fp32", "opencv")},
    }[backend]
    assert ran == expected
    assert all(r.metrics["top1_same"] == 8 for r in report.runs)
    assert report.seconds < 5.0  # the device self-test must stay fast (about 0.7 s here)


@pytest.mark.parametrize(
    ("damage", "rel", "expected"),
    [
        ("flip", "model.onnx", "model.onnx: sha256 differs"),
        ("flip", "openvino/model.bin", "openvino/model.bin: sha256 differs"),
        ("truncate", "openvino/model.xml", "openvino/model.xml: sha256 differs"),
        ("delete", "model.onnx", "model.onnx: missing"),
        ("delete", "golden/frames.npz", "golden/frames.npz: missing"),
        ("delete", "golden/onnx-fp32.npy", "golden/onnx-fp32.npy: missing"),
        ("flip", "golden/openvino-fp32.npy", "golden/openvino-fp32.npy: sha256 differs"),
    ],
)
def test_damaged_file_is_named(damaged, damage, rel, expected):
    path = damaged / rel
    if damage == "flip":
        flip_byte(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-10])
    else:
        path.unlink()
    report = verify_bundle(damaged, threads=1)
    assert not report.passed
    assert len(report.problems) == 1 and report.problems[0].startswith(expected), report.problems
    assert all(r.passed for r in report.runs)  # what was intact still ran, and agreed
    assert report.notes, "the runs left out must be said"


@pytest.mark.parametrize(
    ("transform", "why"),
    [
        (lambda w: np.roll(w, 1, axis=0), "top-1 class changed on 8 of 8"),  # each class reads another colour
        (lambda w: w * 1.5, "max |Δ prob|"),  # same answers, other confidences
    ],
)
def test_swapped_model_passes_checksums_only_with_an_edited_manifest_then_drifts(damaged, transform, why):
    swap_model(damaged, transform, edit_manifest=False)
    report = verify_bundle(damaged, threads=1)
    assert [p.split(":")[0] for p in report.problems] == ["model.onnx"], report.problems

    swap_model(damaged, lambda w: w, edit_manifest=True)  # the same swapped file, its sum now in the manifest
    report = verify_bundle(damaged, threads=1)
    assert set(report.files.values()) == {"ok"}
    failed = [r for r in report.runs if not r.passed]
    assert {(r.variant, r.backend) for r in failed} == {("onnx-fp32", b) for b in ("onnxruntime", "openvino", "opencv")}
    assert all(any(why in p for p in r.problems) for r in failed), report.problems
    assert all("model.onnx [onnx-fp32 on" in p for p in report.problems), report.problems


def test_bundle_without_golden_verifies_checksums_and_says_so(tiny_bundle):
    report = verify_bundle(tiny_bundle)
    assert report.passed and report.runs == [] and report.golden_frames == 0
    assert len(report.files) == 3 and set(report.files.values()) == {"ok"}
    assert "no golden frames" in report.notes[0]
    assert "no golden frames" in report.format()


def test_bundle_without_golden_still_fails_on_a_damaged_file(bundle_copy):
    flip_byte(bundle_copy / "model.onnx")
    report = verify_bundle(bundle_copy)
    assert [p.split(":")[0] for p in report.problems] == ["model.onnx"]


@pytest.mark.parametrize(
    ("backend", "variant", "message"),
    [
        ("tensorrt", None, "unknown backend"),
        (None, "onnx-int8", "no variant 'onnx-int8'"),
        ("opencv", "openvino-fp32", "which this backend cannot run"),
    ],
)
def test_bad_choices_raise(golden_bundle, backend, variant, message):
    with pytest.raises(EdgecamError, match=message):
        verify_bundle(golden_bundle, backend=backend, variant=variant)


class _Absent(Backend):
    """Stands for an engine whose package is not installed on this device."""

    name, formats = "absent", ("onnx",)

    def load(self, path, threads=None, precision="fp32", device="CPU"):
        raise EdgecamError("absent is not installed", fix="pip install absent") from ImportError("absent")

    def infer(self, batch):
        raise AssertionError("never loaded")


class _Crashes(_Absent):
    name = "crashes"

    def load(self, path, threads=None, precision="fp32", device="CPU"):
        pass

    def infer(self, batch):
        raise RuntimeError("kernel failed\nC++ context")


@pytest.mark.parametrize(
    ("engine", "chosen", "problem", "note"),
    [
        (_Absent, False, None, "backend absent is not installed: skipped"),
        (_Absent, True, "cannot run: absent is not installed", None),
        (_Crashes, False, "cannot run: kernel failed (check that this backend can read the model)", None),
    ],
)
def test_engine_failures_are_reported_not_raised(golden_bundle, monkeypatch, engine, chosen, problem, note):
    backend_names()  # discover the real plugins before adding the fake one
    monkeypatch.setitem(backends._REGISTRY, engine.name, engine)
    report = verify_bundle(golden_bundle, backend=engine.name if chosen else None, threads=1)
    assert len(report.problems) == (1 if problem else 0), report.problems
    assert problem is None or problem in report.problems[0]
    assert note is None or note in report.notes


def test_malformed_golden_entry_is_an_error(damaged):
    manifest = json.loads((damaged / "edgecam.json").read_text())
    manifest["golden"] = {"frames": "golden/frames.npz"}
    write_manifest(damaged, manifest)
    with pytest.raises(EdgecamError, match="malformed 'golden' entry"):
        verify_bundle(damaged)


# ---------------------------------------------------------------- detection
@pytest.fixture(scope="module")
def golden_detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_tiny_detect_bundle(tmp_path_factory.mktemp("golden_det") / "det")
    add_golden(root, golden_images(6, seed=1))
    return root


def test_detect_bundle_verifies_on_every_backend(golden_detect_bundle):
    report = verify_bundle(golden_detect_bundle, threads=1)
    assert report.passed, report.problems
    assert len(report.runs) == 4
    assert all(r.metrics["boxes"] == 6 * 2 and r.metrics["matched"] == 1.0 for r in report.runs)


def test_detect_drift_is_caught(golden_detect_bundle, tmp_path):
    root = Path(shutil.copytree(golden_detect_bundle, tmp_path / "bundle"))
    other = build_tiny_detect_bundle(tmp_path / "other", boxes=WANTED[:1])  # the car is gone
    shutil.copy(other / "model.onnx", root / "model.onnx")
    report = verify_bundle(root, backend="onnxruntime")
    assert report.problems[0].startswith("model.onnx: sha256 differs")
    manifest = json.loads((root / "edgecam.json").read_text())
    manifest["variants"]["onnx-fp32"]["files"]["model.onnx"]["sha256"] = sha256_file(root / "model.onnx")
    write_manifest(root, manifest)
    report = verify_bundle(root, backend="onnxruntime")
    assert len(report.problems) == 1, report.problems  # one line: boxes not found again, the car's score dropped
    assert "golden boxes found again" in report.problems[0] and "max |Δ score|" in report.problems[0]


# ---------------------------------------------------------------- pure parts
def _dets(rows: list) -> Detections:
    arr = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(int))


@pytest.mark.parametrize(
    ("ref", "cand", "problems"),
    [
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.9, 0]], []),
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10.1, 0.895, 0]], []),
        ([[0, 0, 10, 10, 0.9, 0]], [], ["found again"]),
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.9, 1]], ["found again"]),  # same place, other class
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 12, 0.9, 0]], ["min IoU"]),  # IoU 0.83
        ([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.8, 0]], ["max |Δ score|"]),
        ([[0, 0, 10, 10, 0.251, 0]], [[0, 0, 10, 10, 0.249, 0]], []),  # either side of conf: no flicker
        ([], [], []),
    ],
)
def test_compare_detect_table(ref, cand, problems):
    result = compare_detect([_dets(ref)], [_dets(cand)], default_tolerance("detect", "fp32"), conf=0.25)
    assert len(result.problems) == len(problems), result.problems
    assert all(want in got for want, got in zip(problems, result.problems, strict=True))


@pytest.mark.parametrize(
    ("shift", "precision", "problems"),
    [
        (0.0, "fp32", []),
        (1e-5, "fp32", []),
        (0.05, "fp32", ["max |Δ prob|"]),
        (0.05, "fp16", []),
        (9.0, "fp16", ["top-1 class changed on 3 of 4", "max |Δ prob|"]),
    ],
)
def test_compare_classify_table(shift, precision, problems):
    ref = np.array([[4.0, 0, 0], [0, 4, 0], [0, 0, 4], [5, 1, 0]], np.float32)
    cand = ref.copy()
    cand[:, 1] += shift
    result = compare_classify(ref, cand, default_tolerance("classify", precision))
    assert len(result.problems) == len(problems), result.problems
    assert all(want in got for want, got in zip(problems, result.problems, strict=True))


@pytest.mark.parametrize(
    ("available", "count", "expected"),
    [(1, 8, [0]), (8, 8, list(range(8))), (100, 3, [0, 50, 99]), (5, 8, [0, 1, 2, 3, 4])],
)
def test_golden_indices_spread_over_the_frames(available, count, expected):
    assert golden_indices(available, count).tolist() == expected


def test_write_golden_keeps_count_frames_and_sums_every_file(tmp_path):
    images = golden_images(20)
    logits = np.arange(60, dtype=np.float32).reshape(20, 3)
    entry = write_golden(tmp_path, images, {"v/1": logits}, "classify", precisions={"v/1": "fp16"}, count=4)
    assert entry["count"] == 4 and entry["outputs"] == {"v/1": "golden/v_1.npy"}
    assert entry["tolerance"]["v/1"] == default_tolerance("classify", "fp16")
    written = {str(p.relative_to(tmp_path)) for p in (tmp_path / "golden").iterdir()}
    assert written == set(entry["files"])
    assert all(sha256_file(tmp_path / rel) == info["sha256"] for rel, info in entry["files"].items())
    keep = golden_indices(20, 4)
    np.testing.assert_array_equal(np.load(tmp_path / "golden/v_1.npy"), logits[keep])
    frames = load_frames(tmp_path / "golden/frames.npz")
    assert all(np.array_equal(f, images[i]) for f, i in zip(frames, keep, strict=True))


@pytest.mark.parametrize(
    ("images", "outputs", "task", "message"),
    [
        (golden_images(3), {"v": np.zeros((2, 3))}, "classify", "2 outputs for 3 images"),
        ([np.zeros((8, 8), np.uint8)], {"v": np.zeros((1, 3))}, "classify", "HxWx3 uint8"),
        (golden_images(1), {"v": np.zeros((1, 3))}, "segment", "unknown task"),
        (golden_images(1), {}, "classify", "no variant outputs"),
    ],
)
def test_write_golden_refuses_bad_input(tmp_path, images, outputs, task, message):
    with pytest.raises(ValueError, match=message):
        write_golden(tmp_path, images, outputs, task)


# ---------------------------------------------------------------- command line
def test_cli_verify(golden_bundle, damaged, capsys):
    assert main(["verify", str(golden_bundle), "--backend", "opencv", "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "verified in" in out.out and out.err == ""

    flip_byte(damaged / "model.onnx")
    assert main(["verify", str(damaged), "--json"]) == 2
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["passed"] is False and report["files"]["model.onnx"] == "changed"
    assert out.err.splitlines() == [
        "edgecam verify: error: model.onnx: sha256 differs from the manifest (file changed or corrupt; re-copy it)"
    ]


def test_cli_verify_missing_bundle_is_one_line(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "bundle not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("check", "precision", "expected"),
    [
        ("golden", "int8", {"max_prob_diff": 5e-2, "min_top1_agreement": 1.0}),
        ("parity", "int8", {"max_prob_diff": 1.0, "min_top1_agreement": 0.995}),  # the accuracy gate judges INT8
        ("parity", "fp16", {"max_prob_diff": 2e-2, "min_top1_agreement": 0.995}),
        ("golden", "fp64", {"max_prob_diff": 1e-3, "min_top1_agreement": 1.0}),  # unknown: fp32's, the strictest
    ],
)
def test_one_table_two_checks(check, precision, expected):
    assert default_tolerance("classify", precision, check) == expected
    assert default_tolerance("detect", precision, check) == default_tolerance("detect", precision)


def test_parity_lets_one_near_tie_in_200_flip_but_golden_frames_none():
    ref = np.tile(np.array([[4.0, 2.0, 0.0]], np.float32), (200, 1))
    cand = ref.copy()
    cand[7] = [2.0, 2.0001, 0.0]  # a near-tie flips, and its probabilities move by about 0.4
    parity = compare_classify(ref, cand, default_tolerance("classify", "int8", "parity"))
    golden = compare_classify(ref, cand, default_tolerance("classify", "int8"))
    assert parity.passed and parity.metrics["top1_agreement"] == 0.995, parity.problems
    assert "top-1 class changed on 1 of 200" in golden.problems[0]
