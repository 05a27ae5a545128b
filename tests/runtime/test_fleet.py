"""A fleet: two real `edgecam run` processes with different device ids publish to one Mosquitto.

What a fleet's consumer relies on: one subscription (`edgecam/+/+/events`) gets every device's events, each under its
own device id, and a device that dies without a goodbye (kill -9: no DISCONNECT, no clean close) is marked offline by
the broker through its last will, retained, while the others stay online.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.runtime.detect_fixtures import build_tiny_detect_bundle
from tests.runtime.test_cameras import WHOLE_FRAME, write_video
from tests.runtime.test_mqtt import Listener

pytestmark = pytest.mark.timeout(240)
DEVICES = ("store1-box", "store2-box")


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def device_config(folder: Path, device: str, port: int, bundle: Path) -> Path:
    """One device: a looping 12-frame video at 10 FPS (runs until stopped) whose detections enter a zone."""
    folder.mkdir()
    write_video(folder / "door.mp4", "red")
    zone = {"zones": [{"name": "all", "polygon": WHOLE_FRAME}], "cooldown_seconds": 0, "min_track_hits": 2}
    camera = {"name": "door", "source": "door.mp4", "bundle": str(bundle), "scenario": "security", "loop": True}
    camera.update(max_fps=10, scenario_config=zone)
    config = {"device": {"id": device}, "mqtt": {"host": "127.0.0.1", "port": port}, "cameras": [camera]}
    path = folder / "cameras.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_device(config: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgecam", "run", "--config", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.fault
def test_one_broker_two_devices_and_the_last_will_of_a_killed_one(broker, detect_bundle, tmp_path):
    broker.start()
    consumer = Listener(broker.port, ["edgecam/+/+/events", "edgecam/+/availability", "edgecam/+/+/state"])
    procs = [run_device(device_config(tmp_path / d, d, broker.port, detect_bundle)) for d in DEVICES]
    killed, survivor = DEVICES
    try:
        for device in DEVICES:  # one wildcard subscription, each device under its own id
            event = consumer.wait(f"edgecam/{device}/door/events", timeout=90)
            assert b'"kind":"zone_enter"' in event.payload
            consumer.wait(f"edgecam/{device}/availability", "online", timeout=30)
        procs[0].send_signal(signal.SIGKILL)  # no DISCONNECT packet: only the broker can say it is gone
        assert procs[0].wait(10) == -signal.SIGKILL
        consumer.wait(f"edgecam/{killed}/availability", "offline", timeout=60)
        mark = len(consumer.messages)
        consumer.wait_many(f"edgecam/{survivor}/door/state", 3, after=mark, timeout=30)  # still publishing
        assert procs[1].poll() is None, "the surviving device stopped with the other"
        assert not any(
            m.topic == f"edgecam/{survivor}/availability" and m.payload == b"offline" for m in consumer.messages
        )
        late = Listener(broker.port, ["edgecam/+/availability"])  # a dashboard started now sees both, retained
        try:
            assert late.wait(f"edgecam/{killed}/availability", "offline").retain
            assert late.wait(f"edgecam/{survivor}/availability", "online").retain
        finally:
            late.close()
        procs[1].send_signal(signal.SIGTERM)  # the survivor says goodbye itself
        _, stderr = procs[1].communicate(timeout=60)
        assert procs[1].returncode == 0, stderr
        consumer.wait(f"edgecam/{survivor}/availability", "offline", timeout=10)
    finally:
        consumer.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
