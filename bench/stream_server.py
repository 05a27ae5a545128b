"""A real IP-camera stand-in: ffmpeg serving a video as HTTP MJPEG on loopback, in real time (`-re`), looped.

Shared by the reconnect test and the live-mode benchmark. OpenCV's FFmpeg backend reads `-f mpjpeg` over HTTP
reliably without a separate RTSP server. `-listen 1` serves one client, so readiness is checked in /proc/net/tcp (a
probing connection would use up that one client).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from edgecam.runtime.errors import EdgecamError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serving(port: int) -> bool:
    """Whether a process listens on 127.0.0.1:port (0A in /proc/net/tcp) or already serves a client there (01),
    found without connecting to it. `-listen 1` closes its listening socket as soon as a client connects, so a
    reader that reconnects fast can take the port before a poll sees it listen."""
    wanted = f"0100007F:{port:04X}"
    states = ("0A", "01")
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # not Linux: let the reader's own retries cope
    return any(ln.split()[1] == wanted and ln.split()[3] in states for ln in lines)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class MjpegServer:
    """`ffmpeg -re -stream_loop -1 -i VIDEO -f mpjpeg -listen 1 http://127.0.0.1:PORT/cam.mjpg`, restartable."""

    def __init__(self, video: Path, port: int | None = None, quality: int = 5) -> None:
        self.video, self.port, self.quality = Path(video), port or free_port(), quality
        self.url = f"http://127.0.0.1:{self.port}/cam.mjpg"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MjpegServer:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise EdgecamError("ffmpeg is not installed", fix="apt-get install ffmpeg (or make system-deps)")
        args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video)]
        args += ["-f", "mpjpeg", "-q:v", str(self.quality), "-listen", "1", self.url]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        proc = self.proc
        wait_for(lambda: serving(self.port) or proc.poll() is not None, 10, "ffmpeg to listen")
        if proc.poll() is not None:
            raise EdgecamError(f"ffmpeg exited with code {proc.returncode} before serving", path=self.video)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
