"""`loop: true` / `--loop`: a video file replayed forever, with frame index and time running on across passes, and
every way of stopping a run (max frames, duration, SIGTERM) still ending it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.pipeline import run
from edgecam.runtime.sources import open_source
from tests.runtime.conftest import CLASS_NAMES, solid

N = 5  # frames in the looped video


@pytest.fixture(scope="module")
def five_frames(tmp_path_factory) -> Path:
    """Frame i is a solid colour CLASS_NAMES[i % 3], so every replayed frame's label says where in the file it is."""
    path = tmp_path_factory.mktemp("loop") / "five.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(N):
        writer.write(solid(CLASS_NAMES[i % 3]))
    writer.release()
    return path


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:], strict=False))


def test_a_looped_file_replays_with_index_and_time_running_on(five_frames):
    with open_source(str(five_frames), loop=True) as source:
        frames = [f for _, f in zip(range(3 * N + 2), source, strict=False)]
    assert len(frames) == 3 * N + 2 and source.passes == 4
    assert [f.index for f in frames] == list(range(3 * N + 2))
    stamps = [f.timestamp for f in frames]
    assert increasing(stamps)
    assert stamps[N] - stamps[N - 1] == pytest.approx(0.1, abs=0.02)  # one frame period across the seam
    assert all(np.array_equal(frames[i].image, frames[i + N].image) for i in range(N))


def test_without_loop_the_file_ends(five_frames):
    with open_source(str(five_frames)) as source:
        assert len(list(source)) == N


def test_loop_run_writes_more_lines_than_the_file_has_frames(tiny_bundle, five_frames, tmp_path):
    jsonl = tmp_path / "loop.jsonl"
    summary = run(tiny_bundle, str(five_frames), backend="onnxruntime", jsonl=jsonl, loop=True, max_frames=3 * N)
    lines = lines_of(jsonl)
    assert summary.frames == len(lines) == 3 * N
    assert [line["frame"] for line in lines] == list(range(3 * N))
    assert increasing([line["timestamp"] for line in lines])
    assert [line["results"][0]["label"] for line in lines] == [CLASS_NAMES[(i % N) % 3] for i in range(3 * N)]


def test_a_looped_camera_is_paced_and_ends_at_its_duration(tiny_bundle, five_frames, tmp_path):
    from edgecam.runtime.camera_config import parse_runtime_config
    from edgecam.runtime.cameras import MultiCameraRunner

    camera = {"name": "demo", "source": str(five_frames), "bundle": str(tiny_bundle), "backend": "onnxruntime"}
    camera.update(loop=True, max_fps=20, sinks={"jsonl": "demo.jsonl"})
    config = parse_runtime_config({"cameras": [camera]}, tmp_path / "cameras.yaml", tmp_path)
    t0 = time.monotonic()
    summary = MultiCameraRunner(config).run(duration=3.0)  # model loading counts in it
    assert time.monotonic() - t0 < 10
    lines = lines_of(tmp_path / "demo.jsonl")
    assert N < len(lines) <= 3.0 * 20 + 3  # looped, and no faster than max_fps (unpaced: hundreds)
    assert increasing([line["frame"] for line in lines]) and increasing([line["timestamp"] for line in lines])
    assert summary.cameras[0]["error"] is None


def test_sigterm_stops_a_looped_run(tiny_bundle, five_frames, tmp_path):
    jsonl = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", str(five_frames), "--loop"]
    cmd += ["--backend", "onnxruntime", "--jsonl", str(jsonl)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.exists() and jsonl.read_text().count("\n") > 2 * N:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()  # still running after the file ended twice
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    lines = lines_of(jsonl)
    assert len(lines) > 2 * N and [line["frame"] for line in lines] == list(range(len(lines)))


@pytest.mark.parametrize("flags", [["--loop"], ["--save-images", "out"]])
def test_single_source_flags_with_config_are_refused(tmp_path, capsys, flags):
    from edgecam.cli import main

    assert main(["run", "--config", str(tmp_path / "cameras.yaml"), *flags]) == 2
    assert f"drop {flags[0]}" in capsys.readouterr().err
