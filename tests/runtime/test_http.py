"""HttpServer endpoints and Telemetry, against a StateRegistry fed by a small thread with changing synthetic JPEGs."""

from __future__ import annotations

import http.client
import json
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgecam.runtime.sinks.http import BOUNDARY, HttpServer  # noqa: E402
from edgecam.runtime.state import StateRegistry  # noqa: E402
from edgecam.runtime.stats import LatencyHistogram  # noqa: E402
from edgecam.runtime.telemetry import Telemetry  # noqa: E402
from edgecam.runtime.types import Event  # noqa: E402

STATS = {
    "front": {
        "online": True, "fps_in": 12.5, "fps_out": 11.0, "frames_in": 100, "frames_out": 90, "dropped": 10,
        "reconnects": 2, "inference_errors": 1, "motion_skipped": 5, "queue_depth": 1,
        "frame_age_ms": {"p50": 30.0, "p95": 60.0, "last": 42.0},
        "stages": {"infer": {"p50_ms": 12.0, "p95_ms": 20.0, "count": 90, "mean_ms": 13.0}},
    },
    "back": {"online": True, "fps_in": 5.0, "frames_in": 50, "frame_age_ms": {"last": 100.0}},
}  # fmt: skip
INFER_SECONDS = (0.004, 0.012, 0.012, 0.3, 7.0)  # what front's infer histogram observed (7 s: beyond the last bound)


def infer_histogram() -> dict:
    h = LatencyHistogram()
    for seconds in INFER_SECONDS:
        h.observe(seconds)
    return {"stages": {"infer": h.snapshot()}}


