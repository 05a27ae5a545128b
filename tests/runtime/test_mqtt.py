"""MqttSink against a real Mosquitto broker on a free loopback port (skipped without mosquitto, unless CI is set)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")

from edgecam.runtime.sinks.mqtt import MqttSink, topic_name  # noqa: E402
from edgecam.runtime.types import Event  # noqa: E402

DEVICE = "box1"  # the device id every sink here publishes under: edgecam/box1/...
AVAILABILITY = f"edgecam/{DEVICE}/availability"  # the device's own, with the last will

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One Mosquitto process bound to 127.0.0.1:port; `start()` may come after a sink already tries to connect."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mosquitto exited: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None


class Listener:
    """A paho subscriber that keeps every message, so tests wait for one without racing the delivery order."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 2) for t in topics])
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait(self, topic: str, payload: str | None = None, timeout: float = 5.0):
        def find():
            for m in self.messages:
                if m.topic == topic and (payload is None or m.payload.decode() == payload):
                    return m
            return None

        with self._changed:
            found = self._changed.wait_for(find, timeout=timeout)
        assert found, (
            f"no {topic} {payload or ''} within {timeout}s; got {[(m.topic, m.payload) for m in self.messages]}"
        )
        return found

    def wait_many(self, topic: str, n: int, after: int = 0, timeout: float = 5.0) -> list:
        """At least `n` messages on `topic` among those received after the first `after` (`len(messages)` earlier)."""

        def found():
            hits = [m for m in self.messages[after:] if m.topic == topic]
            return hits if len(hits) >= n else None

        with self._changed:
            hits = self._changed.wait_for(found, timeout=timeout)
        assert hits, f"fewer than {n} {topic} within {timeout}s; got {[m.topic for m in self.messages[after:]]}"
        return hits

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running(broker):
    broker.start()
    return broker


@pytest.fixture
def listen(running):
    listeners: list[Listener] = []

    def make(*topics: str) -> Listener:
        listeners.append(Listener(running.port, list(topics)))
        return listeners[-1]

    yield make
    for listener in listeners:
        listener.close()


@pytest.fixture
def sink(running):
    s = MqttSink(port=running.port, device=DEVICE, qos=1).start()
    assert s.wait_connected(5)
    yield s
    s.close()


def test_availability_online_is_retained_for_late_subscribers(sink, listen):
    listen(AVAILABILITY).wait(AVAILABILITY, "online")  # the broker has it (live or retained)
    message = listen(AVAILABILITY).wait(AVAILABILITY, "online")
    assert message.retain


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_events_arrive_as_json_with_the_configured_qos(running, listen, qos):
    listener = listen("edgecam/+/+/events")
    event = Event("person_entered", "front door", 1234.5, {"track_id": 7, "zone": "door"})
    with MqttSink(port=running.port, device=DEVICE, qos=qos) as s:
        assert s.wait_connected(5)
        assert s.publish_event("front door", event)
        message = listener.wait(f"edgecam/{DEVICE}/front door/events")
    assert json.loads(message.payload) == event.to_dict()
    assert message.qos == qos
    assert not message.retain


def test_state_and_camera_availability_are_retained(sink, listen):
    early = listen("edgecam/#")
    sink.publish_state("cam1", {"people": 2, "zones": {"door": 1}})
    sink.set_camera_online("cam1", True)
    sink.set_camera_online("cam2", True)
    sink.set_camera_online("cam2", False)
    early.wait(f"edgecam/{DEVICE}/cam2/availability", "offline")
    late = listen("edgecam/#")
    state = late.wait(f"edgecam/{DEVICE}/cam1/state")
    assert state.retain and json.loads(state.payload) == {"people": 2, "zones": {"door": 1}}
    assert late.wait(f"edgecam/{DEVICE}/cam1/availability", "online").retain
    assert late.wait(f"edgecam/{DEVICE}/cam2/availability", "offline").retain
    assert not any(m.topic == f"edgecam/{DEVICE}/cam2/availability" and m.payload == b"online" for m in late.messages)


