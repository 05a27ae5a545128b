"""Fault: the camera's stream server is killed and restarted, several times, under `edgecam run --source URL`.

The run must resume within a few seconds of the stream's return (the default backoff probes at most every 2 s
while an outage is young: runtime/reconnect.py) and must not leak file descriptors or threads across reconnects.
Durations from `soak()`: short in `make test`, full length (10 s outages x 3) in `make soak`. The measured figures
are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecam.bench.stream_server import MjpegServer, free_port, wait_for
from tests.conftest import soak

if shutil.which("ffmpeg") is None and not os.environ.get("CI"):
    pytest.skip("ffmpeg is not installed (apt-get install ffmpeg); CI fails instead", allow_module_level=True)

OUTAGE = soak(3, 10)  # seconds the stream is down
CYCLES = int(soak(2, 3))
RESUME_BOUND = 8.0  # seconds from the stream's return to the first new frame, any outage: generous on busy cores
RESUME_MEDIAN = 5.0  # the requirement, on the median (~1-2 s expected; the 30 s-capped doubling took 4.9-7.3 s)
SLACK = 4  # fds / threads that may come and go (a capture's decoder threads, a socket mid-close)


def proc_counts(pid: int) -> tuple[int, int]:
    """(open file descriptors, threads) of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return fds, threads


@pytest.mark.fault
@pytest.mark.timeout(120 + CYCLES * (OUTAGE + RESUME_BOUND + 10))
def test_run_resumes_within_seconds_of_each_restart_without_leaks(small_video, tiny_bundle, tmp_path):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to count file descriptors and threads")
    server = MjpegServer(small_video, free_port()).start()
    out, err = tmp_path / "run.jsonl", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", server.url, "--jsonl", str(out)]
    with err.open("w") as stderr:
        proc = subprocess.Popen([*cmd, "--json"], stdout=subprocess.PIPE, stderr=stderr, text=True)

    def lines() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    delays: list[float] = []
    try:
        wait_for(lambda: lines() >= 20, 30, "the first frames")
        before = proc_counts(proc.pid)
        for _ in range(CYCLES):
            server.stop()  # the camera goes away ...
            time.sleep(OUTAGE)
            assert proc.poll() is None, "the run ended when the stream dropped"
            seen = lines()
            server.start()  # ... and comes back on the same address
            back = time.monotonic()
            wait_for(lambda: lines() > seen, RESUME_BOUND + 10, "a frame after the restart")  # noqa: B023
            delays.append(time.monotonic() - back)
            wait_for(lambda: lines() >= seen + 10, 20, "frames flowing again")  # noqa: B023
        after = proc_counts(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            server.stop()
    text = err.read_text()
    print(
        f"\nreconnect fault: {CYCLES} outages of {OUTAGE:g} s; resume after restart "
        f"{', '.join(f'{d:.2f}' for d in delays)} s (median {statistics.median(delays):.2f} s); "
        f"fds {before[0]} -> {after[0]}, threads {before[1]} -> {after[1]}"
    )
    assert proc.returncode == 0, text
    assert statistics.median(delays) <= RESUME_MEDIAN and max(delays) <= RESUME_BOUND, delays
    assert after[0] <= before[0] + SLACK and after[1] <= before[1] + SLACK, (before, after)
    assert text.count("stream lost") == CYCLES and text.count("stream restored") == CYCLES, text
    lost, restored = f"warning: {server.url}: stream lost", f"{server.url}: stream restored after"
    stopping = "edgecam run: SIGINT: stopping"
    assert all(line.startswith((lost, restored, stopping)) for line in text.splitlines()), text  # no FFmpeg lines
