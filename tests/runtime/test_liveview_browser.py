"""The live-view page in headless Chromium: it loads, its stream images update, its event lists fill.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (NUL-separated JSON on fds 3 and 4), so
the test polls the page's own DOM state (`data-frames` per camera tile, the event items) with no extra Python
dependency and no fixed sleep. Screenshots go to test-artifacts/ (ignored by git) for a human to look at.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.sinks.http import HttpServer
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.types import Event

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CAMERAS = ("front door", "shelf 2")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--window-size=1280,800",
]  # fmt: skip


_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"
)


def _pipe_above_4() -> tuple[int, int]:
    """A pipe whose ends are not fds 3 or 4, so `dup2(r, 3); dup2(w, 4)` cannot overwrite one end with the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Chromium:
    """A headless Chromium and one page session, spoken to over the DevTools pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        to_browser_r, self._to_browser = _pipe_above_4()
        self._from_browser, from_browser_w = _pipe_above_4()
        # Chromium reads commands on fd 3 and writes replies on fd 4; a tiny Python trampoline (no preexec_fn, which is
        # unsafe with threads, and no shell, where dash refuses fds above 9) puts the pipe ends there and execs it.
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w), *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so close() can end the renderers with it
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._id, self.session = b"", 0, None
        page = next(t for t in self.send("Target.getTargets", timeout=20)["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]

    def send(self, method: str, params: dict | None = None, timeout: float = 10.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, f"{method}: {reply['error']}"
                    return reply["result"]
            left = deadline - time.monotonic()
            assert left > 0, f"chromium did not answer {method} within {timeout}s"
            if select.select([self._from_browser], [], [], left)[0]:
                chunk = os.read(self._from_browser, 1 << 20)
                assert chunk, "chromium exited"
                self._buffer += chunk

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"]["value"]

    def screenshot(self, path: Path, width: int, height: int, mobile: bool = False) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile}
        self.send("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.4)  # one refresh of layout and a frame or two
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=3)
            self.proc.wait(timeout=5)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        os.close(self._to_browser)
        os.close(self._from_browser)


def frame(name: str, i: int) -> bytes:
    image = np.full((360, 640, 3), (70, 50, 35) if name == CAMERAS[0] else (50, 40, 70), np.uint8)
    x = 40 + (i * 13) % 520
    cv2.rectangle(image, (x, 140), (x + 70, 300), (0, 200, 255), -1)
    cv2.putText(image, f"{name}  #{i}", (20, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 2)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


TOKEN = "liveview-test-token-0123456789"


@pytest.fixture(params=[None, TOKEN], ids=["loopback-open", "with-token"])
def server(request):
    if CHROMIUM is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the live-view browser test")
        pytest.skip(reason)
    registry = StateRegistry()
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            for k, name in enumerate(CAMERAS):
                camera = registry.camera(name)
                camera.set_jpeg(frame(name, i))
                camera.update({
                    "online": k == 0, "fps_in": 10.0 - k, "fps_out": 9.5 - k, "frames_in": i, "dropped": i // 7,
                    "reconnects": k, "frame_age_ms": {"last": 35.0 + k * 20},
                    "stages": {"infer": {"p50_ms": 11.5, "p95_ms": 19.0}},
                })  # fmt: skip
                if i % 8 == k:
                    kind = "person_entered" if k == 0 else "shelf_empty"
                    camera.add_event(
                        Event(kind, name, time.time(), {"track_id": i, "zone": "door" if k == 0 else "A3"})
                    )
            i += 1
            stop.wait(0.1)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    srv = HttpServer(registry, token=request.param).start()
    yield srv
    srv.stop()
    stop.set()
    thread.join(2)


TILE_STATE = """JSON.stringify([...document.querySelectorAll('.cam')].map(t => ({
  name: t.dataset.camera, frames: +t.dataset.frames, online: t.dataset.online,
  events: [...t.querySelectorAll('.events li')].map(li => li.textContent),
  stats: [...t.querySelectorAll('.stats dd')].map(dd => dd.textContent)})))"""


def test_live_view_shows_streams_stats_and_events(server, tmp_path):
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        # With a token, the page is opened once as /?token=...: the server answers with a session cookie and sends
        # the browser back to /, so the page's fetch() calls and <img> streams are authorised by the cookie.
        token = server._guard.enabled
        browser.send("Page.navigate", {"url": server.url + (f"/?token={TOKEN}" if token else "/")})
        first, tiles, deadline = None, [], time.monotonic() + 12
        while time.monotonic() < deadline:
            tiles = json.loads(browser.evaluate(TILE_STATE))
            if len(tiles) == 2 and first is None:
                first = {t["name"]: t for t in tiles}
            done = first and all(
                t["frames"] >= first[t["name"]]["frames"] + 3 and len(t["events"]) > len(first[t["name"]]["events"])
                for t in tiles
            )
            if done:
                break
            time.sleep(0.25)
        assert sorted(t["name"] for t in tiles) == sorted(CAMERAS)  # (a) the page loaded and found every camera
        for t in tiles:
            start = first[t["name"]]
            assert t["frames"] >= start["frames"] + 3, f"{t['name']}: stream image did not update: {t}"  # (b)
            assert len(t["events"]) > len(start["events"]), f"{t['name']}: event list did not grow: {t}"  # (c)
        by_name = {t["name"]: t for t in tiles}
        assert by_name["front door"]["online"] == "true" and by_name["shelf 2"]["online"] == "false"
        assert by_name["front door"]["stats"][:3] == ["10.0", "9.5", "35 ms"]
        assert by_name["front door"]["stats"][5] == "12 ms / 19 ms"
        assert "person_entered" in by_name["front door"]["events"][0]
        assert "shelf_empty" in by_name["shelf 2"]["events"][0]
        assert browser.evaluate("document.getElementById('error').className") == ""
        assert browser.evaluate("location.search") == ""  # the token left the address bar (and history)
        if token:
            return
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "liveview.png", 1280, 800)
        browser.screenshot(ARTIFACTS / "liveview-phone.png", 390, 844, mobile=True)
        assert (ARTIFACTS / "liveview.png").stat().st_size > 10_000
    finally:
        browser.close()
