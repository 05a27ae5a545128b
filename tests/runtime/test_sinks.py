"""Sinks (video, JSON lines) and the annotation they draw."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgecam.runtime.annotate import class_color, draw_classifications, draw_detections, draw_stats
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.sinks.jsonl import JsonlSink
from edgecam.runtime.sinks.video import VideoSink
from edgecam.runtime.types import Classification, Detections, Event, Frame

NAMES = ("blue", "green", "red")


def frames(n: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    return [np.full((height, width, 3), 20 * i, np.uint8) for i in range(n)]


def one_hot(class_id: int, roi=None) -> Classification:
    probs = np.full(len(NAMES), 0.05, np.float32)
    probs[class_id] = 0.9
    return Classification(probs, NAMES, roi)


# --- video -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_sink_writes_every_frame(tmp_path, suffix):
    path = tmp_path / "sub" / f"out{suffix}"
    with VideoSink(path, fps=12) as sink:
        assert not path.exists()  # lazily opened: size comes from the first frame
        for image in frames(7):
            sink.write(image)
        sink.write(np.zeros((30, 40, 3), np.uint8))  # another size: resized, not silently dropped
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 8 == sink.frames
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 64)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [("out.mkv", {}, "extension"), ("out", {}, "extension"), ("out.mp4", {"fps": 0}, "fps")],
)
def test_video_sink_rejects_bad_settings(tmp_path, name, kwargs, message):
    with pytest.raises(EdgecamError, match=message):
        VideoSink(tmp_path / name, **kwargs)


def test_video_sink_unwritable_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(EdgecamError) as info, VideoSink(blocker / "out.mp4") as sink:
        sink.write(frames(1)[0])
    assert str(blocker) in str(info.value)


# --- JSON lines --------------------------------------------------------------------------------------------


def test_jsonl_lines_are_on_disk_before_close(tmp_path):
    path = tmp_path / "run.jsonl"
    sink = JsonlSink(path, NAMES)
    for i in range(3):
        sink.write(Frame(frames(1)[0], timestamp=1.5 + i, source_id="cam0", index=i), [one_hot(i, (0, 0, 8, 8))])
    # Not closed (as after a crash): every written line is already readable.
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    sink.close()
    assert [line["frame"] for line in lines] == [0, 1, 2]
    assert [line["timestamp"] for line in lines] == [1.5, 2.5, 3.5]
    assert {line["source"] for line in lines} == {"cam0"}
    assert [line["results"][0]["label"] for line in lines] == list(NAMES)
    assert lines[0]["results"][0]["roi"] == [0, 0, 8, 8]


def test_jsonl_converts_detections_events_and_numpy(tmp_path):
    path = tmp_path / "d.jsonl"
    dets = Detections(np.array([[1, 2, 30, 40]]), np.array([0.75]), np.array([2]), np.array([7]))
    event = Event("line_crossed", "cam0", 3.0, {"count": np.int64(2)})
    with JsonlSink(path, NAMES) as sink:
        sink.write(Frame(frames(1)[0], index=5), [dets, event], fps=np.float32(12.5))
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["results"][0] == [{"xyxy": [1, 2, 30, 40], "score": 0.75, "class_id": 2, "label": "red", "track_id": 7}]
    assert line["results"][1] == {"kind": "line_crossed", "source_id": "cam0", "timestamp": 3.0, "count": 2}
    assert line["fps"] == 12.5 and line["frame"] == 5


def test_jsonl_unwritable_path(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(EdgecamError, match="cannot"):
        JsonlSink(blocker / "out.jsonl")


# --- annotation --------------------------------------------------------------------------------------------


def test_roi_boxes_coloured_by_class_and_input_untouched():
    image = np.full((120, 160, 3), 255, np.uint8)
    before = image.copy()
    roi = (60, 50, 40, 30)
    out = draw_classifications(image, [one_hot(1, roi)])
    assert np.array_equal(image, before)
    x, y, w, h = roi
    # The bottom edge of the box (away from the label) is drawn in the class colour.
    assert tuple(out[y + h - 1, x + w // 2]) == class_color(1)
    assert np.array_equal(out[:, :40], before[:, :40])  # nothing drawn far from the ROI


def test_whole_frame_banner_at_the_top():
    image = np.zeros((120, 160, 3), np.uint8)
    out = draw_classifications(image, [one_hot(2)])
    assert tuple(out[1, 1]) == class_color(2)
    assert np.array_equal(out[-20:], image[-20:])


def test_no_results_is_an_unchanged_copy():
    image = frames(2)[1]
    out = draw_classifications(image, [])
    assert out is not image and np.array_equal(out, image)


def test_draw_detections_and_stats():
    image = np.zeros((120, 160, 3), np.uint8)
    dets = Detections(np.array([[20, 30, 80, 90]]), np.array([0.8]), np.array([0]))
    out = draw_detections(image, dets, NAMES)
    assert tuple(out[90, 50]) == class_color(0)  # bottom edge of the box
    assert not image.any()
    stats = draw_stats(image, fps=29.97)
    assert stats[-20:].any() and not stats[:40].any()  # bottom-left overlay only
    assert np.array_equal(draw_detections(image, Detections.empty(), NAMES), image)
