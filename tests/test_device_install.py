"""A device install, tested as a device has it: the wheel in a clean virtualenv with its base dependencies only
(no torch, no training or plotting packages), and there everything edgecam does with a bundle.

One virtualenv per module (pip's cache from the main install makes it quick). Without a package index it cannot be
built: the test then skips with the reason, except in CI (env CI set), where it must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_color_dataset
from tests.devices.deploy_fixtures import camera_config, colour_video, free_port, golden_bundle
from tests.runtime.conftest import CLASS_NAMES
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

pytestmark = pytest.mark.slow  # two virtualenvs of ~650 MB each: `make test`, not `make test-fast`


def _env() -> dict[str, str]:
    """The device's environment: nothing from this checkout on the path. PIP_NO_COMPILE: pip writes no .pyc files
    for the ~650 MB it installs (a third of the time on 2 busy cores); Python compiles what it imports instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_NO_COMPILE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, edgecam_wheel: Path) -> dict[str, Path]:
    """A clean venv with the wheel and its base dependencies, and a work folder outside the source tree."""
    work = tmp_path_factory.mktemp("device")
    venv = work / "venv"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(edgecam_wheel)],
    ]
    for cmd in steps:
        proc = _run(cmd, work, timeout=900)
        if proc.returncode != 0:
            why = f"cannot build the device venv ({' '.join(cmd[1:4])}): {proc.stderr.strip().splitlines()[-1:]}"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
    return {"work": work, "python": venv / "bin" / "python", "edgecam": venv / "bin" / "edgecam"}


def _edgecam(device: dict[str, Path], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = _run([str(device["edgecam"]), *args], device["work"], timeout)
    assert proc.returncode == 0, f"edgecam {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_device_venv_has_edgecam_from_the_wheel_and_no_torch(device):
    proc = _run([str(device["python"]), "-c", "import torch"], device["work"])
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    proc = _run([str(device["python"]), "-c", "import edgecam, matplotlib"], device["work"])
    assert "No module named 'matplotlib'" in proc.stderr  # the train extra is not there either
    where = _run([str(device["python"]), "-c", "import edgecam; print(edgecam.__file__)"], device["work"]).stdout
    assert where.startswith(str(device["work"] / "venv")), where  # the wheel's copy, not this checkout


def test_verify_val_and_run_a_classifier_bundle(device):
    work = device["work"]
    bundle = golden_bundle(work / "classifier")
    data = write_color_dataset(work / "colours", 6, seed=3, split="val")
    clip = colour_video(work / "clip.mp4", frames=30)
    assert "verified" in _edgecam(device, "verify", str(bundle)).stdout
    for backend in ("openvino", "onnxruntime"):
        report = json.loads(
            _edgecam(device, "val", str(bundle), "--data", str(data), "--backend", backend, "--json").stdout
        )
        assert report["top1"] == 1.0 and report["backend"] == backend  # each colour's square is its own class
    _edgecam(device, "run", str(bundle), "--source", str(clip), "--jsonl", "out.jsonl", "--save-video", "out.mp4")
    labels = [json.loads(line)["results"][0]["label"] for line in (work / "out.jsonl").read_text().splitlines()]
    assert labels == [CLASS_NAMES[i // 10] for i in range(30)]  # colour_video: 10 frames of each class in turn
    assert (work / "out.mp4").stat().st_size > 0


def test_val_and_run_a_detector_bundle(device):
    from edgecam.train.synth import synth_detection

    work = device["work"]
    bundle = build_tiny_detect_bundle(work / "detector")
    synth_detection("security", work / "scenes", 6, seed=0)
    report = json.loads(
        _edgecam(device, "val", str(bundle), "--data", str(work / "scenes" / "data.yaml"), "--json").stdout
    )
    assert report["variant"] == "openvino-fp32" and "map50" in report
    clip = colour_video(work / "det.mp4", frames=5)
    _edgecam(device, "run", str(bundle), "--source", str(clip), "--jsonl", "det.jsonl", "--backend", "onnxruntime")
    lines = [json.loads(line) for line in (work / "det.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all({d["label"] for d in ln["results"]} == {"person", "car"} for ln in lines)


def test_a_package_installs_into_a_release_venv_and_serves(device, edgecam_wheel):
    """The real device path: `edgecam package` and `edgecam install` of the base install; install makes the
    release's own venv from the packaged wheel, verifies the bundle with it and runs `edgecam run --config` until
    /health is ok."""
    work = device["work"]
    bundle = golden_bundle(work / "shipped")
    colour_video(work / "shelf.mp4")
    config = camera_config(work, bundle, "shelf.mp4", free_port())
    package = work / "pkg.tar.gz"  # packaged by the base install too: it needs no torch either
    _edgecam(device, "package", str(bundle), "--device", "intel-cpu", "--config", str(config), "--out", str(package),
             "--wheel", str(edgecam_wheel))  # fmt: skip
    root = work / "box"
    proc = _edgecam(device, "install", str(package), "--root", str(root), "--service", "probe", timeout=900)
    assert proc.stdout.startswith("installed ") and "/health ok" in proc.stdout, proc.stdout
    release = (root / "current").resolve()
    python = release / "venv" / "bin" / "python"
    assert _run([str(python), "-c", "import torch"], work).returncode != 0
    assert json.loads((release / "release.json").read_text())["python"] is None  # the release's own venv ran it