def test_clean_close_publishes_offline(running, listen):
    s = MqttSink(port=running.port, prefix="site/a", device=DEVICE).start()
    assert s.wait_connected(5)
    s.set_camera_online("cam1", True)
    s.close()
    late = listen("site/#")
    assert late.wait(f"site/a/{DEVICE}/availability", "offline").retain
    assert late.wait(f"site/a/{DEVICE}/cam1/availability", "offline").retain


def test_last_will_says_offline_when_the_runner_dies(running, listen):
    listener = listen(AVAILABILITY)
    script = (
        "import sys, time\n"
        "from edgecam.runtime.sinks.mqtt import MqttSink\n"
        f"s = MqttSink(port={running.port}, device={DEVICE!r}, keepalive=5).start()\n"
        "assert s.wait_connected(10)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        listener.wait(AVAILABILITY, "online")
        proc.kill()  # no DISCONNECT packet: the broker sees the socket die and sends the will
        proc.wait(5)
        listener.wait(AVAILABILITY, "offline")
        assert listen(AVAILABILITY).wait(AVAILABILITY, "offline").retain  # the will is retained
    finally:
        proc.kill()
        proc.wait(5)


def test_broker_started_after_the_sink_still_gets_messages(broker, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam.runtime.sinks.mqtt")
    s = MqttSink(port=broker.port, device=DEVICE, reconnect_min_delay=1, reconnect_max_delay=1).start()
    try:
        assert s.publish_state("cam1", {"count": 3})  # queued (QoS 1) while the broker is down
        time.sleep(2.2)  # a few failed attempts: still one warning line
        assert not s.connected
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        broker.start()
        assert s.wait_connected(10)
        listener = Listener(broker.port, ["edgecam/#"])
        try:
            listener.wait(AVAILABILITY, "online")  # live or retained: it may race the subscription
            late = Listener(broker.port, [AVAILABILITY])  # subscribed after it: gets it from the store
            try:
                assert late.wait(AVAILABILITY, "online").retain
            finally:
                late.close()
            assert json.loads(listener.wait(f"edgecam/{DEVICE}/cam1/state").payload) == {"count": 3}
            assert s.publish_event("cam1", Event("late", "cam1", 1.0))
            assert json.loads(listener.wait(f"edgecam/{DEVICE}/cam1/events").payload)["kind"] == "late"
        finally:
            listener.close()
    finally:
        s.close()


def test_unreachable_broker_is_not_fatal_and_close_is_quick(broker):
    s = MqttSink(port=broker.port, device=DEVICE, qos=0).start()
    assert not s.wait_connected(0.3)
    assert not s.publish_event("cam1", Event("x", "cam1", 1.0))  # QoS 0 while disconnected: dropped, and counted
    assert s.dropped == 1
    started = time.monotonic()
    s.close()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("camera", "topic"),
    [("front door", "front door"), ("a/b", "a_b"), ("cam+1", "cam_1"), ("#", "_"), ("", "_")],
)
def test_camera_names_become_one_topic_level(camera, topic):
    assert topic_name(camera) == topic


def test_invalid_qos_is_rejected():
    with pytest.raises(ValueError, match="qos"):
        MqttSink(qos=3)


@pytest.mark.parametrize("device", ["a/b", "+", "#", "", "two words"])
def test_a_device_id_that_is_not_one_topic_level_is_rejected(device):
    with pytest.raises(ValueError, match="device id"):
        MqttSink(device=device)


def test_the_device_id_defaults_to_the_host_name(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "till 2/shop")
    s = MqttSink()
    assert s.availability_topic == "edgecam/till_2_shop/availability"
    assert s.camera_topic("door/1", "events") == "edgecam/till_2_shop/door_1/events"  # the camera stays one level
