"""The HTTP server under load and abuse, its token, and its bind errors. All traffic stays on 127.0.0.1.

The load figures (p95 of a scrape burst, threads and fds around 500 half-open sockets) are printed here and by
`python -m bench.http_load`; the asserts are generous because the machine is shared.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.http_load import closed_by_server, fds, make_registry, open_half, scrape_burst
from edgecam.runtime.config.base import model_error
from edgecam.runtime.config.cameras import HttpConfig
from edgecam.runtime.config.loader import load_cameras_config
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.sinks import serve
from edgecam.runtime.sinks.auth import is_loopback
from edgecam.runtime.sinks.http import HttpServer
from edgecam.runtime.telemetry import Telemetry

TOKEN = "s3cret-test-token-abcdef0123456789"


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def get(server: HttpServer, path: str, headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0): what a crashed or killed client looks like."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def frames():
    """A registry whose cameras get a new JPEG every 40 ms (for the MJPEG streams)."""
    registry = make_registry(2)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            for name in registry.names():
                registry.camera(name).set_jpeg(b"\xff\xd8" + bytes([i % 256]) * 2000 + b"\xff\xd9")
            i += 1
            stop.wait(0.04)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield registry
    stop.set()
    thread.join(2)


# --- 1. load and abuse ------------------------------------------------------------------------------------------


def test_a_burst_of_200_scrapes_is_all_answered():
    """The stdlib server's backlog of 5 left dozens of a 200-scrape burst waiting 15 s and more in SYN retries."""
    with HttpServer(make_registry(), Telemetry()) as srv:
        burst = scrape_burst(srv.port, 200, timeout=15.0)
    print("200 concurrent GET /metrics: ok {ok}, failed {failed}, p50 {p50:.3f} s, p95 {p95:.3f} s".format(**burst))
    assert burst["ok"] == 200 and burst["failed"] == 0
    assert burst["max"] < 15.0


def test_half_open_connections_hold_no_threads_and_are_closed_after_the_timeout():
    """500 sockets that send nothing or half a request line: no thread each, closed after `timeout`, fds returned."""
    threads_before, fds_before = threading.active_count(), fds()
    with HttpServer(make_registry(), Telemetry(), timeout=1.0) as srv:
        pool = srv.max_streams + srv.workers
        socks = open_half(srv.port, 500)
        try:
            time.sleep(0.3)
            threads_during = threading.active_count()
            status, _, _ = get(srv, "/metrics")  # still answered meanwhile
            assert status == 200
            assert wait_until(lambda: closed_by_server(socks) == len(socks), timeout=1.0 + 8)
            threads_after_timeout = threading.active_count()
        finally:
            for s in socks:
                s.close()
        fds_open = fds()
    print(
        f"500 half-open: threads before {threads_before}, during {threads_during}, after {threads_after_timeout}; "
        f"fds before {fds_before}, after {fds()} (with the server still up: {fds_open})"
    )
    assert threads_during <= threads_before + 1 + pool  # the server's one waiting thread and its fixed pool
    assert threads_after_timeout <= threads_before + 1 + pool
    assert fds() <= fds_before + 1


