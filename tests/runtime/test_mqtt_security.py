"""MQTT login and TLS against a real Mosquitto: a password file made with mosquitto_passwd, certificates made with the
openssl CLI in the test. Skipped without those tools, unless CI is set (then they must be there).

The broker opens one plain anonymous listener for the test's subscriber and the secured listeners for the sink, so a
test sees what got through without needing credentials of its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("paho.mqtt.client")

from edgecam.runtime.camera_config import load_cameras_config  # noqa: E402
from edgecam.runtime.cameras import MultiCameraRunner  # noqa: E402
from edgecam.runtime.errors import EdgecamError  # noqa: E402
from edgecam.runtime.sinks.mqtt import MqttSink  # noqa: E402
from edgecam.runtime.types import Event  # noqa: E402
from tests.runtime.test_cameras import N_FRAMES, WHOLE_FRAME, write_video  # noqa: E402
from tests.runtime.test_mqtt import MOSQUITTO, Broker, Listener, free_port  # noqa: E402

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or next(
    (p for p in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd") if os.access(p, os.X_OK)), None
)
OPENSSL = shutil.which("openssl")
SECRET = "s3cret-Pa55word"  # must never show up in any output
PASSWORD_VAR = "EDGECAM_TEST_MQTT_PASSWORD"


def need(tool: str | None, what: str) -> str:
    if tool is None:
        reason = f"{what} is not installed (apt-get install mosquitto mosquitto-clients openssl)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the MQTT security tests")
        pytest.skip(reason)
    return tool


class SecureBroker(Broker):
    """Mosquitto with per-listener settings: `port` is plain and anonymous (for the test's listener), `secure` is
    the listener under test, configured by `lines`."""

    def __init__(self, folder: Path, lines: list[str]) -> None:
        super().__init__(folder)
        self.secure = free_port()
        conf = [
            "user root",  # when run as root, stay root: the key and password files under tmp_path are root's
            "per_listener_settings true",
            "persistence false",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"listener {self.secure} 127.0.0.1",
            *lines,
        ]
        self.config.write_text("\n".join(conf) + "\n")

    def connections(self) -> int:
        """Connections the secured listener accepted so far (mosquitto logs each one)."""
        lines = self.log.read_text().splitlines()
        return sum(1 for line in lines if "New connection from" in line and line.endswith(f" on port {self.secure}."))


@pytest.fixture
def password_broker(tmp_path):
    need(MOSQUITTO, "mosquitto")
    passwd = need(MOSQUITTO_PASSWD, "mosquitto_passwd")
    subprocess.run([passwd, "-b", "-c", str(tmp_path / "passwords"), "edgecam", SECRET], check=True)
    broker = SecureBroker(tmp_path, ["allow_anonymous false", f"password_file {tmp_path / 'passwords'}"])
    broker.start()
    yield broker
    broker.stop()


def openssl(*args: str) -> None:
    subprocess.run([need(OPENSSL, "openssl"), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by that CA (EC keys: fast)."""
    folder = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = str(folder / "ca.pem"), str(folder / "ca.key")
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=edgecam-test-ca")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("server", ["-extfile", str(folder / "san.ext")]), ("client", [])):
        csr = str(folder / f"{name}.csr")
        openssl("req", *ec, "-keyout", str(folder / f"{name}.key"), "-out", csr, "-subj", f"/CN=edgecam-{name}")
        sign = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", *extra]
        openssl("x509", "-req", "-in", csr, *sign, "-out", str(folder / f"{name}.pem"))
    return folder


def tls_broker(folder: Path, certs: Path, client_cert: bool) -> SecureBroker:
    need(MOSQUITTO, "mosquitto")
    lines = ["allow_anonymous true", f"cafile {certs / 'ca.pem'}"]
    lines += [f"certfile {certs / 'server.pem'}", f"keyfile {certs / 'server.key'}"]
    broker = SecureBroker(folder, lines + (["require_certificate true"] if client_cert else []))
    broker.start()
    return broker


@pytest.fixture
def tls_server(tmp_path, certs):
    broker = tls_broker(tmp_path, certs, client_cert=False)
    yield broker
    broker.stop()


@pytest.fixture
def tls_client_cert(tmp_path, certs):
    broker = tls_broker(tmp_path, certs, client_cert=True)
    yield broker
    broker.stop()


def delivered(broker: Broker, sink: MqttSink, camera: str = "cam1") -> bool:
    """The sink connects within a few seconds and an event it publishes reaches a subscriber."""
    listener = Listener(broker.port, ["edgecam/+/+/events"])
    try:
        if not sink.wait_connected(4):
            return False
        assert sink.publish_event(camera, Event("person_entered", camera, 1.0))
        return json.loads(listener.wait(sink.camera_topic(camera, "events")).payload)["kind"] == "person_entered"
    finally:
        listener.close()


# --- the configuration: the password stays in the environment, the files must exist ------------------------------


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory) -> Path:
    from tests.runtime.detect_fixtures import build_tiny_detect_bundle

    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def write_config(folder: Path, bundle: Path, mqtt: dict, frames: int = N_FRAMES, **camera) -> Path:
    write_video(folder / "door.mp4", "red", n=frames)
    zone = {"zones": [{"name": "all", "polygon": WHOLE_FRAME}], "cooldown_seconds": 0, "min_track_hits": 2}
    cam = {"name": "door", "source": "door.mp4", "bundle": str(bundle), "scenario": "security", **camera}
    cam["scenario_config"] = zone
    path = folder / "cameras.yaml"
    path.write_text(
        yaml.safe_dump(
            {"device": {"id": "box1"}, "cameras": [cam], "mqtt": {"host": "127.0.0.1", **mqtt}}, sort_keys=False
        )
    )
    return path


