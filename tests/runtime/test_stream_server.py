"""A real IP camera stand-in: ffmpeg serving HTTP MJPEG on loopback, stopped and restarted under a live source.

OpenCV's FFmpeg backend reads `-f mpjpeg` over HTTP reliably and without a separate RTSP server. `-listen 1` serves
one client, so readiness is checked in /proc/net/tcp (a probing connection would use up that one client).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.stream_server import MjpegServer, free_port, wait_for
from edgecam.runtime.live import LiveSource
from edgecam.runtime.reconnect import SOURCE_LOST, SOURCE_RESTORED, Backoff, ReconnectPolicy
from edgecam.runtime.sources import open_source

FFMPEG = shutil.which("ffmpeg")
if FFMPEG is None and not os.environ.get("CI"):
    pytest.skip("ffmpeg is not installed (apt-get install ffmpeg); CI fails instead", allow_module_level=True)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    """2 s of 160x120 at 10 FPS: a box sliding over a grey ramp."""
    path = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(20):
        image = np.tile(np.linspace(40, 200, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))
        image[40:70, 5 * i : 5 * i + 30] = (0, 0, 255)
        writer.write(image)
    writer.release()
    return path


def test_live_source_recovers_when_the_stream_server_restarts(small_video):
    server = MjpegServer(small_video, free_port())
    events: list = []
    frames: list = []
    policy = ReconnectPolicy(stall_seconds=3.0, max_failures=5, backoff=Backoff(initial=0.2, max=1.0))
    server.start()
    t0 = time.monotonic()
    src = open_source(server.url, resolution=(80, 60), reconnect=policy, on_event=events.append)
    consumer = threading.Thread(target=lambda: frames.extend(src), daemon=True)  # runs until the source closes
    try:
        assert isinstance(src, LiveSource)
        consumer.start()
        wait_for(lambda: len(frames) >= 5, 15, "the first frames")
        assert frames[0].image.shape == (60, 80, 3) and src.reader.online

        server.stop()  # the camera goes away ...
        wait_for(lambda: [e.kind for e in events] == [SOURCE_LOST], 10, "source_lost")
        before = len(frames)
        assert not src.reader.online

        server.start()  # ... and comes back on the same address
        wait_for(lambda: len(events) == 2, 15, "source_restored")
        wait_for(lambda: len(frames) >= before + 5, 10, "frames after the restart")
    finally:
        src.close()
        server.stop()
        consumer.join(5)
    assert [e.kind for e in events] == [SOURCE_LOST, SOURCE_RESTORED]
    assert src.stats().reconnects == 1 and events[1].data["reconnects"] == 1
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))  # never a frame twice or out of order across the reconnect
    assert not consumer.is_alive() and time.monotonic() - t0 < 30
