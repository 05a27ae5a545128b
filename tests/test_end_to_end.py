"""The whole slice on a tiny model: synth data -> train -> export -> val -> run on a synthetic shelf video."""

import json
import subprocess
import sys

import cv2
import pytest

pytestmark = pytest.mark.slow


def edgecam(*args):
    result = subprocess.run([sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"edgecam {' '.join(args)} failed:\n{result.stderr[-2000:]}"
    return result


def test_synth_train_export_val_run(tmp_path):
    from edgecam.train.synth import make_shelf_video

    data, run, bundle = tmp_path / "data", tmp_path / "run", tmp_path / "bundle"
    synth = json.loads(
        edgecam("data", "synth", "--scenario", "retail", "--out", str(data), "--n", "240", "--json").stdout
    )
    assert synth["classes"] == ["stocked", "low", "empty"]

    trained = json.loads(
        edgecam(
            "train",
            "--task",
            "classify",
            "--data",
            str(data),
            "--model",
            "test_tiny",
            "--imgsz",
            "48",
            "--epochs",
            "3",
            "--batch",
            "32",
            "--out",
            str(run),
            "--json",
        ).stdout
    )
    assert trained["best"] == str(run / "best.pt") and trained["epochs_run"] >= 1
    assert 0.0 <= trained["best_metrics"]["top1"] <= 1.0

    manifest = json.loads(edgecam("export", str(run / "best.pt"), "--out", str(bundle), "--json").stdout)
    assert set(manifest["variants"]) == {"onnx-fp32", "openvino-fp32", "openvino-fp16"}
    assert all(v["metrics"]["parity"]["passed"] for v in manifest["variants"].values())

    ref = json.loads(edgecam("val", str(run / "best.pt"), "--data", str(data), "--json").stdout)
    for backend in ("onnxruntime", "openvino"):
        got = json.loads(edgecam("val", str(bundle), "--data", str(data), "--backend", backend, "--json").stdout)
        assert got["n"] == ref["n"] == synth["val"]["stocked"] * 3
        assert abs(got["top1"] - ref["top1"]) <= 1 / ref["n"] + 1e-9, (backend, got["top1"], ref["top1"])

    video = make_shelf_video(tmp_path / "shelf.mp4", seconds=1, fps=6, size=(640, 360), seed=3)
    rois = [f"--roi={x},{y},{w},{h}" for x, y, w, h in video.rois]
    out_video, jsonl = tmp_path / "annotated.mp4", tmp_path / "results.jsonl"
    summary = json.loads(
        edgecam(
            "run",
            str(bundle),
            "--source",
            str(video.path),
            *rois,
            "--backend",
            "onnxruntime",
            "--save-video",
            str(out_video),
            "--jsonl",
            str(jsonl),
            "--json",
        ).stdout
    )
    assert summary["frames"] == video.n_frames and summary["fps"] > 0
    assert {"read", "preprocess", "infer", "postprocess"} <= set(summary["stages"])
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == video.n_frames
    assert all(len(rec["results"]) == len(video.rois) for rec in lines)
    assert {r["label"] for rec in lines for r in rec["results"]} <= {"stocked", "low", "empty"}
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == video.n_frames
    cap.release()
