"""The device id: which box a message or a metric comes from, when many devices share one broker and one Prometheus.

It is one MQTT topic level (`<prefix>/<device>/<camera>/events`) and the `device` label of every metric, so it
follows the camera-name rule (letters, digits, `_ - .`, at most 64): no `/` to split a topic level, no `+` or `#`
to turn it into a wildcard. Unset, it is the host name made to fit that rule, so two boxes differ without any
configuration, and a box keeps its id across restarts.
"""

from __future__ import annotations

import re
import socket

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def device_id_from(host: str) -> str:
    """A host name made into a valid device id: other characters become `_`, cut to 64; "edgecam" if nothing is left."""
    text = _UNSAFE.sub("_", host).lstrip("_.-")[:64]
    return text if DEVICE_ID.match(text) else "edgecam"


def default_device_id() -> str:
    """This machine's host name as a device id."""
    return device_id_from(socket.gethostname())
