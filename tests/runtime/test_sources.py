"""Sources: ordered files and folders, live newest-frame reading (with fake captures), and the error cases."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.live import LiveReader, LiveSource
from edgecam.runtime.sources import ImageFolderSource, VideoFileSource, open_source


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the reader thread"
        time.sleep(0.001)


def numbered(i: int) -> np.ndarray:
    """A tiny frame whose pixel value names its number, so a test can tell frames apart."""
    return np.full((4, 6, 3), i % 256, dtype=np.uint8)


class ScriptedCapture:
    """A fake cv2.VideoCapture replaying a list of read() results (an image, or None for a failed read)."""

    def __init__(self, script: list[np.ndarray | None], opened: bool = True, fps: float = 10.0) -> None:
        self.script, self.opened, self.fps = list(script), opened, fps
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        if not self.script:
            return False, None
        item = self.script.pop(0)
        return (item is not None), item

    def grab(self) -> bool:
        return bool(self.script) and self.script.pop(0) is not None

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: 6, cv2.CAP_PROP_FRAME_HEIGHT: 4}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


class QueueCapture(ScriptedCapture):
    """A live camera the test drives frame by frame: read() blocks until the test pushes an image (None = fail)."""

    def __init__(self) -> None:
        super().__init__([])
        self.q: queue.Queue = queue.Queue()

    def read(self):
        item = self.q.get()
        return (item is not None), item


class FreeRunningCapture(ScriptedCapture):
    """A live camera producing numbered frames every `period` seconds, forever."""

    def __init__(self, period: float = 0.002) -> None:
        super().__init__([])
        self.period, self.produced = period, 0

    def read(self):
        time.sleep(self.period)
        self.produced += 1
        return True, numbered(self.produced - 1)


# --- video files -------------------------------------------------------------------------------------------


def test_video_file_yields_every_frame_in_order(synthetic_video):
    with open_source(str(synthetic_video.path)) as src:
        assert isinstance(src, VideoFileSource)
        assert src.size == (synthetic_video.width, synthetic_video.height)
        assert src.fps == pytest.approx(synthetic_video.fps)
        frames = list(src)
    assert [f.index for f in frames] == list(range(synthetic_video.n_frames))
    assert [f.timestamp for f in frames] == pytest.approx([i / synthetic_video.fps for i in range(len(frames))])
    assert all(f.source_id == str(synthetic_video.path) for f in frames)
    stats = src.stats()
    assert (stats.read, stats.delivered, stats.dropped, stats.corrupt) == (len(frames), len(frames), 0, 0)


@pytest.mark.parametrize("stride", [2, 3])
def test_video_stride_keeps_every_nth_frame(synthetic_video, stride):
    with open_source(str(synthetic_video.path), stride=stride) as src:
        indices = [f.index for f in src]
    assert indices == list(range(0, synthetic_video.n_frames, stride))


def test_max_fps_paces_a_file_without_dropping(synthetic_video):
    t0 = time.monotonic()
    with open_source(str(synthetic_video.path), max_fps=50) as src:
        frames = [f for _, f in zip(range(6), src, strict=False)]
    assert time.monotonic() - t0 >= 5 / 50 * 0.9
    assert [f.index for f in frames] == list(range(6))


def test_a_paced_file_keeps_a_camera_schedule_and_stamps_when_each_frame_was_due(synthetic_video):
    """A slow consumer does not push the schedule back (as a camera would not wait): later frames come at once and
    their `arrived` stays on the grid, so the frame age shows the delay."""
    period = 1 / 20
    with open_source(str(synthetic_video.path), max_fps=20) as src:
        frames = []
        for frame in src:
            frames.append(frame)
            if len(frames) == 3:
                time.sleep(4 * period)  # the consumer stalls for four frame intervals
            if len(frames) == 8:
                break
    steps = np.diff([f.arrived for f in frames])
    assert np.allclose(steps, period, atol=0.012), steps  # on the grid, despite the stall
    assert [f.index for f in frames] == list(range(8))  # and nothing dropped


def test_corrupt_frames_in_a_file_are_skipped_and_counted():
    script = [numbered(0), None, numbered(2), np.zeros((4, 6), np.uint8), numbered(4)]
    src = VideoFileSource("fake.mp4", capture_factory=lambda _: ScriptedCapture(script))
    values = [int(f.image[0, 0, 0]) for f in src]
    src.close()
    assert values == [0, 2, 4]
    assert (src.stats().read, src.stats().corrupt) == (3, 2)


def test_video_with_no_decodable_frame_is_an_error():
    with pytest.raises(EdgecamError, match="no decodable frames"):
        VideoFileSource("empty.mp4", capture_factory=lambda _: ScriptedCapture([None, None, None]))


# --- image folders -----------------------------------------------------------------------------------------


def test_image_folder_sorted_and_corrupt_skipped_with_one_warning(image_folder, capsys):
    with open_source(str(image_folder.path)) as src:
        assert isinstance(src, ImageFolderSource)
        frames = list(src)
    sizes = [(f.height, f.width) for f in frames]
    assert sizes == [(40 + i, 50) for i in range(len(image_folder.labels))]  # name order
    assert [f.index for f in frames] == [0, 1, 2, 4, 5]  # the corrupt file sorts at listing position 3
    stats = src.stats()
    assert (stats.read, stats.corrupt, stats.corrupt_files) == (len(image_folder.labels), 1, image_folder.corrupt)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning:") and image_folder.corrupt[0] in err


def test_single_image_file_is_a_one_frame_source(image_folder):
    path = sorted(image_folder.path.glob("*.png"))[0]
    with open_source(str(path)) as src:
        assert len(list(src)) == 1


# --- errors ------------------------------------------------------------------------------------------------


def closed_camera(_target) -> ScriptedCapture:
    return ScriptedCapture([], opened=False)


def _garbage_video(tmp_path: Path) -> str:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"not a video at all" * 10)
    return str(path)


def _empty_dir(tmp_path: Path) -> str:
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


def _only_corrupt(tmp_path: Path) -> str:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"nope")
    return str(tmp_path / "bad")


@pytest.mark.parametrize(
    ("make_spec", "kwargs", "message"),
    [
        (lambda tmp: str(tmp / "missing.mp4"), {}, "source not found"),
        (_garbage_video, {}, "cannot open the video"),
        (_empty_dir, {}, "no images"),
        (_only_corrupt, {}, "none of the images"),
        (lambda tmp: "3", {"capture_factory": closed_camera}, "cannot open the camera"),
        (lambda tmp: "rtsp://10.0.0.9/x", {"capture_factory": closed_camera}, "cannot open the stream"),
        (lambda tmp: "0", {"stride": 0, "capture_factory": lambda _: ScriptedCapture([])}, "stride"),
    ],
)
def test_unopenable_sources_raise_edgecam_error(tmp_path, make_spec, kwargs, message):
    spec = make_spec(tmp_path)
    with pytest.raises(EdgecamError, match=message) as info:
        open_source(spec, **kwargs)
    assert info.value.fix
    if "stride" not in kwargs:
        assert info.value.path == spec


# --- live sources ------------------------------------------------------------------------------------------


def test_live_reader_keeps_only_the_newest_frame():
    cap = QueueCapture()
    reader = LiveReader(cap, "cam", max_failures=1).start()
    for i in range(3):
        cap.q.put(numbered(i))
    wait_until(lambda: reader.stats.read == 3)
    assert reader.get().index == 2  # frames 0 and 1 were never taken: dropped
    assert reader.stats.dropped == 2
    cap.q.put(numbered(3))
    wait_until(lambda: reader.stats.read == 4)
    assert reader.get().index == 3
    assert reader.stats.dropped == 2
    cap.q.put(numbered(4))
    cap.q.put(None)  # the stream fails: max_failures=1 ends it, the frame already buffered is still delivered
    wait_until(lambda: not reader._thread.is_alive())
    assert reader.get().index == 4
    assert reader.get() is None
    assert cap.released and reader.stats.corrupt == 0  # a failing tail is the end of the stream, not corruption


def test_live_reader_counts_corrupt_frames_between_good_ones():
    cap = QueueCapture()
    reader = LiveReader(cap, "cam", max_failures=3).start()
    for item in [numbered(0), None, np.zeros((4, 6), np.uint8), numbered(3)]:
        cap.q.put(item)
    wait_until(lambda: reader.stats.read == 2)
    assert reader.get().image[0, 0, 0] == 3
    assert (reader.stats.corrupt, reader.stats.dropped) == (2, 1)
    for _ in range(3):
        cap.q.put(None)
    wait_until(lambda: not reader._thread.is_alive())
    assert reader.get() is None


def test_live_reader_counts_a_frame_never_taken_at_stop():
    cap = QueueCapture()
    reader = LiveReader(cap, "cam", max_failures=1).start()
    cap.q.put(numbered(0))
    cap.q.put(None)
    wait_until(lambda: not reader._thread.is_alive())
    reader.stop()
    assert (reader.stats.read, reader.stats.dropped) == (1, 1)


def test_slow_consumer_always_gets_the_newest_frame_and_drops_are_counted():
    cap = FreeRunningCapture(period=0.002)
    with open_source("0", capture_factory=lambda _: cap) as src:
        assert isinstance(src, LiveSource) and src.size == (6, 4)
        got = []
        for frame in src:
            # The frame handed over is at most one behind the camera (the reader may be mid-read).
            assert frame.index >= cap.produced - 2
            got.append(frame.index)
            time.sleep(0.02)  # a model 10x slower than the camera
            if len(got) == 8:
                break
    stats = src.stats()
    assert got == sorted(set(got))  # never a frame twice, never an older one
    assert stats.dropped > 0 and stats.delivered == len(got)
    assert stats.read == stats.delivered + stats.dropped
    assert not src.reader._thread.is_alive() and cap.released


def test_live_stride_and_end_of_stream():
    script = [numbered(i) for i in range(6)]
    gate = threading.Event()

    class GatedCapture(ScriptedCapture):
        def read(self):
            gate.wait()  # hold the first read until the consumer is waiting, so nothing is dropped
            time.sleep(0.03)
            return super().read()

    src = open_source("rtsp://cam/stream", stride=2, capture_factory=lambda _: GatedCapture(script))
    src.reader.max_failures = 1
    gate.set()
    indices = [f.index for f in src]
    src.close()
    assert indices == [0, 2, 4]
    assert src.stats().read == 3
