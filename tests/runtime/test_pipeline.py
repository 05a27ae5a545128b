"""The run loop end to end on the tiny colour classifier: labels follow the colours drawn into the video."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.bundle import MANIFEST, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.pipeline import RunSummary, run, validate_rois

BACKEND_VARIANT = {"openvino": "openvino-fp32", "onnxruntime": "onnx-fp32"}
MODEL_STAGES = {"read", "preprocess", "infer", "postprocess"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def count_video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, (image.shape[1], image.shape[0])
    cap.release()
    return n, size


@pytest.mark.parametrize("backend", sorted(BACKEND_VARIANT))
def test_whole_frame_run_writes_labels_video_and_summary(tiny_bundle, synthetic_video, tmp_path, backend):
    out_video, out_jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    summary = run(tiny_bundle, str(synthetic_video.path), backend=backend, save_video=out_video, jsonl=out_jsonl)
    n = synthetic_video.n_frames
    assert summary.frames == n and not summary.interrupted
    assert summary.variant == BACKEND_VARIANT[backend]
    assert summary.backend_info["backend"] == backend
    assert summary.fps > 0 and summary.seconds > 0
    assert set(summary.stages) == MODEL_STAGES | {"annotate", "write"}
    assert all(s["count"] == n for s in summary.stages.values())
    expected = [synthetic_video.background(i) for i in range(n)]
    assert summary.label_counts == dict(Counter(expected))
    assert summary.outputs == {"video": str(out_video), "jsonl": str(out_jsonl)}
    assert summary.source_stats["read"] == n

    lines = read_jsonl(out_jsonl)
    assert [line["frame"] for line in lines] == list(range(n))
    assert [line["results"][0]["label"] for line in lines] == expected
    assert all(line["source"] == str(synthetic_video.path) and len(line["results"]) == 1 for line in lines)
    assert count_video_frames(out_video) == (n, (synthetic_video.width, synthetic_video.height))


@pytest.mark.parametrize("backend", sorted(BACKEND_VARIANT))
def test_roi_run_labels_each_region(tiny_bundle, synthetic_video, tmp_path, backend):
    rois = list(synthetic_video.rois)
    summary = run(tiny_bundle, str(synthetic_video.path), backend=backend, rois=rois, jsonl=tmp_path / "r.jsonl")
    n = synthetic_video.n_frames
    lines = read_jsonl(tmp_path / "r.jsonl")
    assert len(lines) == n
    for line in lines:
        assert [tuple(r["roi"]) for r in line["results"]] == rois
        assert [r["label"] for r in line["results"]] == [synthetic_video.rois[r] for r in rois]
    assert summary.label_counts == dict(Counter(list(synthetic_video.rois.values()) * n))
    assert "annotate" not in summary.stages  # no video asked for: nothing drawn


def test_max_frames_and_image_folder_stats(tiny_bundle, image_folder, tmp_path):
    summary = run(tiny_bundle, str(image_folder.path), backend="onnxruntime", jsonl=tmp_path / "f.jsonl")
    assert summary.frames == len(image_folder.labels)
    assert summary.source_stats["corrupt"] == len(image_folder.corrupt)
    assert [line["results"][0]["label"] for line in read_jsonl(tmp_path / "f.jsonl")] == image_folder.labels
    summary = run(tiny_bundle, str(image_folder.path), backend="onnxruntime", max_frames=2)
    assert summary.frames == 2 and set(summary.stages) == MODEL_STAGES


def test_ctrl_c_ends_the_run_cleanly(tiny_bundle, synthetic_video, tmp_path, monkeypatch):
    stop_at = 4
    real = Model.start_classify_frame
    calls = {"n": 0}

    def interrupting(self, frame, rois=None):
        calls["n"] += 1
        if calls["n"] > stop_at:
            raise KeyboardInterrupt
        return real(self, frame, rois)

    monkeypatch.setattr(Model, "start_classify_frame", interrupting)
    out_video, out_jsonl = tmp_path / "i.avi", tmp_path / "i.jsonl"
    summary = run(tiny_bundle, str(synthetic_video.path), save_video=out_video, jsonl=out_jsonl)
    assert summary.interrupted and summary.frames == stop_at
    assert len(read_jsonl(out_jsonl)) == stop_at
    assert count_video_frames(out_video)[0] == stop_at  # the writer was closed: the file is complete


def test_live_source_run(tiny_bundle, monkeypatch):
    class RedCamera:
        def isOpened(self):  # noqa: N802
            return True

        def read(self):
            return True, np.full((60, 80, 3), (0, 0, 255), np.uint8)

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    summary = run(tiny_bundle, "0", max_frames=5, capture_factory=lambda _: RedCamera())
    assert summary.frames == 5 and summary.label_counts == {"red": 5}
    assert summary.source_stats["read"] == summary.source_stats["delivered"] + summary.source_stats["dropped"]


def test_summary_serialises_and_prints(tiny_bundle, synthetic_video):
    summary = run(tiny_bundle, str(synthetic_video.path), max_frames=3)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["frames"] == 3 and set(data["stages"]) == MODEL_STAGES
    table = summary.format_table()
    for word in [*MODEL_STAGES, summary.variant, "FPS"]:
        assert word in table
    assert isinstance(summary, RunSummary)


# --- errors ------------------------------------------------------------------------------------------------


def test_roi_outside_the_frame_is_named(tiny_bundle, synthetic_video, tmp_path):
    bad = (synthetic_video.width - 10, 0, 20, 20)
    with pytest.raises(EdgecamError, match=r"ROI #1 .*outside the 160x120 frame"):
        run(tiny_bundle, str(synthetic_video.path), rois=[(0, 0, 10, 10), bad], jsonl=tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()  # failed before any output was created


@pytest.mark.parametrize(
    ("roi", "ok"),
    [
        ((0, 0, 160, 120), True),
        ((150, 110, 10, 10), True),
        ((-1, 0, 5, 5), False),
        ((0, 0, 0, 5), False),
        ((0, 100, 10, 21), False),
        ((200, 200, 5, 5), False),
    ],
)
def test_validate_rois_table(roi, ok):
    if ok:
        assert validate_rois([roi], 160, 120) == [roi]
    else:
        with pytest.raises(EdgecamError, match="ROI #0"):
            validate_rois([roi], 160, 120)


def test_missing_source_is_an_error(tiny_bundle, tmp_path):
    with pytest.raises(EdgecamError, match="source not found"):
        run(tiny_bundle, str(tmp_path / "nope.mp4"))


def test_detect_bundle_without_detect_settings_is_refused(bundle_copy, synthetic_video):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["task"] = "detect"
    write_manifest(bundle_copy, manifest)
    with pytest.raises(EdgecamError, match="without a .detect. entry"):
        run(bundle_copy, str(synthetic_video.path))


def test_unknown_variant_is_an_error(tiny_bundle, synthetic_video):
    with pytest.raises(EdgecamError, match="no variant"):
        run(tiny_bundle, str(synthetic_video.path), variant="tflite-int8")
