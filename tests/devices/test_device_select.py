"""Device selection end to end: `--device` (profile or engine device), `Model(device=)`, cameras.yaml `device:`,
and a device this host lacks failing with what the host has, never a quiet run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.cli import main
from edgecam.devices.profiles import PROFILE_DIR, load_profile
from edgecam.devices.select import choose_device, is_profile
from edgecam.runtime.camera_config import load_cameras_config
from edgecam.runtime.device import available_devices, backend_for_device, check_device
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from tests.runtime.conftest import build_tiny_bundle

# Devices this test host is expected to lack; each test skips if the host does have one.
MISSING = [("openvino", "NPU"), ("onnxruntime", "cuda")]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("devsel") / "tiny")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return folder


def _lacks(backend: str, device: str) -> None:
    try:
        check_device(backend, device)
    except EdgecamError:
        return
    pytest.skip(f"this host has {device} for {backend}")


def _own_profile(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "x86-generic.yaml").read_text()) | changes
    path = tmp_path / "my-box.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---- parsing ---------------------------------------------------------------------------------------------------
def test_a_profile_gives_backend_device_threads_and_its_fastest_variant(bundle, tmp_path):
    x86 = load_profile("x86-generic")
    choice = choose_device("x86-generic", bundle=bundle)
    # x86-generic lists int8 first; the tiny bundle has no int8, so its fp32 IR (OpenVINO's own format) is chosen.
    assert (choice.backend, choice.device, choice.threads) == (x86.backend, "CPU", x86.threads)
    assert choice.variant == "openvino-fp32" and choice.profile.name == "x86-generic"
    own = choose_device(str(_own_profile(tmp_path, backend="onnxruntime", device="cpu", threads=1)), bundle=bundle)
    assert (own.backend, own.device, own.threads, own.variant) == (
        "onnxruntime",
        "CPUExecutionProvider",
        1,
        "onnx-fp32",
    )
    assert choose_device("x86-generic", bundle=bundle, variant="onnx-fp32", threads=1).variant == "onnx-fp32"


def test_a_device_string_names_the_engines_device(bundle):
    assert choose_device("cpu").to_dict() == {
        "backend": "openvino", "device": "CPU", "threads": None, "variant": None, "profile": None,
    }  # fmt: skip
    assert choose_device("cpu", backend="onnxruntime").device == "CPUExecutionProvider"
    assert choose_device("CPUExecutionProvider").backend == "onnxruntime"
    assert (backend_for_device("cuda"), backend_for_device("GPU"), backend_for_device("AUTO")) == (
        "onnxruntime", "openvino", "openvino",
    )  # fmt: skip
    assert not is_profile("CPU") and is_profile("x86-generic") and is_profile("box.yml")


@pytest.mark.parametrize(
    "device, backend, message",
    [
        ("gpu!", "openvino", "not an OpenVINO device name"),
        ("GPU", "onnxruntime", "not an ONNX Runtime execution provider"),
        ("x86-generic", "onnxruntime", "profile x86-generic runs openvino"),
        ("nosuch.yaml", None, "cannot read the device profile"),
    ],
)
def test_bad_selections_are_named(bundle, device, backend, message):
    with pytest.raises(EdgecamError, match=message):
        choose_device(device, backend, bundle)


def test_a_profile_without_a_variant_it_runs_is_refused(bundle, tmp_path):
    with pytest.raises(EdgecamError, match="no variant of this bundle runs on profile my-box"):
        choose_device(str(_own_profile(tmp_path, precisions=["int8"])), bundle=bundle)


# ---- the engines -----------------------------------------------------------------------------------------------
CPU_PATHS = [
    ("openvino", "cpu", "CPU"),
    ("openvino", "AUTO:CPU", "AUTO:CPU"),
    ("onnxruntime", "cpu", "CPUExecutionProvider"),
]


@pytest.mark.parametrize("backend, device, engine_device", CPU_PATHS)
def test_the_cpu_path_runs_and_reports_its_device(bundle, backend, device, engine_device):
    model = Model(bundle, backend, device=device, threads=1)
    info = model.info()
    assert info["device"] == engine_device and info["backend"] == backend
    if backend == "openvino":
        assert info["execution_devices"] == ["CPU"]
        assert info["conv_precisions"] in ({}, {"f32": info["conv_precisions"].get("f32", 0)}), "no bf16 via AUTO"
    out = model.classify([np.zeros((32, 32, 3), np.uint8)])
    assert len(out) == 1


@pytest.mark.parametrize("backend, device", MISSING)
def test_a_device_this_host_lacks_names_what_it_has(bundle, backend, device):
    _lacks(backend, device)
    with pytest.raises(EdgecamError) as caught:
        Model(bundle, backend, device=device)
    text = str(caught.value)
    assert "not available" in text and all(d in text for d in available_devices(backend))
    assert "install" in text, "the fix says what to install"


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnxruntime_falling_back_to_the_cpu_is_an_error(bundle, monkeypatch):
    """ONNX Runtime told to use a provider it lists but cannot start runs on the CPU with a log line: not here."""
    import onnxruntime as ort

    _lacks("onnxruntime", "cuda")
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*real, "CUDAExecutionProvider"])
    with pytest.raises(EdgecamError, match="could not start CUDAExecutionProvider"):
        Model(bundle, "onnxruntime", device="cuda")


# ---- the command line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, device, variant",
    [
        (["--device", "x86-generic"], "CPU", "openvino-fp32"),
        (["--device", "cpu", "--backend", "onnxruntime"], "CPUExecutionProvider", "onnx-fp32"),
        (["--device", "CPU"], "CPU", "openvino-fp32"),
    ],
)
def test_run_on_a_profile_or_a_device_string(bundle, images, capsys, flags, device, variant):
    assert main(["run", str(bundle), "--source", str(images), "--json", *flags]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend_info"]["device"] == device and summary["variant"] == variant
    assert summary["frames"] == 3


@pytest.mark.parametrize("backend, device", MISSING)
@pytest.mark.parametrize("command", ["run", "verify", "benchmark"])
def test_cli_unavailable_device_exits_2_naming_the_hosts_devices(bundle, images, capsys, backend, device, command):
    _lacks(backend, device)
    extra = ["--source", str(images)] if command == "run" else []
    flag = "--backends" if command == "benchmark" else "--backend"
    rc = main([command, str(bundle), *extra, flag, backend, "--device", device])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "not available" in err and available_devices(backend)[0] in err


def test_verify_on_a_profile_runs_its_variant_on_its_device(bundle, capsys):
    assert main(["verify", str(bundle), "--device", "x86-generic", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "CPU" and [(r["variant"], r["backend"]) for r in report["runs"]] == []  # no golden
    assert report["passed"]
    assert main(["verify", str(bundle), "--device", "cpu", "--backend", "onnxruntime"]) == 0
    assert "on CPUExecutionProvider" in capsys.readouterr().out


# ---- cameras.yaml ----------------------------------------------------------------------------------------------
def _config(tmp_path: Path, images: Path, bundle: Path, **camera) -> Path:
    path = tmp_path / "cameras.yaml"
    cam = {"name": "shelf", "source": str(images), "bundle": str(bundle), **camera}
    path.write_text(yaml.safe_dump({"cameras": [cam]}))
    return path


@pytest.mark.parametrize(
    "camera, message",
    [
        ({"device": "gpu!"}, "camera 'shelf': device: 'gpu!' is not an OpenVINO device name"),
        ({"backend": "onnxruntime", "device": "GPU"}, "device: 'GPU' is not an ONNX Runtime execution provider"),
        ({"device": 3}, "camera 'shelf': device:"),
    ],
)
def test_cameras_yaml_device_is_validated(tmp_path, images, bundle, camera, message):
    with pytest.raises(EdgecamError, match=message):
        load_cameras_config(_config(tmp_path, images, bundle, **camera))


@pytest.mark.parametrize("backend, device", MISSING)
def test_cameras_yaml_device_the_host_lacks_fails_at_load(tmp_path, images, bundle, backend, device):
    _lacks(backend, device)
    with pytest.raises(EdgecamError, match=r"camera 'shelf': device: device \S+ is not available"):
        load_cameras_config(_config(tmp_path, images, bundle, backend=backend, device=device))


def test_cameras_yaml_device_runs_there(tmp_path, images, bundle, capsys):
    path = _config(tmp_path, images, bundle, backend="onnxruntime", device="cpu")
    assert load_cameras_config(path).cameras[0].device == "CPUExecutionProvider"
    assert main(["run", "--config", str(path), "--json"]) == 0
    engines = json.loads(capsys.readouterr().out)["engines"]
    assert [(e["backend"], e["device"]) for e in engines] == [("onnxruntime", "CPUExecutionProvider")]
    assert main(["run", "--config", str(path), "--device", "cpu"]) == 2, "--config names its devices itself"


# ---- arbitrary input -------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.sampled_from(["AUTO:", "HETERO", "MULTI:GPU,", "AUTO:CPU", "GPU.1", "x.yaml", "a\x00.yaml", "cuda", "CPU"]),
    ),
    backend=st.sampled_from([None, "openvino", "onnxruntime"]),
)
def test_any_device_text_resolves_or_is_an_edgecam_error(text, backend):
    try:
        choice = choose_device(text, backend)
    except EdgecamError:
        return
    assert choice.backend in ("openvino", "onnxruntime") and choice.device
    assert check_device(choice.backend, choice.device) == choice.device, "a resolved device checks again"
