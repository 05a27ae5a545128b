"""The command line: thin layers, --json for scripts, one-line errors with a non-zero exit, never a traceback."""

import json
import subprocess
import sys

import pytest

from edgecam.runtime.bundle import write_manifest


def edgecam(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


COMMANDS = ["train", "val", "export", "quantize", "prune", "verify", "run", "benchmark", "models", "data"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_command(command):
    result = edgecam(command, "--help")
    assert result.returncode == 0 and "usage: edgecam" in result.stdout


def _bad_inputs(tmp_path):
    not_bundle = tmp_path / "empty_dir"
    not_bundle.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: classify\ndata: x\n")
    corrupt = tmp_path / "corrupt_bundle"
    corrupt.mkdir()
    (corrupt / "edgecam.json").write_text("{ not json")
    return [
        (["run", str(tmp_path / "missing"), "--source", "x.mp4"], "bundle not found"),
        (["run", str(not_bundle), "--source", "x.mp4"], "no edgecam.json"),
        (["run", str(corrupt), "--source", "x.mp4"], "corrupt manifest"),
        (["val", str(tmp_path / "missing.pt"), "--data", str(tmp_path)], "no such checkpoint or bundle"),
        (["train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")], "dataset folder not found"),
        (["train", "--out", str(tmp_path / "o")], "no dataset given"),
        (["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "b")], "checkpoint not found"),
        (["run", str(not_bundle), "--source", "x.mp4", "--roi", "1,2,3"], "x,y,w,h"),
        (["data", "video", "--out", str(tmp_path / "v.avi")], "MPEG-4"),
        (["data", "video", "--out", str(tmp_path / "v.mp4"), "--size", "1280"], "WIDTHxHEIGHT"),
        (
            ["data", "video", "--scenario", "security", "--hard", "--out", str(tmp_path / "v.mp4")],
            "needs --seconds >= 24",
        ),
        (["train", "--resume", str(not_bundle)], "not a training run folder"),
        (["train", "--resume", str(run_dir), "--epochs", "5"], "--epochs cannot change it"),
        (["train", "--resume", str(run_dir)], "nothing to resume"),
    ]


def test_bad_input_gives_one_line_and_no_traceback(tmp_path):
    for args, expected in _bad_inputs(tmp_path):
        result = edgecam(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert expected in result.stderr, (args, result.stderr)


def test_val_json_is_one_document(exported_bundle, color_data):
    result = edgecam("val", str(exported_bundle), "--data", str(color_data), "--backend", "onnxruntime", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["variant"] == "onnx-fp32" and report["n"] == 36 and 0.0 <= report["top1"] <= 1.0


def test_wrong_task_bundle_is_refused(exported_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "det"
    shutil.copytree(exported_bundle, bundle)
    manifest = json.loads((bundle / "edgecam.json").read_text())
    manifest["task"] = "detect"
    write_manifest(bundle, manifest)
    result = edgecam("val", str(bundle), "--data", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "detect" in result.stderr


def test_models_lists_the_registry():
    result = edgecam("models", "--json")
    assert json.loads(result.stdout)["ecnet_s"] == "classify"


def test_data_video_writes_the_video_and_its_ground_truth(tmp_path):
    out = tmp_path / "cams" / "street.mp4"
    result = edgecam("data", "video", "--scenario", "security", "--out", str(out), "--seconds", "1", "--fps", "5",
                     "--size", "320x192", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 5 and out.is_file()
    truth = json.loads(out.with_suffix(".json").read_text())
    assert len(truth["boxes"]) == 5