def test_a_slow_client_cannot_hold_a_worker_past_the_timeout():
    """A client that asks for a stream and never reads is dropped once a write blocks for `timeout` seconds."""
    registry = make_registry(1)
    big = b"\xff\xd8" + os.urandom(256 * 1024) + b"\xff\xd9"  # fills the socket buffers within a few frames
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            registry.camera("cam0").set_jpeg(big)
            stop.wait(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        with HttpServer(registry, timeout=0.5, max_streams=1, max_fps=50) as srv:
            slow.connect(("127.0.0.1", srv.port))
            slow.sendall(b"GET /stream/cam0.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_until(lambda: srv.active == 1, timeout=3)
            started = time.monotonic()
            assert wait_until(lambda: srv.active == 0, timeout=20)  # buffers filled, then a write timed out
            print(f"a stream client that stopped reading was dropped after {time.monotonic() - started:.1f} s")
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            conn.request("GET", "/stream/cam0.mjpg")
            assert conn.getresponse().status == 200  # the one stream slot is free again
            conn.close()
    finally:
        slow.close()
        stop.set()
        feeder.join(2)


def test_client_resets_and_disconnects_print_nothing(frames, capfd, caplog):
    """Before: a reset while the request was read printed a full traceback to stderr for every client."""
    caplog.set_level(logging.DEBUG)
    with HttpServer(frames, Telemetry()) as srv:
        address = ("127.0.0.1", srv.port)
        for _ in range(5):
            half = socket.create_connection(address)  # half a request, then a reset
            half.sendall(b"GET /metrics HTTP/1.1\r\nHo")
            time.sleep(0.05)
            reset(half)
            unread = socket.create_connection(address)  # a whole request, reset before the answer is read
            unread.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n\r\n")
            reset(unread)
            socket.create_connection(address).close()  # connect and leave
            stream = socket.create_connection(address)  # a stream reset mid-response
            stream.sendall(b"GET /stream/cam0.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            assert stream.recv(1024).startswith(b"HTTP/1.1 200")
            reset(stream)
        assert wait_until(lambda: srv.active == 0, timeout=5)
        assert get(srv, "/health")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and err == ""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_an_oversized_request_head_is_refused():
    with HttpServer(make_registry()) as srv, socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (serve.MAX_HEAD + 10))
        assert sock.recv(1024).startswith(b"HTTP/1.1 431")


# --- 2. the token -----------------------------------------------------------------------------------------------


@pytest.fixture
def guarded(frames):
    with HttpServer(frames, Telemetry(), token=TOKEN) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/", "/metrics", "/api/cameras", "/snapshot/cam0.jpg", "/stream/cam0.mjpg", "/x"])
def test_with_a_token_every_path_but_health_needs_it(guarded, path):
    status, headers, body = get(guarded, path)
    assert status == 401 and "unauthorized" in json.loads(body)["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert get(guarded, path, {"Authorization": "Bearer wrong-" + TOKEN})[0] == 401
    assert get(guarded, path, {"Authorization": "Basic " + TOKEN})[0] == 401
    if path != "/stream/cam0.mjpg":  # (a stream never ends; the cookie and query cases cover it below)
        assert get(guarded, path, {"Authorization": f"Bearer {TOKEN}"})[0] in (200, 404)


def test_health_stays_open_with_a_token(guarded):
    status, _, body = get(guarded, "/health")
    assert status in (200, 503) and json.loads(body)["status"] in ("ok", "degraded")


def test_a_query_token_and_the_live_view_cookie_authorise(guarded):
    assert get(guarded, f"/snapshot/cam0.jpg?token={TOKEN}")[0] == 200  # an MJPEG/snapshot URL for another program
    assert get(guarded, "/snapshot/cam0.jpg?token=nope")[0] == 401
    status, headers, _ = get(guarded, f"/?token={TOKEN}")
    assert status == 303 and headers["Location"] == "/"  # the token leaves the address bar
    cookie = headers["Set-Cookie"].split(";")[0]
    assert TOKEN not in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert get(guarded, "/api/cameras", {"Cookie": cookie})[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=5)
    conn.request("GET", "/stream/cam0.mjpg", headers={"Cookie": f"other=1; {cookie}"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    conn.close()
    with HttpServer(make_registry(), token=TOKEN + "-other") as other:  # another device's cookie opens nothing here
        assert get(other, "/api/cameras", {"Cookie": cookie})[0] == 401


def test_the_token_never_reaches_logs_stderr_or_the_api(guarded, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    for path in (f"/metrics?token={TOKEN}", f"/?token={TOKEN}", f"/api/cameras?token={TOKEN}", "/nope?token=x"):
        get(guarded, path)
    _, _, body = get(guarded, "/api/cameras", {"Authorization": f"Bearer {TOKEN}"})
    assert "GET /metrics?token=***" in caplog.text  # requests are logged, with the secret blanked
    out = capfd.readouterr()
    for text in (caplog.text, out.err, out.out, body.decode()):
        assert TOKEN not in text


def test_an_exposed_bind_needs_a_token_and_warns(capfd):
    with pytest.raises(EdgecamError, match="0.0.0.0 is reachable from the network and no token is set"):
        HttpServer(make_registry(), host="0.0.0.0").start()
    with HttpServer(make_registry(), host="0.0.0.0", token=TOKEN) as srv:  # traffic below only to 127.0.0.1
        assert get(srv, "/api/cameras")[0] == 401
        assert get(srv, "/health")[0] == 200
    err = capfd.readouterr().err
    assert "warning: the live view, /api and /metrics are exposed to the network" in err and TOKEN not in err


def test_loopback_needs_no_token(monkeypatch):
    with HttpServer(make_registry(), host="localhost") as srv:
        assert get(srv, "/api/cameras")[0] == 200


# --- config: http.host / token_env / port -----------------------------------------------------------------------


def config(tmp_path, monkeypatch, http: dict, env: dict | None = None):
    """Load a cameras.yaml with this `http:` section (the camera is never opened: the http checks come first)."""
    monkeypatch.delenv("EDGECAM_HTTP_TOKEN", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "cameras.yaml"
    lines = [f"  {k}: {json.dumps(v)}" for k, v in http.items()]
    path.write_text("cameras:\n  - {name: a, source: a.mp4, bundle: b}\nhttp:\n" + "\n".join(lines) + "\n")
    return load_cameras_config(path)


@pytest.mark.parametrize(
    ("http", "env", "message"),
    [
        (
            {"host": "0.0.0.0"},
            {},
            r"cameras\.yaml: http\.host: 0\.0\.0\.0 is reachable from the network and \$EDGECAM_HTTP_TOKEN is not set "
            r"\(export EDGECAM_HTTP_TOKEN=\$\(openssl rand -hex 24\) before starting, or bind 127\.0\.0\.1\)",
        ),
        ({"host": "camera.local"}, {}, r"http\.host: camera\.local is reachable"),
        ({"host": "::"}, {"EDGECAM_HTTP_TOKEN": ""}, r"http\.host: :: is reachable"),
        ({"host": "0.0.0.0", "token_env": "CAM_TOKEN"}, {"EDGECAM_HTTP_TOKEN": TOKEN}, r"\$CAM_TOKEN is not set"),
        ({"token_env": "CAM_TOKEN"}, {"CAM_TOKEN": "short"}, r"http\.token_env: \$CAM_TOKEN is 5 characters long"),
        ({"token_env": "not a name"}, {}, r"http\.token_env: got 'not a name' \(use the name of an environment"),
        ({"port": 99999}, {}, r"http\.port: got 99999 \(use a value <= 65535\)"),
        ({"port": -1}, {}, r"http\.port: got -1 \(use a value >= 0\)"),
        ({"timeout": 0}, {}, r"http\.timeout: got 0 \(use a value > 0\)"),
    ],
)
def test_http_config_errors_name_the_key_and_the_fix(tmp_path, monkeypatch, http, env, message):
    with pytest.raises(EdgecamError, match=message) as info:
        config(tmp_path, monkeypatch, http, env)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "localhost", "::1"])
def test_loopback_hosts_need_no_token(monkeypatch, host):
    monkeypatch.delenv("EDGECAM_HTTP_TOKEN", raising=False)
    assert HttpConfig.model_validate({"host": host}).token() is None


def test_the_token_comes_from_the_named_variable_and_is_not_in_the_model(monkeypatch):
    monkeypatch.setenv("CAM_TOKEN", TOKEN)
    http = HttpConfig.model_validate({"host": "0.0.0.0", "token_env": "CAM_TOKEN"})
    assert http.token() == TOKEN and TOKEN not in repr(http) and TOKEN not in json.dumps(http.model_dump())


# --- 3. bind errors ---------------------------------------------------------------------------------------------


def test_a_port_in_use_is_an_edgecam_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(EdgecamError, match=rf"http: 127\.0\.0\.1:{port} is already in use \(stop the program"):
            HttpServer(make_registry(), port=port, origin="cameras.yaml").start()


def test_an_unresolvable_host_is_an_edgecam_error(monkeypatch):
    def no_dns(*args, **kwargs):  # no lookup leaves this machine: the resolver's answer is stood in for
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(serve.socket, "getaddrinfo", no_dns)
    with pytest.raises(EdgecamError, match=r"cameras.yaml: http.host: cannot resolve 'nowhere.invalid'"):
        HttpServer(make_registry(), host="nowhere.invalid", token=TOKEN, origin="cameras.yaml").start()


def test_an_address_not_on_this_device_is_an_edgecam_error():
    with pytest.raises(EdgecamError, match=r"192\.0\.2\.1:0 is not an address of this device"):
        HttpServer(make_registry(), host="192.0.2.1", token=TOKEN).start()  # TEST-NET-1: never assigned, no traffic


def test_a_privileged_port_is_an_edgecam_error(monkeypatch):
    def refused(self):  # what a non-root user gets for a port below 1024 (the tests run as root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(serve.BoundedServer, "listen", refused)
    with pytest.raises(EdgecamError, match=r"127\.0\.0\.1:80 needs privileges .*\(use http.port 1024 or above"):
        HttpServer(make_registry(), port=80).start()


# --- 4. wired through MultiCameraRunner -------------------------------------------------------------------------


def test_the_runner_serves_with_the_configured_token_and_timeout(tmp_path, monkeypatch, tiny_bundle, capfd):
    from edgecam.runtime.cameras import MultiCameraRunner
    from tests.runtime.test_cameras import write_config, write_video

    write_video(tmp_path / "cam.mp4", "blue")
    cam = {"name": "cam", "source": "cam.mp4", "bundle": str(tiny_bundle)}
    monkeypatch.setenv("CAM_TOKEN", TOKEN)
    http = {"host": "0.0.0.0", "port": 0, "token_env": "CAM_TOKEN", "timeout": 0.5}
    runner = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam], http=http)))
    runner.start(threads=False)
    try:
        srv = runner.http
        assert srv.timeout == 0.5 and srv.exposed
        assert get(srv, "/api/cameras")[0] == 401
        assert get(srv, "/api/cameras", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        with socket.create_connection(("127.0.0.1", srv.port)) as idle:  # closed after the configured timeout
            idle.settimeout(5)
            started = time.monotonic()
            assert idle.recv(1) == b"" and time.monotonic() - started < 4
    finally:
        runner.stop()
    err = capfd.readouterr().err
    assert "exposed to the network" in err and TOKEN not in err


def test_the_runner_names_the_file_when_its_port_is_taken(tmp_path, monkeypatch, tiny_bundle):
    from edgecam.runtime.cameras import MultiCameraRunner
    from tests.runtime.test_cameras import write_config, write_video

    monkeypatch.delenv("EDGECAM_HTTP_TOKEN", raising=False)
    write_video(tmp_path / "cam.mp4", "blue")
    cam = {"name": "cam", "source": "cam.mp4", "bundle": str(tiny_bundle)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = write_config(tmp_path, [cam], http={"port": port})
        runner = MultiCameraRunner(load_cameras_config(path))
        with pytest.raises(EdgecamError, match=rf"^{path}: http: 127\.0\.0\.1:{port} is already in use"):
            runner.start(threads=False)


# --- property tests ---------------------------------------------------------------------------------------------

_LINES = st.one_of(
    st.sampled_from(["GET / HTTP/1.1", "GET /metrics HTTP/1.0", "POST /api/cameras HTTP/1.1", "GET /%zz HTTP/1.1"]),
    st.text(min_size=0, max_size=80).map(lambda t: t.replace("\n", " ")),
)
_HEADERS = st.lists(
    st.one_of(
        st.sampled_from(["Host: x", "Authorization: Bearer", "Cookie: edgecam_session=", "Content-Length: 99"]),
        st.text(max_size=60).map(lambda t: t.replace("\n", " ")),
    ),
    max_size=5,
)


@given(line=_LINES, headers=_HEADERS, token=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_request_head_gets_an_http_answer_and_no_error(prop_servers, line, headers, token):
    """Arbitrary request lines and headers: an HTTP status line (or a plain close), never an exception logged."""
    srv = prop_servers[token]
    head = "\r\n".join([line, *headers]).encode("utf-8", "surrogatepass") + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    http09_error = b"<title>Error response</title>" in answer  # a one-word request line is HTTP/0.9: no status line
    assert answer == b"" or answer.startswith(b"HTTP/1.") or http09_error, answer[:80]
    if token and answer and b" 401 " not in answer[:20]:
        assert not line.startswith("GET /api") and not line.startswith("GET /metrics")  # never without the token


@pytest.fixture(scope="module")
def prop_servers():
    """One open and one token-guarded server for every example; the log is checked for errors at the end."""
    handler = _Collect()
    logging.getLogger("edgecam.runtime.sinks").addHandler(handler)
    registry = make_registry(1)
    registry.camera("cam0").set_jpeg(b"\xff\xd8\xff\xd9")
    with HttpServer(registry, Telemetry()) as open_, HttpServer(registry, Telemetry(), token=TOKEN) as guarded:
        yield {False: open_, True: guarded}
    logging.getLogger("edgecam.runtime.sinks").removeHandler(handler)
    assert not handler.errors, handler.errors[:3]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(record.getMessage())


@given(
    http=st.dictionaries(
        st.sampled_from(["host", "port", "token_env", "timeout", "other"]),
        st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(), st.text(max_size=20)),
        max_size=4,
    )
)
@settings(max_examples=150, deadline=None)
def test_any_http_section_is_a_config_or_an_edgecam_error(http):
    try:
        config = HttpConfig.model_validate(http)
    except ValidationError as exc:
        error = model_error(exc, "cameras.yaml", "http")
        assert str(error).startswith("cameras.yaml: http.") and error.fix
    else:
        assert 0 <= config.port <= 65535 and config.timeout > 0
        assert config.token() is not None or is_loopback(config.host)


# --- the connection server's own limits -------------------------------------------------------------------------


def test_waiting_connections_are_capped_and_the_extra_ones_told_busy():
    server = serve.BoundedServer(lambda conn, head, address: None, "127.0.0.1", 0, workers=1, max_waiting=10)
    server.start()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(15)]
    try:
        assert wait_until(lambda: server.refused >= 5, timeout=5)
        answers = []
        for s in socks[10:]:
            answers.append(s.recv(64))
        assert all(a.startswith(b"HTTP/1.1 503") for a in answers)
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_stop_closes_connections_still_queued_for_a_worker():
    release = threading.Event()
    server = serve.BoundedServer(lambda conn, head, address: release.wait(10), "127.0.0.1", 0, workers=1)
    server.start()
    fds_before = fds()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert wait_until(lambda: server.active == 5, timeout=5)  # one served (blocked), four queued
    threading.Timer(0.5, release.set).start()
    server.stop()
    assert all(s.recv(64) == b"" for s in socks)  # every one closed, the queued ones too
    for s in socks:
        s.close()
    assert server.active == 0 and fds() <= fds_before
