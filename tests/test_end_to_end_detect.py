"""The detection slice on a tiny model: synth YOLO data -> train -> export (parity) -> val -> run on a video."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def edgecam(*args):
    result = subprocess.run([sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"edgecam {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout) if "--json" in args else result


def test_detect_synth_train_export_val_run(tmp_path):
    from edgecam.train.synth import make_shelf_video, synth_detection

    data, run, bundle = tmp_path / "data", tmp_path / "run", tmp_path / "bundle"
    synth = synth_detection("retail", data, 12, seed=1, imgsz=(320, 240))
    trained = edgecam(
        "train",
        "--task",
        "detect",
        "--data",
        str(data / "data.yaml"),
        "--model",
        "test_det_tiny",
        "--imgsz",
        "128",
        "--epochs",
        "2",
        "--batch",
        "4",
        "--out",
        str(run),
        "--json",
    )
    assert trained["epochs_run"] == 2 and (run / "pr_curve.png").is_file() and (run / "curves.png").is_file()
    assert 0.0 <= trained["best_metrics"]["map50"] <= 1.0

    manifest = edgecam("export", str(run / "best.pt"), "--out", str(bundle), "--json")
    assert manifest["task"] == "detect" and manifest["detect"]["strides"] == [8, 16, 32]
    assert manifest["class_names"] == synth["names"]
    assert manifest["outputs"][0]["shape"] == [-1, 16 * 16 + 8 * 8 + 4 * 4, 4 + len(synth["names"])]
    for var in manifest["variants"].values():
        assert var["metrics"]["parity"]["passed"] and "map50" in var["metrics"]

    ref = edgecam("val", str(run / "best.pt"), "--data", str(data / "data.yaml"), "--json")
    for backend, variant in (("onnxruntime", "onnx-fp32"), ("openvino", "openvino-fp32")):
        got = edgecam("val", str(bundle), "--data", str(data / "data.yaml"), "--backend", backend, "--json")
        assert got["variant"] == variant and got["n_gt"] == ref["n_gt"] > 0
        assert got["map50_95"] == pytest.approx(ref["map50_95"], abs=0.02)

    video = make_shelf_video(tmp_path / "shelf.mp4", seconds=1, fps=5, size=(320, 240), seed=2)
    jsonl = tmp_path / "dets.jsonl"
    summary = edgecam(
        "run",
        str(bundle),
        "--source",
        str(video.path),
        "--backend",
        "onnxruntime",
        "--conf",
        "0.01",
        "--jsonl",
        str(jsonl),
        "--save-video",
        str(tmp_path / "dets.mp4"),
        "--json",
    )
    assert summary["frames"] == video.n_frames
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == video.n_frames
    for rec in records:
        for det in rec["results"]:
            x1, y1, x2, y2 = det["xyxy"]
            assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240 and det["label"] in synth["names"]
