"""MQTT sink: events, retained camera state and availability, in the topic style Home Assistant and Frigate use.

Topics (prefix "edgecam" by default; <device> is `device.id` in cameras.yaml, by default the host name):
  edgecam/<device>/availability            "online" / "offline", retained; "offline" is also the last will, so a
                                           device that dies without a clean close still goes offline
  edgecam/<device>/<camera>/availability   "online" / "offline", retained, as the runner reports the camera lost or
                                           restored
  edgecam/<device>/<camera>/events         one JSON object per event (Event.to_dict()), not retained
  edgecam/<device>/<camera>/state          JSON, retained: a late subscriber (a dashboard that starts later) sees the
                                           latest

The device level is always there, also for a single device: many devices share one broker (a consumer subscribes to
`edgecam/+/+/events`), and one topic shape for every deployment means no consumer has to guess which one it sees.
(Before it, topics were `<prefix>/<camera>/...` and `<prefix>/availability`.)

The broker is infrastructure the camera must outlive: an unreachable broker at start logs one warning and paho keeps
retrying in the background (`loop_start` + `reconnect_delay_set`). QoS>0 messages published meanwhile wait in paho's
queue, bounded by `max_queued`; QoS 0 messages published while disconnected are dropped (that is what QoS 0 means).

Retries while the broker is away are one TCP connect every `reconnect_max_delay` (1.5 s) at most, for as long as it
takes: cheap for a device even over hours, and the queue is delivered within that delay of the broker's return (a
doubling backoff capped at 30 s made a 20 s outage cost 11 s more). A broker that refuses the login is not an
outage: it is retried every `AUTH_RETRY` seconds, so wrong credentials do not fill the broker's log.

Login and TLS: `username` / `password` (the password is never logged), `tls=True` with `ca_certs` to verify the
broker (None: the system's CAs) and `certfile` + `keyfile` for a client certificate.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edgecam.runtime.device_id import DEVICE_ID, default_device_id
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.sinks.jsonl import to_jsonable
from edgecam.runtime.types import Event

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")
AUTH_RETRY = 30  # seconds between attempts while the broker refuses the login (bad credentials, not authorised)
_LOGIN_REFUSED = {134, 135, 140}  # MQTT 5 reason codes; paho maps 3.1.1's return codes 4 and 5 onto 134 and 135


def topic_name(camera: str) -> str:
    """A camera name as one topic level: '/', '+', '#' would split it or turn it into a wildcard."""
    return _TOPIC_UNSAFE.sub("_", camera) or "_"


class MqttSink:
    """`start()`, then `publish_event` / `publish_state` / `set_camera_online` from any thread; `close()` at the end."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "edgecam",
        device: str | None = None,
        qos: int = 1,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        max_queued: int = 1000,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 1.5,
        tls: bool = False,
        ca_certs: str | Path | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT qos must be 0, 1 or 2, got {qos}")
        device = default_device_id() if device is None else device
        if not DEVICE_ID.match(device):
            raise ValueError(f"MQTT device id must be letters, digits, _ - . (one topic level), got {device!r}")
        self.host, self.port, self.prefix, self.qos, self.keepalive = host, port, prefix.rstrip("/"), qos, keepalive
        self.device = device
        self.base_topic = f"{self.prefix}/{device}"  # every topic of this device starts with it
        self.availability_topic = f"{self.base_topic}/availability"
        self.dropped = 0  # messages paho refused (queue full, or QoS 0 while disconnected)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._cameras_online: dict[str, bool] = {}
        self._warned = False
        self._closing = False
        cid = client_id or f"edgecam-{device}-{socket.gethostname()}-{os.getpid()}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls:
            files = [str(f) if f is not None else None for f in (ca_certs, certfile, keyfile)]
            try:
                self._client.tls_set(ca_certs=files[0], certfile=files[1], keyfile=files[2])
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is not PEM, a wrong key
                given = ", ".join(f for f in files if f) or "the system's CAs"
                raise EdgecamError(
                    f"MQTT TLS: cannot load {given}: {exc}", fix="give PEM files: the CA, a certificate and its key"
                ) from None
        self._retry = (reconnect_min_delay, reconnect_max_delay)
        self._client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=reconnect_min_delay, max_delay=reconnect_max_delay)
        self._client.max_queued_messages_set(max_queued)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> MqttSink:
        """Connect in the background; never raises for an unreachable broker (it keeps retrying)."""
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self._client.loop_start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once the broker accepted the connection (for tests and start-up ordering; publishing never needs it)."""
        return self._connected.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Mark the runner and its cameras offline (retained), then disconnect cleanly so the last will is not sent."""
        self._closing = True
        if self.connected:
            with self._lock:
                cameras = list(self._cameras_online)
            infos = [
                self._publish(self.camera_topic(c, "availability"), "offline", qos=1, retain=True) for c in cameras
            ]
            infos.append(self._publish(self.availability_topic, "offline", qos=1, retain=True))
            for info in infos:
                if info is not None and info.rc == mqtt.MQTT_ERR_SUCCESS:
                    try:
                        info.wait_for_publish(timeout)
                    except (RuntimeError, ValueError):
                        break  # the connection went while waiting; the last will says offline instead
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> MqttSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- publishing -----------------------------------------------------------------------------------------

    def publish_event(self, camera: str, event: Event) -> bool:
        """`<prefix>/<device>/<camera>/events`, JSON, not retained (an event is news once). False: paho dropped it."""
        payload = json.dumps(to_jsonable(event.to_dict()), separators=(",", ":"), default=str)
        return self._ok(self._publish(self.camera_topic(camera, "events"), payload, self.qos, retain=False), self.qos)

    def publish_state(self, camera: str, state: dict[str, Any]) -> bool:
        """`<prefix>/<device>/<camera>/state`, JSON, retained so a late subscriber gets the latest state at once."""
        payload = json.dumps(to_jsonable(state), separators=(",", ":"), default=str)
        return self._ok(self._publish(self.camera_topic(camera, "state"), payload, self.qos, retain=True), self.qos)

    def set_camera_online(self, camera: str, online: bool) -> bool:
        """`<prefix>/<device>/<camera>/availability`, retained; re-sent on every (re)connect (a broker may lose it)."""
        with self._lock:
            self._cameras_online[camera] = online
        topic = self.camera_topic(camera, "availability")
        return self._ok(self._publish(topic, "online" if online else "offline", qos=1, retain=True), 1)

    def camera_topic(self, camera: str, leaf: str) -> str:
        """`<prefix>/<device>/<camera>/<leaf>`: where this sink publishes `leaf` (events, state, availability)."""
        return f"{self.base_topic}/{topic_name(camera)}/{leaf}"

    def _publish(self, topic: str, payload: str, qos: int, retain: bool) -> mqtt.MQTTMessageInfo | None:
        try:
            return self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # payload too large or an invalid topic: a bug upstream, not a broker problem
            log.error("MQTT publish to %s refused: %s", topic, exc)
            return None

    def _ok(self, info: mqtt.MQTTMessageInfo | None, qos: int) -> bool:
        # QoS>0 while disconnected: paho queues the message and reports NO_CONN; it is sent after the reconnect.
        if info is not None and (info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0)):
            return True
        with self._lock:
            self.dropped += 1
        return False

    # --- paho callbacks (run on paho's network thread) ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            if reason_code.value in _LOGIN_REFUSED:
                client.reconnect_delay_set(AUTH_RETRY, AUTH_RETRY)
                self._warn(
                    f"MQTT broker {self.host}:{self.port} refused the login: {reason_code} (check mqtt.username and "
                    f"the password variable); retrying every {AUTH_RETRY} s"
                )
            else:
                self._warn(f"MQTT broker {self.host}:{self.port} refused the connection: {reason_code}")
            return
        log.info("MQTT connected to %s:%s", self.host, self.port)
        client.reconnect_delay_set(*self._retry)
        self._warned = False
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        with self._lock:
            cameras = dict(self._cameras_online)
        for camera, online in cameras.items():
            client.publish(self.camera_topic(camera, "availability"), "online" if online else "offline", 1, True)
        self._connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:`, so the reason (refused, no route, TLS) is still at hand
        exc = sys.exc_info()[1]
        kind = "TLS handshake failed" if isinstance(exc, ssl.SSLError) else "unreachable"
        reason = f" ({exc})" if exc is not None else ""
        self._warn(f"MQTT broker {self.host}:{self.port} {kind}{reason}; retrying in the background")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._closing:
            self._warn(f"MQTT connection to {self.host}:{self.port} lost ({reason_code}); reconnecting")

    def _warn(self, message: str) -> None:
        """One warning per outage, not one per retry: a missing broker must not flood the device's log."""
        if self._warned:
            log.debug(message)
        else:
            self._warned = True
            log.warning(message)
