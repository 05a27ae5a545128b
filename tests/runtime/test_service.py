"""`edgecam run` as an unattended service: stopped by SIGTERM, exit codes a supervisor can act on, a full disk.

The runs are real `edgecam run` processes (a service manager sees nothing else); the broker is a real Mosquitto.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgecam.bench.stream_server import free_port, wait_for

pytestmark = pytest.mark.timeout(120)

W, H = 160, 120


def noise_video(path: Path, n: int, width: int = W, height: int = H, fps: float = 10.0) -> Path:
    """Random frames: they compress badly, so a video written from them grows fast (what fills a disk)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for _ in range(n):
        writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    writer.release()
    return path


def edgecam(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edgecam", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def lines_of(path: Path) -> list[dict]:
    """Every JSON line, refusing NaN (what a strict reader does); a torn last line would fail json.loads."""
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n"), "the last line is torn"
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) for line in text.splitlines()]


def video_frames(path: Path) -> int:
    """Frames decodable from the file: 0 for an MP4 without its index (a killed writer)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


def mosquitto_or_skip():
    from tests.runtime.test_mqtt import MOSQUITTO

    if MOSQUITTO is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; CI must run the MQTT tests")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


# --- SIGTERM --------------------------------------------------------------------------------------------------
@pytest.mark.fault
@pytest.mark.parametrize("cameras", [1, 2])
def test_sigterm_finishes_every_output_and_exits_0(tmp_path, tiny_bundle, cameras):
    """systemd and Docker stop with SIGTERM: the MP4 must be playable, the JSON lines whole, MQTT told "offline"."""
    from tests.runtime.test_mqtt import Broker, Listener

    mosquitto_or_skip()
    noise_video(tmp_path / "cam.mp4", 200)
    cams = []
    for i in range(cameras):
        sinks = {"jsonl": f"out{i}.jsonl", "video": f"out{i}.mp4"}
        cams.append({"name": f"cam{i}", "source": "cam.mp4", "bundle": str(tiny_bundle), "max_fps": 10, "sinks": sinks})
    broker = Broker(tmp_path)
    broker.start()
    config = tmp_path / "cameras.yaml"
    config.write_text(
        yaml.safe_dump({"device": {"id": "box1"}, "cameras": cams, "mqtt": {"host": "127.0.0.1", "port": broker.port}})
    )
    proc = edgecam("--config", str(config))
    try:
        wait_for(lambda: len(lines_of(tmp_path / "out0.jsonl")) >= 5, 60, "the first JSON lines")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "SIGTERM: stopping" in stderr and "Traceback" not in stderr
        assert "(interrupted)" in stdout  # the summary was printed
        for i in range(cameras):
            records = lines_of(tmp_path / f"out{i}.jsonl")
            assert 5 <= len(records) < 200 if i == 0 else len(records) < 200
            assert video_frames(tmp_path / f"out{i}.mp4") == len(records)  # every frame recorded is playable
        listener = Listener(broker.port, ["edgecam/#"])  # retained: what a dashboard subscribing now sees
        try:
            listener.wait("edgecam/box1/availability", "offline")
            listener.wait("edgecam/box1/cam0/availability", "offline")
        finally:
            listener.close()
    finally:
        proc.kill()
        proc.wait()
        broker.stop()


GRACEFUL = textwrap.dedent(
    """
    import os, signal, sys, time
    from edgecam.runtime.shutdown import GracefulStop
    stop = GracefulStop(drain_seconds=float(sys.argv[1])).install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        print("draining", flush=True)
        if sys.argv[2] == "again":
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # a drain stuck on a hung camera
    stop.done()
    print("drained", flush=True)
    """
)


@pytest.mark.parametrize(
    ("drain", "again", "code", "said"),
    [
        (0.5, "no", 124, "still stopping after 0.5 s"),
        (30, "again", 128 + signal.SIGTERM, "SIGTERM again: exiting without finishing"),
    ],
)
def test_a_second_signal_or_a_long_drain_exits_at_once_non_zero(drain, again, code, said):
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", GRACEFUL, str(drain), again], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert said in done.stderr and "draining" in done.stdout and "drained" not in done.stdout
    assert time.monotonic() - t0 < 4.5  # at once, not after the 5 s drain


# --- exit codes ------------------------------------------------------------------------------------------------
@pytest.mark.fault
def test_a_live_stream_lost_for_good_exits_1_with_the_reason(tmp_path, tiny_bundle):
    cam = {"name": "door", "source": f"http://127.0.0.1:{free_port()}/cam.mjpg", "bundle": str(tiny_bundle)}
    cam["reconnect"] = {"max_attempts": 1, "backoff": {"initial": 0.1, "max": 0.1}}
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"cameras": [cam]}))
    proc = edgecam("--config", str(config))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("edgecam run: error: every camera stopped; door:") and "did not come back" in last


@pytest.mark.parametrize(("flag", "value"), [("--max-frames", "-5"), ("--threads", "0"), ("--drain-timeout", "0")])
def test_bad_numbers_on_the_command_line_are_refused(tiny_bundle, tmp_path, flag, value, capsys):
    from edgecam.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tiny_bundle), "--source", str(tmp_path), flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {value}" in capsys.readouterr().err


# --- a full disk -----------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs: a real ENOSPC. Mounting needs root (the tests' machines are); otherwise the test skips."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.fault
def test_a_full_disk_closes_the_video_playable_keeps_the_other_outputs_and_exits_1(tmp_path, tiny_bundle, small_disk):
    """The video stops (finalised) while room for its index is left; the JSON lines go on; one line says why."""
    from edgecam.runtime.sinks.video import RESERVE_BYTES

    source = noise_video(tmp_path / "noise.mp4", 120, 320, 240)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - RESERVE_BYTES - (1 << 20)))  # ~1 MiB above the reserve
    video, jsonl = small_disk / "out.mp4", tmp_path / "out.jsonl"
    proc = edgecam(str(tiny_bundle), "--source", str(source), "--save-video", str(video), "--jsonl", str(jsonl))
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 4, stderr  # not a warning per frame
    assert stderr.strip().splitlines()[-1].startswith("edgecam run: error: video output stopped:")
    assert "disk full" in stderr
    assert len(lines_of(jsonl)) == 120  # the camera ran on with its other output
    assert 1 <= video_frames(video) < 120  # closed in time: playable up to where it stopped


@pytest.mark.fault
def test_json_lines_on_a_full_disk_keep_every_whole_line(small_disk):
    from edgecam.runtime.errors import EdgecamError
    from edgecam.runtime.sinks.jsonl import JsonlSink
    from edgecam.runtime.types import Frame

    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 20_000))
    sink = JsonlSink(small_disk / "out.jsonl")
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 0.0, "cam", 0)
    with pytest.raises(EdgecamError, match="cannot write JSON lines: No space left on device"):
        for _ in range(100_000):
            sink.write(frame, [{"label": "x" * 50, "score": 0.5}])
    sink.close()
    assert len(lines_of(small_disk / "out.jsonl")) == sink.lines > 10


def test_json_lines_on_dev_full_raise_a_clear_error():
    """/dev/full fails every write with ENOSPC: no mount needed, so this runs everywhere."""
    from edgecam.runtime.errors import EdgecamError
    from edgecam.runtime.sinks.jsonl import JsonlSink
    from edgecam.runtime.types import Frame

    sink = JsonlSink("/dev/full")
    with pytest.raises(EdgecamError, match="/dev/full: cannot write JSON lines"):
        sink.write(Frame(np.zeros((4, 4, 3), np.uint8), 0.0, "cam", 0), [])
    sink.close()  # closing what failed is quiet


def test_a_video_sink_near_a_full_disk_stops_with_a_playable_file(tmp_path):
    """The reserve logic without a mount: the reserve is set just under what is free now."""
    from edgecam.runtime.errors import EdgecamError
    from edgecam.runtime.sinks.video import VideoSink

    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    sink = VideoSink(tmp_path / "out.mp4", fps=10, reserve_bytes=free - (3 << 20))
    rng = np.random.default_rng(0)
    with pytest.raises(EdgecamError, match="disk full"):
        for _ in range(1000):
            sink.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    assert sink.frames >= 1 and video_frames(tmp_path / "out.mp4") == sink.frames


def test_an_output_that_fails_to_close_is_reported_not_raised(tmp_path, tiny_bundle, capfd):
    from edgecam.runtime.camera_config import load_cameras_config
    from edgecam.runtime.cameras import MultiCameraRunner

    noise_video(tmp_path / "cam.mp4", 6)
    cams = [{"name": f"c{i}", "source": "cam.mp4", "bundle": str(tiny_bundle)} for i in range(2)]
    for cam in cams:
        cam["sinks"] = {"jsonl": f"{cam['name']}.jsonl"}
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"cameras": cams}))
    runner = MultiCameraRunner(load_cameras_config(config))
    runner.start(threads=False)

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    runner.cameras[0].processor._stack.callback(full_disk)
    for cam in runner.cameras:
        cam.start()
    for cam in runner.cameras:
        cam.thread.join(30)
    runner.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "close failed (1x)" in err
    assert runner.cameras[0].summary()["failed_outputs"] == {"close": "[Errno 28] No space left on device"}
    assert len(lines_of(tmp_path / "c1.jsonl")) == 6 and runner.cameras[1].summary()["failed_outputs"] == {}


def test_the_systemd_unit_runs_a_command_this_cli_takes_and_outlasts_the_drain():
    """devices/templates/edgecam.service: its ExecStart parses, systemd waits longer than the drain before SIGKILL."""
    import configparser
    import shlex

    from edgecam.cli import build_parser
    from edgecam.runtime.shutdown import DRAIN_SECONDS

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(Path(__file__).parents[2] / "devices" / "templates" / "edgecam.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/edgecam")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config is not None
    assert float(service["TimeoutStopSec"]) > DRAIN_SECONDS and service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2"  # a configuration error: a restart cannot fix it
