"""A camera URL's password never leaves the reader: a real MJPEG stream reached as http://admin:PASSWORD@..., run
through `edgecam run --source` and a configured camera with the HTTP API, lost and restored on the way.

ffmpeg's `-listen 1` server ignores the basic auth OpenCV's FFmpeg backend sends, so the URL with credentials
streams like the plain one. The password must appear in no output: stdout (--json), stderr, JSON lines, events
(as MQTT serialises them), `/api/cameras`, the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest

from edgecam.bench.stream_server import MjpegServer, free_port, wait_for
from edgecam.runtime.config import parse_runtime_config
from edgecam.runtime.sinks.jsonl import to_jsonable

if shutil.which("ffmpeg") is None and not os.environ.get("CI"):
    pytest.skip("ffmpeg is not installed (apt-get install ffmpeg); CI fails instead", allow_module_level=True)

pytestmark = pytest.mark.timeout(90)

SECRET = "s3cretPW"


def with_credentials(url: str) -> tuple[str, str]:
    """(the URL as the camera is configured, the URL as edgecam may show it)."""
    return url.replace("http://", f"http://admin:{SECRET}@"), url.replace("http://", "http://admin:***@")


def test_edgecam_run_source_never_prints_the_password(small_video, tiny_bundle, tmp_path):
    out = tmp_path / "run.jsonl"
    with MjpegServer(small_video, free_port()) as server:
        url, shown = with_credentials(server.url)
        cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", url, "--jsonl", str(out)]
        proc = subprocess.run([*cmd, "--json", "--max-frames", "8"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 8  # the stream was read through the URL with credentials
    for text in (proc.stdout, proc.stderr, out.read_text()):
        assert SECRET not in text
    assert json.loads(proc.stdout)["source"] == shown
    assert {json.loads(line)["source"] for line in lines} == {shown}


def test_a_misspelt_url_is_refused_with_the_password_masked(tiny_bundle):
    url = f"rtps://admin:{SECRET}@127.0.0.1:9/stream1"
    cmd = [sys.executable, "-m", "edgecam", "run", str(tiny_bundle), "--source", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and SECRET not in proc.stderr + proc.stdout
    assert "rtps://admin:***@127.0.0.1:9/stream1: source not found" in proc.stderr


class MemorySink:
    """Records events as MqttSink would publish them (JSON of the event's dict)."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._lock = threading.Lock()

    def publish_event(self, camera, event):
        with self._lock:
            self.payloads.append(json.dumps(to_jsonable(event.to_dict()), default=str))

    def publish_state(self, camera, state):
        with self._lock:
            self.payloads.append(json.dumps(to_jsonable(state), default=str))

    def set_camera_online(self, camera, online):
        pass

    def kinds(self) -> list[str]:
        with self._lock:
            return [json.loads(p).get("kind") for p in self.payloads]


def test_lost_and_restored_events_api_and_stderr_are_masked(small_video, tiny_bundle, tmp_path, capfd):
    from edgecam.runtime.cameras import MultiCameraRunner

    server = MjpegServer(small_video, free_port()).start()
    url, shown = with_credentials(server.url)
    camera = {"name": "door", "source": url, "bundle": str(tiny_bundle), "sinks": {"jsonl": "door.jsonl"}}
    camera["reconnect"] = {"stall_seconds": 2, "max_failures": 5, "backoff": {"initial": 0.2, "early_max": 0.5}}
    config = parse_runtime_config({"cameras": [camera], "http": {"port": free_port()}}, "cameras.yaml", tmp_path)
    sink = MemorySink()
    runner = MultiCameraRunner(config, sinks=[sink])
    api = None
    try:
        runner.start()
        cam = runner.cameras[0]
        wait_for(lambda: cam.frames_out >= 3, 20, "the first frames")
        server.stop()  # the camera goes away ...
        wait_for(lambda: "source_lost" in sink.kinds(), 15, "source_lost")
        with urllib.request.urlopen(f"{runner.http.url}/api/cameras", timeout=5) as response:
            api = response.read().decode()
        server.start()  # ... and comes back
        wait_for(lambda: "source_restored" in sink.kinds(), 20, "source_restored")
    finally:
        runner.stop()
        server.stop()
    summary = cam.summary()
    err = capfd.readouterr().err
    assert "source_lost" in api and f'"source_id": "{shown}"' in api
    assert summary["source"] == shown
    for text in (api, err, json.dumps(summary, default=str), *sink.payloads, (tmp_path / "door.jsonl").read_text()):
        assert SECRET not in text
    assert f"warning: {shown}: stream lost" in err
    assert f"{shown}: stream restored after" in err  # every 'lost' line is followed by a 'restored' one
    assert err.index("stream lost") < err.index("stream restored")
