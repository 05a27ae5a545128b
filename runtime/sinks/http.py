"""The device's small web server: live view, MJPEG streams, snapshots, health, JSON state and Prometheus metrics.

Standard-library `ThreadingHTTPServer` on a daemon thread: no web framework on the device. It only reads the
`StateRegistry` the camera runners write, so a slow or stuck client never slows a camera down. Binds to 127.0.0.1 by
default; exposing it on the network is an explicit choice of `host`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from edgecam.runtime.state import CameraState, StateRegistry
from edgecam.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

BOUNDARY = "edgecamframe"
_CAMERA_PATH = re.compile(r"^/(stream|snapshot)/([^/]+)\.(mjpg|jpg)$")


def _liveview_html() -> bytes:
    """The live-view page, read from package data so an installed wheel serves the same file."""
    return files("edgecam.runtime.sinks").joinpath("liveview.html").read_bytes()


class HttpServer:
    """`start()` serves on a daemon thread; `.port` is the bound port (port=0 picks one); `stop()` ends streams too."""

    def __init__(
        self,
        registry: StateRegistry,
        telemetry: Telemetry | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_fps: float = 15.0,
        max_streams: int = 8,
        stale_after: float = 10.0,
    ) -> None:
        self.registry = registry
        self.telemetry = telemetry
        self.host = host
        self.port = port
        self.max_fps = max_fps
        self.max_streams = max_streams
        self.stale_after = stale_after
        # Each MJPEG client costs a thread and a socket write per frame: cap them so viewers cannot starve the cameras.
        self._streams = threading.BoundedSemaphore(max_streams)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpServer:
        server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        server.daemon_threads = True  # MJPEG handlers must never keep the process alive
        self._server = server
        self.port = int(server.server_address[1])
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="edgecam-http", daemon=True
        )
        self._thread.start()
        log.info("live view on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, end open MJPEG streams (they poll `_stopping`), and release the port."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the handler asks for --------------------------------------------------------------------------

    def find_camera(self, name: str) -> CameraState | None:
        """A known camera or None: `registry.camera()` would create one for any name a client types."""
        return self.registry.camera(name) if name in self.registry.names() else None

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 when there are cameras and all are online, otherwise 503 (degraded) for probes and watchdogs.

        A camera whose stats stopped changing for `stale_after` seconds counts as offline: its runner may be hung
        with `online` still true, the failure a watchdog most needs to see.
        """
        cameras = {}
        now = time.time()
        for name in self.registry.names():
            snap = self.registry.camera(name).snapshot()
            stats, stale = snap["stats"], now - snap["updated"] > self.stale_after
            age = stats.get("frame_age_ms")
            cameras[name] = {
                "online": bool(stats.get("online", False)) and not stale,
                "frame_age_ms": age.get("last") if isinstance(age, dict) else None,
                "stale": stale,
            }
        ok = bool(cameras) and all(c["online"] for c in cameras.values())
        body = {"status": "ok" if ok else "degraded", "cameras": cameras}
        return (200 if ok else 503), body


def _make_handler(app: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgecam"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = unquote(urlsplit(self.path).path)
            try:
                if path in ("/", "/index.html"):
                    self._send(200, _liveview_html(), "text/html; charset=utf-8")
                elif path == "/metrics":
                    self._metrics()
                elif path == "/health":
                    status, body = app.health()
                    self._json(status, body)
                elif path == "/api/cameras":
                    self._json(200, app.registry.snapshot())
                elif match := _CAMERA_PATH.match(path):
                    kind, name, ext = match.groups()
                    camera = app.find_camera(name)
                    if camera is None or (kind == "stream") != (ext == "mjpg"):
                        self._json(404, {"error": f"unknown camera {name!r}", "cameras": app.registry.names()})
                    elif kind == "stream":
                        if not app._streams.acquire(blocking=False):
                            self._json(503, {"error": f"too many live streams (max {app.max_streams})"})
                            return
                        try:
                            self._stream(camera)
                        finally:
                            app._streams.release()
                    else:
                        self._snapshot(camera)
                else:
                    self._json(404, {"error": f"no such page {path!r}"})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away; nothing to answer

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body, default=str).encode(), "application/json")

        def _metrics(self) -> None:
            if app.telemetry is None:
                self._json(404, {"error": "metrics are disabled (no Telemetry given to the HTTP server)"})
                return
            app.telemetry.sync(app.registry)
            self._send(200, app.telemetry.exposition(), CONTENT_TYPE_LATEST)

        def _snapshot(self, camera: CameraState) -> None:
            jpeg, _ = camera.wait_jpeg(0, timeout=0)
            if jpeg is None:
                self._json(503, {"error": f"camera {camera.name!r} has no frame yet"})
            else:
                self._send(200, jpeg, "image/jpeg")

        def _stream(self, camera: CameraState) -> None:
            """MJPEG: one part per new frame, at most `max_fps`; the current frame again every 2 s when idle.

            The idle repeat shows a fresh client a picture at once and finds clients that left without a FIN.
            """
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            min_interval = 1.0 / app.max_fps if app.max_fps > 0 else 0.0
            seq, sent_at = 0, 0.0
            while not app._stopping.is_set():
                jpeg, new_seq = camera.wait_jpeg(seq, timeout=0.5)
                now = time.monotonic()
                if jpeg is None or (new_seq == seq and now - sent_at < 2.0):
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                seq, sent_at = new_seq, now
                wait = min_interval - (time.monotonic() - now)
                if wait > 0:
                    app._stopping.wait(wait)

    return Handler