def jpeg(i: int) -> bytes:
    image = np.full((48, 64, 3), (i * 37) % 256, np.uint8)
    cv2.putText(image, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture
def registry():
    reg = StateRegistry()
    for name, stats in STATS.items():
        reg.camera(name).update(stats, histograms=infer_histogram() if name == "front" else None)
        reg.camera(name).set_jpeg(jpeg(0))  # every camera has a frame before the server starts
    reg.camera("front").add_event(Event("person_entered", "front", 1.0, {"track_id": 3}))
    stop = threading.Event()

    def feed() -> None:
        i = 1
        while not stop.is_set():
            for name in STATS:
                reg.camera(name).set_jpeg(jpeg(i))
            i += 1
            stop.wait(0.04)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield reg
    stop.set()
    thread.join(2)


@pytest.fixture
def server(registry):
    srv = HttpServer(registry, Telemetry(device="box1")).start()
    yield srv
    srv.stop()


def get(server: HttpServer, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(name, labels without `device`): value}; every sample must carry device="box1"."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels.get("device") == "box1", s
            labels = {k: v for k, v in s.labels.items() if k != "device"}
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def test_metrics_parse_and_hold_every_camera(server):
    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    values = samples(body.decode())
    assert values[("edgecam_frames_in_total", (("camera", "front"),))] == 100
    assert values[("edgecam_frames_in_total", (("camera", "back"),))] == 50
    assert values[("edgecam_dropped_frames_total", (("camera", "front"),))] == 10
    assert values[("edgecam_fps_in", (("camera", "front"),))] == 12.5
    assert values[("edgecam_frame_age_seconds", (("camera", "back"),))] == pytest.approx(0.1)
    assert values[("edgecam_camera_online", (("camera", "back"),))] == 1
    front_infer = (("camera", "front"), ("stage", "infer"))
    assert values[("edgecam_stage_latency_seconds_count", front_infer)] == len(INFER_SECONDS)
    assert values[("edgecam_stage_latency_seconds_sum", front_infer)] == pytest.approx(sum(INFER_SECONDS))
    for le, expected in (("0.005", 1), ("0.01", 1), ("0.025", 3), ("2.0", 4), ("+Inf", 5)):
        assert (
            values[("edgecam_stage_latency_seconds_bucket", (*front_infer[:1], ("le", le), front_infer[1]))] == expected
        )
    assert not any("p95" in name for name, _ in values)  # the gauges that could not be aggregated are gone
    # A second scrape of unchanged stats does not count anything twice.
    again = samples(get(server, "/metrics")[2].decode())
    assert again[("edgecam_frames_in_total", (("camera", "front"),))] == 100


def test_metrics_disabled_without_telemetry(registry):
    with HttpServer(registry, None) as srv:
        assert get(srv, "/metrics")[0] == 404


def test_telemetry_counters_move_by_the_delta():
    t = Telemetry()

    def value(name: str, **labels: str) -> float | None:
        return t.registry.get_sample_value(name, {"camera": "c", **labels})

    t.record("c", {"frames_in": 10, "online": True, "queue_depth": 2})
    t.record("c", {"frames_in": 10})
    assert value("edgecam_frames_in_total") == 10
    t.record("c", {"frames_in": 15, "online": False, "fps_in": "n/a"})
    assert value("edgecam_frames_in_total") == 15
    assert value("edgecam_camera_online") == 0
    assert value("edgecam_fps_in") is None  # not a number: skipped, never a crash
    t.record("c", {"frames_in": 3})  # the runner restarted its counts
    assert value("edgecam_frames_in_total") == 18
    t.record("c", {"frame_age_ms": {"last": 250}, "events": {"zone_enter": 2, "tamper": "x"}})
    assert value("edgecam_frame_age_seconds") == 0.25
    assert value("edgecam_events_total", type="zone_enter") == 2
    assert value("edgecam_events_total", type="tamper") is None  # not a number: skipped
    t.record("c", {"events": {"zone_enter": 3, "zone_exit": 1}})
    t.record("c", {"events": {"zone_enter": 3, "zone_exit": 1}})  # the same stats again count nothing
    assert value("edgecam_events_total", type="zone_enter") == 3
    assert value("edgecam_events_total", type="zone_exit") == 1
    assert b'edgecam_queue_depth{camera="c",device="' in t.exposition()
    assert Telemetry().registry is not t.registry  # private registries: no clash between instances


def test_health_is_200_only_when_every_camera_is_online(server, registry):
    status, _, body = get(server, "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert health["cameras"]["front"] == {"online": True, "frame_age_ms": 42.0, "stale": False}
    registry.camera("back").update({"online": False})
    status, _, body = get(server, "/health")
    assert status == 503 and json.loads(body)["status"] == "degraded"
    assert json.loads(body)["cameras"]["back"]["online"] is False


def test_health_counts_a_camera_with_stale_stats_as_offline(registry):
    with HttpServer(registry, stale_after=0.2) as srv:
        registry.camera("back").update({"online": True})
        time.sleep(0.3)
        registry.camera("front").update({"online": True})
        status, _, body = get(srv, "/health")
    cameras = json.loads(body)["cameras"]
    assert status == 503 and cameras["back"] == {"online": False, "frame_age_ms": 100.0, "stale": True}
    assert cameras["front"]["online"] is True


def test_health_without_cameras_is_degraded():
    with HttpServer(StateRegistry()) as srv:
        assert get(srv, "/health")[0] == 503


def test_api_cameras_is_the_registry_snapshot(server):
    status, headers, body = get(server, "/api/cameras")
    cameras = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(cameras) == {"front", "back"}
    assert cameras["front"]["stats"]["fps_in"] == 12.5
    assert cameras["front"]["events"][0]["kind"] == "person_entered"


def read_part(response: http.client.HTTPResponse) -> bytes:
    """One JPEG of a multipart stream; EOFError when the server ended the stream."""
    line = b"\r\n"
    while line.strip() == b"":
        line = response.fp.readline()
        if line == b"":
            raise EOFError("end of stream")
    assert line.strip() == f"--{BOUNDARY}".encode()
    headers = {}
    while (line := response.fp.readline().strip()) != b"":
        key, value = line.decode().split(":", 1)
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return response.fp.read(int(headers["content-length"]))


def open_stream(server: HttpServer, camera: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"/stream/{camera}.mjpg")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    return conn, response


def test_mjpeg_stream_yields_distinct_frames(server):
    conn, response = open_stream(server, "front")
    try:
        parts, deadline = set(), time.monotonic() + 3
        while len(parts) < 3 and time.monotonic() < deadline:
            part = read_part(response)
            assert cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
            parts.add(part)
        assert len(parts) >= 3
    finally:
        response.close()
        conn.close()


def wait_until(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stream_handler_ends_when_the_client_goes(server):
    conn, response = open_stream(server, "back")
    read_part(response)
    assert server.active == 1  # a worker holds the stream
    response.close()
    conn.close()
    assert wait_until(lambda: server.active == 0)


def test_stop_ends_open_streams(registry):
    srv = HttpServer(registry).start()
    conn, response = open_stream(srv, "front")
    read_part(response)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(EOFError):
        for _ in range(100):  # whatever was in flight, then the end of the stream
            read_part(response)
    conn.close()
    assert srv.active == 0 and not [t for t in threading.enumerate() if t.name.startswith("edgecam-http")]


def test_stream_count_is_bounded(registry):
    with HttpServer(registry, max_streams=1) as srv:
        conn, response = open_stream(srv, "front")
        try:
            read_part(response)
            status, _, body = get(srv, "/stream/back.mjpg")
            assert status == 503 and "too many" in json.loads(body)["error"]
        finally:
            response.close()
            conn.close()
        assert wait_until(lambda: srv.active == 0)
        second, response = open_stream(srv, "back")  # the slot is free again
        response.close()
        second.close()


def test_snapshot_is_the_newest_jpeg(server, registry):
    status, headers, body = get(server, "/snapshot/front.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is not None
    registry.camera("new")  # a camera with no frame yet
    assert get(server, "/snapshot/new.jpg")[0] == 503


@pytest.mark.parametrize(
    "path", ["/stream/nope.mjpg", "/snapshot/nope.jpg", "/stream/front.jpg", "/snapshot/front.mjpg", "/nothing"]
)
def test_unknown_paths_are_404_and_create_no_camera(server, registry, path):
    status, _, body = get(server, path)
    assert status == 404 and "error" in json.loads(body)
    assert set(registry.names()) == {"front", "back"}


def test_live_view_page_is_self_contained(server):
    status, headers, body = get(server, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "api/cameras" in page and ".mjpg" in page
    assert "http://" not in page and "https://" not in page  # no CDN, no external assets
