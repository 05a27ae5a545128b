"""Only edgecam's own lines on stderr: FFmpeg's log lines (one per damaged frame, one per failed reconnect attempt)
are silenced, and an outage is one 'lost' line (then one 'restored' line, tested with a real stream elsewhere).

The children run without OPENCV_FFMPEG_LOGLEVEL in their environment (this test process has it set by importing the
runtime), so what is tested is that `edgecam run` silences FFmpeg by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.stream_server import free_port

pytestmark = pytest.mark.timeout(90)

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "EDGECAM_DEBUG")}


@pytest.fixture(scope="module")
def corrupt_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames of noise (big MPEG-4 frames) with zeroed runs across the middle half of the file."""
    folder = tmp_path_factory.mktemp("corrupt")
    good = folder / "good.mp4"
    writer = cv2.VideoWriter(str(good), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(60):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    data = bytearray(good.read_bytes())
    for offset in range(len(data) // 4, 3 * len(data) // 4, 997):
        data[offset : offset + 40] = bytes(40)
    path = folder / "corrupt.mp4"
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_video_gives_no_ffmpeg_lines(corrupt_video, tiny_bundle):
    # The control: OpenCV read plainly prints FFmpeg's complaints about this file (so the check below can fail).
    read_all = "import cv2,sys\ncap=cv2.VideoCapture(sys.argv[1])\nwhile cap.read()[0]: pass"
    plain = subprocess.run(
        [sys.executable, "-c", read_all, str(corrupt_video)], capture_output=True, text=True, env=ENV
    )
    assert plain.stderr.count("@ 0x") > 10, plain.stderr[-500:]

    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", str(corrupt_video), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the damage shows in the summary's counts, not as thousands of libav lines


@pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("CI"), reason="ffmpeg missing")
def test_reconnect_attempts_against_a_closed_port_print_one_line(tiny_bundle):
    url = f"http://127.0.0.1:{free_port()}/cam.mjpg"  # nothing listens: every attempt is refused
    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", url, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(6.0)  # the first opening and at least three reconnect attempts (0.5, 1, 2 s apart)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr.splitlines() == [
        f"warning: {url}: stream lost (cannot open); reconnecting",
        "edgecam run: SIGINT: stopping (a second signal exits at once)",
    ]
    assert '"interrupted": true' in stdout
