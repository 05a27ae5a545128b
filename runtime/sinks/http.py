"""The device's small web server: live view, MJPEG streams, snapshots, health, JSON state and Prometheus metrics.

The stdlib's request parsing (`BaseHTTPRequestHandler`) on `serve.BoundedServer` (a fixed worker pool, connection
timeouts, quiet client resets; why, there): no web framework on the device. It only reads the `StateRegistry` the
camera runners write, so a slow or stuck client never slows a camera down. Binds to 127.0.0.1 by default; exposing it
on the network is an explicit choice of `host` and needs a token: every path but `/health` then asks for it.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.sinks.auth import COOKIE, Guard, is_loopback, redact
from edgecam.runtime.sinks.serve import BoundedServer
from edgecam.runtime.state import CameraState, StateRegistry
from edgecam.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

BOUNDARY = "edgecamframe"
OPEN_PATHS = frozenset({"/health"})  # answered without the token: probes and watchdogs carry no secret
METRICS_SHARE = 0.5  # seconds
_CAMERA_PATH = re.compile(r"^/(stream|snapshot)/([^/]+)\.(mjpg|jpg)$")


def _liveview_html() -> bytes:
    """The live-view page, read from package data so an installed wheel serves the same file."""
    return files("edgecam.runtime.sinks").joinpath("liveview.html").read_bytes()


class HttpServer:
    """`start()` serves on its own threads; `.port` is the bound port (port=0 picks one); `stop()` ends streams too.

    `token`: when given, every path but `/health` needs it, as `Authorization: Bearer <token>`, `?token=<token>` (for
    an MJPEG URL in another program) or the session cookie the live view gets from `/?token=<token>`. A host other
    than loopback refuses to start without one. `timeout`: seconds a connection may take to send its request, and
    the longest a write to a client that stopped reading may block. `workers`: threads for short requests, on top of
    one per allowed MJPEG stream (`max_streams`), so open streams never starve scrapes.
    """

    def __init__(
        self,
        registry: StateRegistry,
        telemetry: Telemetry | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_fps: float = 15.0,
        max_streams: int = 8,
        stale_after: float = 10.0,
        token: str | None = None,
        timeout: float = 10.0,
        workers: int = 8,
        origin: str | Path | None = None,
    ) -> None:
        self.registry = registry
        self.telemetry = telemetry
        self.host = host
        self.port = port
        self.max_fps = max_fps
        self.max_streams = max_streams
        self.stale_after = stale_after
        self.timeout = timeout
        self.workers = workers
        self.origin = origin  # the config file, named in start()'s errors
        self._guard = Guard(token)
        # Each MJPEG client costs a thread and a socket write per frame: cap them so viewers cannot starve the cameras.
        self._streams = threading.BoundedSemaphore(max_streams)
        self._stopping = threading.Event()
        self._server: BoundedServer | None = None
        self._metrics_lock = threading.Lock()
        self._metrics_cache: tuple[float, bytes] = (-1e9, b"")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.host)

    def start(self) -> HttpServer:
        """Bind (a busy port or an unknown host is an `EdgecamError` naming the fix), then serve."""
        if self.exposed and not self._guard.enabled:
            raise EdgecamError(
                f"http.host: {self.host} is reachable from the network and no token is set",
                path=self.origin,
                fix="set a token (http.token_env, default EDGECAM_HTTP_TOKEN) or bind 127.0.0.1",
            )
        handler = _make_handler(self)
        server = BoundedServer(
            lambda conn, head, address: handler(conn, address, head),
            self.host,
            self.port,
            workers=self.max_streams + self.workers,
            timeout=self.timeout,
        )
        self._listen(server)
        self._server = server
        self._stopping.clear()
        server.start()
        if self.exposed:
            print(
                f"warning: the live view, /api and /metrics are exposed to the network on {self.url} "
                "(every path but /health needs the token)",
                file=sys.stderr,
            )
        log.info("live view on %s", self.url)
        return self

    def _listen(self, server: BoundedServer) -> None:
        where = f"{self.host}:{self.port}"
        try:
            self.port = server.listen()
        except socket.gaierror as exc:
            raise EdgecamError(
                f"http.host: cannot resolve {self.host!r} ({exc.strerror})",
                path=self.origin,
                fix="use an address of this device, e.g. 127.0.0.1, or 0.0.0.0 for every interface",
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                what, fix = "is already in use", "stop the program using it or choose another http.port (0: any free)"
            elif exc.errno == errno.EADDRNOTAVAIL:
                what, fix = "is not an address of this device", "use one of its addresses, 127.0.0.1 or 0.0.0.0"
            elif exc.errno == errno.EACCES:
                what, fix = "needs privileges (ports below 1024)", "use http.port 1024 or above, e.g. 8080"
            else:
                what, fix = f"cannot be bound ({exc.strerror})", "check http.host and http.port"
            raise EdgecamError(f"http: {where} {what}", path=self.origin, fix=fix) from None

    def stop(self) -> None:
        """Stop accepting, end open MJPEG streams (they poll `_stopping`), and release the port."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def active(self) -> int:
        """Requests being answered or queued, open MJPEG streams included."""
        return self._server.active if self._server is not None else 0

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> bytes:
        """The Prometheus exposition; scrapes within `METRICS_SHARE` seconds share one rendering, so a burst of
        scrapers costs one pass over the cameras instead of one each (far shorter than any scrape interval)."""
        assert self.telemetry is not None
        with self._metrics_lock:
            made, body = self._metrics_cache
            if time.monotonic() - made > METRICS_SHARE:
                self.telemetry.sync(self.registry)
                body = self.telemetry.exposition()
                self._metrics_cache = (time.monotonic(), body)
            return body

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


class _SocketWriter(io.BufferedIOBase):
    """Unbuffered writes with `sendall` (a plain `socket.send` may write only part)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


def _make_handler(app: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """One request per connection: the head was read by the server; the answer is written to the socket."""

        server_version = "edgecam"
        protocol_version = "HTTP/1.1"

        def __init__(self, conn: socket.socket, address: tuple, head: bytes) -> None:
            self._head = head
            super().__init__(conn, address, None)  # type: ignore[arg-type]  # no socketserver behind it

        def setup(self) -> None:
            self.connection = self.request
            self.rfile = io.BytesIO(self._head)
            self.wfile = _SocketWriter(self.connection)

        def finish(self) -> None:
            pass  # the server closes the connection

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            log.debug("%s %s", self.address_string(), redact(format % args))

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.close_connection = True
            url = urlsplit(self.path)
            path = unquote(url.path)
            if path not in OPEN_PATHS and not app._guard.allows(self.headers, url.query):
                self._unauthorized()
                return
            if path in ("/", "/index.html") and "token=" in url.query and app._guard.enabled:
                self._login(path)
                return
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

        def _unauthorized(self) -> None:
            body = {"error": "unauthorized: send `Authorization: Bearer <token>`, or open /?token=<token> in a browser"}
            data = json.dumps(body).encode()
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="edgecam"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _login(self, path: str) -> None:
            """`/?token=...`: a session cookie for the page, its API calls and its `<img>` streams, and the token
            out of the address bar (and so out of the browser's history)."""
            self.send_response(303)
            self.send_header("Set-Cookie", f"{COOKIE}={app._guard.cookie}; Path=/; HttpOnly; SameSite=Strict")
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body, default=str).encode(), "application/json")

        def _metrics(self) -> None:
            if app.telemetry is None:
                self._json(404, {"error": "metrics are disabled (no Telemetry given to the HTTP server)"})
                return
            self._send(200, app.metrics(), CONTENT_TYPE_LATEST)

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
