"""Fault test: the MQTT broker goes away while events flow, and comes back on the same port.

What a device needs: no event published during the outage is lost (QoS 1, within the sink's queue bound), and the
queue reaches the broker soon after it returns, not after paho's backoff has grown (it was 11 s after a 20 s outage).

How the count is kept honest: the subscriber holds a persistent session (clean session off, QoS 1) on a broker with
persistence on, stopped with SIGTERM so it saves that session. Whatever the sink delivers after the restart is queued
for the subscriber even if the sink reconnects before the subscriber does, so a missing event is the sink's loss, not
a race between two reconnecting clients. (With persistence off the subscription dies with the broker and the count
would measure that race.) The sink's own session is clean: the outage's events exist only in its queue.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")

from edgecam.runtime.sinks.mqtt import MqttSink  # noqa: E402
from edgecam.runtime.types import Event  # noqa: E402
from tests.conftest import soak  # noqa: E402
from tests.runtime.test_mqtt import MOSQUITTO, Broker  # noqa: E402

RATE = 20.0  # events per second, steady, before, during and after the outage
DELIVERY_BOUND = 4.0  # seconds from the broker's return to the first event of the outage reaching the subscriber


class PersistentBroker(Broker):
    """The test_mqtt broker with persistence on (SIGTERM saves sessions and their queued messages)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        store = folder / "store"
        store.mkdir()
        self.config.write_text(
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {store}/\nautosave_interval 0\n"
        )


class Counter:
    """A subscriber with a persistent session; records when each sequence number first arrived."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrived: dict[int, float] = {}
        self._lock = threading.Lock()
        self.client: mqtt.Client | None = None

    def connect(self, subscribe: bool) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-counter", clean_session=False)
        client.on_message = self._on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        if subscribe:
            client.subscribe("edgecam/box1/cam/events", qos=1)
            assert subscribed.wait(5), "subscription not acknowledged"
        self.client = client

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, message) -> None:
        seq = json.loads(message.payload)["seq"]
        with self._lock:
            self.arrived.setdefault(seq, time.monotonic())

    def count(self) -> int:
        with self._lock:
            return len(self.arrived)


class Publisher(threading.Thread):
    """Publishes `Event("tick", "cam", ..., {"seq": n})` through the sink at RATE; remembers when each was sent."""

    def __init__(self, sink: MqttSink) -> None:
        super().__init__(daemon=True)
        self.sink, self.sent, self.refused = sink, [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            seq = len(self.sent)
            self.sent.append(time.monotonic())
            if not self.sink.publish_event("cam", Event("tick", "cam", time.time(), {"seq": seq})):
                self.refused += 1
            self.stop.wait(max(0.0, start + (seq + 1) / RATE - time.monotonic()))


@pytest.mark.fault
def test_broker_outage_loses_no_event_and_delivery_resumes_at_once(tmp_path, caplog):
    if MOSQUITTO is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; CI must run the MQTT tests")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    outage = soak(8, 20)
    caplog.set_level(logging.WARNING, logger="edgecam.runtime.sinks.mqtt")
    broker = PersistentBroker(tmp_path)
    broker.start()
    counter = Counter(broker.port)
    counter.connect(subscribe=True)
    sink = MqttSink(port=broker.port, device="box1", qos=1).start()
    publisher = Publisher(sink)
    try:
        assert sink.wait_connected(5)
        publisher.start()
        time.sleep(1.0)
        counter.disconnect()  # its session (and what is queued for it) stays with the broker
        broker.stop()  # SIGTERM: the broker saves the sessions and exits; the sink sees its connection drop
        down = time.monotonic()
        time.sleep(outage)
        assert not sink.connected
        broker.start()  # returns once the port accepts connections again
        up = time.monotonic()
        counter.connect(subscribe=False)  # the persistent session resumes: no new subscription needed
        time.sleep(2.0)
        publisher.stop.set()
        publisher.join(5)
        total = len(publisher.sent)
        deadline = time.monotonic() + 15
        while counter.count() < total and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.stop.set()
        sink.close()
        if counter.client is not None:
            counter.disconnect()
        broker.stop()

    during = [seq for seq, sent in enumerate(publisher.sent) if down <= sent < up]
    missing = sorted(set(range(total)) - set(counter.arrived))
    assert publisher.refused == 0 and sink.dropped == 0
    assert len(during) >= outage * RATE * 0.8, "the publisher did not keep its rate through the outage"
    assert not missing, f"{len(missing)} of {total} events lost, e.g. {missing[:10]}"
    delay = min(counter.arrived[seq] for seq in during) - up
    print(f"\nbroker outage {outage:g} s: {total} events, none lost; first outage event {delay:.2f} s after restart")
    assert delay <= DELIVERY_BOUND, f"the queue reached the broker {delay:.1f} s after it returned"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "lost" in warnings[0], warnings  # one line for the whole outage