def test_a_missing_password_variable_names_the_file_the_key_and_the_variable(tmp_path, detect_bundle, monkeypatch):
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    path = write_config(tmp_path, detect_bundle, {"username": "edgecam", "password_env": PASSWORD_VAR})
    with pytest.raises(EdgecamError) as info:
        load_cameras_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: mqtt.password_env: ") and PASSWORD_VAR in text and "\n" not in text
    monkeypatch.setenv(PASSWORD_VAR, SECRET)
    config = load_cameras_config(path)
    assert config.mqtt.password() == SECRET
    assert SECRET not in json.dumps(config.model_dump(mode="json"))  # no dump of the config carries it


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"tls": {"ca": "certs/missing.pem"}}, r"mqtt\.tls\.ca: .*certs/missing.pem not found"),
        ({"tls": {"ca": "ca.pem", "cert": "ca.pem"}}, r"mqtt\.tls\.key: missing"),
        ({"password_env": PASSWORD_VAR}, r"mqtt\.username: a password needs a user name"),
        ({"username": "edgecam", "password": SECRET}, r"mqtt\.password: unknown key"),
    ],
)
def test_mqtt_login_and_tls_mistakes_are_one_line_errors(tmp_path, detect_bundle, monkeypatch, mqtt, message):
    monkeypatch.setenv(PASSWORD_VAR, SECRET)
    (tmp_path / "ca.pem").write_text("not checked here")
    path = write_config(tmp_path, detect_bundle, mqtt)
    with pytest.raises(EdgecamError, match=message) as info:
        load_cameras_config(path)
    assert str(info.value).startswith(str(path)) and SECRET not in str(info.value) and info.value.fix


def test_tls_files_are_relative_to_the_config_file(tmp_path, detect_bundle, certs):
    (tmp_path / "certs").mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(certs / name, tmp_path / "certs" / name)
    tls = {"ca": "certs/ca.pem", "cert": "certs/client.pem", "key": "certs/client.key"}
    config = load_cameras_config(write_config(tmp_path, detect_bundle, {"tls": tls}))
    assert (config.mqtt.tls.ca, config.mqtt.tls.key) == (tmp_path / "certs/ca.pem", tmp_path / "certs/client.key")


