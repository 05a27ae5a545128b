"""A real IP camera stand-in: ffmpeg serving HTTP MJPEG on loopback, stopped and restarted under a live source.

OpenCV's FFmpeg backend reads `-f mpjpeg` over HTTP reliably and without a separate RTSP server. `-listen 1` serves
one client, so readiness is checked in /proc/net/tcp (a probing connection would use up that one client).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
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


@pytest.mark.timeout(150)
def test_edgecam_run_source_url_reconnects_after_the_server_restarts(small_video, tiny_bundle, tmp_path):
    """`edgecam run --source URL` is a one-camera configuration: a dropped stream comes back, as under --config."""
    server = MjpegServer(small_video, free_port()).start()
    out = tmp_path / "run.jsonl"
    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", server.url, "--jsonl", str(out)]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a hang below is reported with every thread's stack
    # Started with SIGINT ignored, as a shell starts a background job: SIGINT must still stop it cleanly.
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(
        [*cmd, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore
    )

    def lines() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    try:
        wait_for(lambda: lines() >= 5, 20, "the first frames")
        server.stop()  # the camera goes away ...
        time.sleep(1.5)
        assert proc.poll() is None, "the run ended when the stream dropped"
        before = lines()
        server.start()  # ... and comes back on the same address
        # The default backoff probes at most every 2 s while an outage is young (runtime/reconnect.py).
        wait_for(lambda: lines() >= before + 5, 30, "frames after the restart")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints the threads' stacks
            stdout, stderr = proc.communicate()
            pytest.fail(f"edgecam run did not stop within 30 s of SIGINT; stderr: {stderr[-6000:]}")
        finally:
            server.stop()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["source_stats"]["reconnects"] >= 1
    assert summary["frames"] == lines() and summary["frames"] >= before + 5


def test_run_config_exits_non_zero_when_every_camera_stopped(small_video, tiny_bundle, tmp_path, capsys):
    """A live camera whose ROI lies outside its frames (known only once frames arrive) stops; with no camera left
    doing the job the run exits 1 and says why in one line."""
    from edgecam.cli import main

    with MjpegServer(small_video, free_port()) as server:
        config = tmp_path / "cameras.yaml"
        config.write_text(
            f"cameras:\n  - name: door\n    source: {server.url}\n    bundle: {tiny_bundle}\n"
            "    rois: [[0, 0, 500, 500]]\n"
        )
        code = main(["run", "--config", str(config), "--duration", "30"])
    err = capsys.readouterr().err
    assert code == 1
    assert "every camera stopped; door:" in err and "outside the 160x120 frame" in err