def test_tls_files_that_are_not_pem_are_an_edgecam_error(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(EdgecamError, match="MQTT TLS: cannot load"):
        MqttSink(tls=True, ca_certs=tmp_path / "ca.pem")


# --- login ------------------------------------------------------------------------------------------------------


def test_the_right_password_delivers_events(password_broker, caplog):
    caplog.set_level(logging.DEBUG)
    sink = MqttSink(port=password_broker.secure, username="edgecam", password=SECRET).start()
    try:
        assert delivered(password_broker, sink)
    finally:
        sink.close()
    assert SECRET not in caplog.text


def test_a_wrong_password_is_one_warning_and_is_not_retried_in_a_tight_loop(password_broker, caplog):
    caplog.set_level(logging.DEBUG)
    sink = MqttSink(port=password_broker.secure, username="edgecam", password="wrong-" + SECRET).start()
    try:
        assert not sink.wait_connected(3.5)
        assert sink.publish_event("cam1", Event("x", "cam1", 1.0))  # QoS 1: queued for when the login works
    finally:
        sink.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused the login" in warnings[0], warnings
    # a refused login waits AUTH_RETRY before the next attempt, not the 1.5 s outage probe
    assert password_broker.connections() == 1, password_broker.log.read_text()
    assert SECRET not in caplog.text


def test_no_credentials_cannot_publish(password_broker):
    sink = MqttSink(port=password_broker.secure).start()
    try:
        assert not delivered(password_broker, sink)
    finally:
        sink.close()


def _run_cli(config: Path, password: str, frames_expected: int) -> tuple[dict, str]:
    """`edgecam run --config ... --json` in its own process, as a service runs it; (the JSON summary, stderr)."""
    env = {**os.environ, PASSWORD_VAR: password}
    proc = subprocess.run(
        [sys.executable, "-m", "edgecam.cli", "run", "--config", str(config), "--duration", "60", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    assert "Traceback" not in proc.stderr
    (camera,) = json.loads(proc.stdout)["cameras"]
    assert camera["frames"] == frames_expected and camera["error"] is None  # the camera ran to the end
    return json.loads(proc.stdout), proc.stderr


def test_cli_run_with_the_password_from_the_environment(password_broker, detect_bundle, tmp_path):
    login = {"port": password_broker.secure, "username": "edgecam", "password_env": PASSWORD_VAR}
    config = write_config(tmp_path, detect_bundle, login)
    listener = Listener(password_broker.port, ["edgecam/#"])
    try:
        _, stderr = _run_cli(config, SECRET, N_FRAMES)
        assert json.loads(listener.wait("edgecam/box1/door/events").payload)["kind"] == "zone_enter"
        listener.wait("edgecam/box1/door/availability", "offline")  # closed cleanly at the end
    finally:
        listener.close()
    assert "refused" not in stderr


def test_cli_run_with_a_wrong_password_warns_once_and_keeps_running(password_broker, detect_bundle, tmp_path):
    login = {"port": password_broker.secure, "username": "edgecam", "password_env": PASSWORD_VAR}
    config = write_config(tmp_path, detect_bundle, login, frames=40)
    _, stderr = _run_cli(config, "wrong-" + SECRET, 40)
    lines = [line for line in stderr.splitlines() if "MQTT" in line]
    assert len(lines) == 1 and "refused the login" in lines[0], stderr


def test_sigint_publishes_offline_retained_before_the_run_ends(password_broker, detect_bundle, tmp_path):
    """Ctrl-C (or a supervisor's SIGINT) goes through `MqttSink.close()`: the camera's availability says offline,
    retained. Only a clean close sends that one (the last will covers `edgecam/box1/availability` alone)."""
    login = {"port": password_broker.secure, "username": "edgecam", "password_env": PASSWORD_VAR}
    config = write_config(tmp_path, detect_bundle, login, frames=100, max_fps=5)  # 20 s of paced frames
    listener = Listener(password_broker.port, ["edgecam/#"])
    cmd = [sys.executable, "-m", "edgecam.cli", "run", "--config", str(config), "--json"]
    env = {**os.environ, PASSWORD_VAR: SECRET}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        listener.wait("edgecam/box1/door/availability", "online", timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        listener.close()
    assert proc.returncode == 0 and json.loads(stdout)["interrupted"], stderr
    assert SECRET not in stdout + stderr
    late = Listener(password_broker.port, ["edgecam/#"])
    try:
        assert late.wait("edgecam/box1/door/availability", "offline").retain
        assert late.wait("edgecam/box1/availability", "offline").retain
    finally:
        late.close()


# --- TLS --------------------------------------------------------------------------------------------------------


def test_tls_with_the_ca_delivers_events_through_the_runner(tls_server, certs, detect_bundle, tmp_path):
    shutil.copy(certs / "ca.pem", tmp_path / "ca.pem")
    config = write_config(tmp_path, detect_bundle, {"port": tls_server.secure, "tls": {"ca": "ca.pem"}})
    listener = Listener(tls_server.port, ["edgecam/#"])
    try:
        summary = MultiCameraRunner(load_cameras_config(config)).run(duration=60)
        assert summary.cameras[0]["error"] is None
        assert json.loads(listener.wait("edgecam/box1/door/events").payload)["kind"] == "zone_enter"
        listener.wait("edgecam/box1/door/availability", "offline")
    finally:
        listener.close()


def test_a_client_without_tls_cannot_publish_to_a_tls_listener(tls_server):
    sink = MqttSink(port=tls_server.secure).start()
    try:
        assert not delivered(tls_server, sink)
    finally:
        sink.close()


def test_the_broker_certificate_is_verified(tls_server, caplog):
    caplog.set_level(logging.WARNING)
    sink = MqttSink(port=tls_server.secure, tls=True).start()  # the system's CAs do not know the test CA
    try:
        assert not delivered(tls_server, sink)
    finally:
        sink.close()
    assert "TLS handshake failed" in caplog.text and "certificate verify failed" in caplog.text


def test_a_client_certificate_is_presented_when_configured(tls_client_cert, certs):
    files = {"ca_certs": certs / "ca.pem", "certfile": certs / "client.pem", "keyfile": certs / "client.key"}
    sink = MqttSink(port=tls_client_cert.secure, tls=True, **files).start()
    try:
        assert delivered(tls_client_cert, sink)
    finally:
        sink.close()
    without = MqttSink(port=tls_client_cert.secure, tls=True, ca_certs=certs / "ca.pem").start()
    try:
        assert not delivered(tls_client_cert, without)
    finally:
        without.close()
