"""`edgecam install`: checks before unpacking, verify before switching, /health after, rollback on its own or by hand.

Releases run with this interpreter (`--python current`) and are started by the probe (`edgecam run --config` of the
release until /health is ok); the virtualenv path of a real device runs in tests/test_device_install.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from edgecam.cli import main
from edgecam.devices import package as pkg
from edgecam.devices.archive import check_archive
from edgecam.devices.profiles import load_profile
from edgecam.runtime.errors import EdgecamError
from tests.devices.deploy_fixtures import (
    break_golden,
    camera_config,
    colour_video,
    free_port,
    golden_bundle,
    rewrite_package,
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, edgecam_wheel: Path) -> dict[str, Path]:
    """good: serves /health; bad_golden: its golden outputs are not the model's (package.json and the bundle's
    manifest agree with them: only verify can tell); no_health: verifies, but its camera never comes online;
    second: the good release with a changed config."""
    root = tmp_path_factory.mktemp("deploy")
    good = golden_bundle(root / "good")
    colour_video(root / "clip.mp4")
    port = free_port()
    profile = load_profile("intel-cpu")
    out = {}
    for name, source in (("good", "clip.mp4"), ("no_health", f"rtsp://127.0.0.1:{free_port()}/nothing-listens")):
        config = camera_config(root, good, source, port, name=f"{name}.yaml")
        out[name] = pkg.build_package(good, profile, config, root / f"{name}.tar.gz", edgecam_wheel).path
    config = camera_config(root, good, "clip.mp4", None, name="no_http.yaml")
    out["no_http"] = pkg.build_package(good, profile, config, root / "no_http.tar.gz", edgecam_wheel).path
    out["bad_golden"] = rewrite_package(out["good"], root / "bad.tar.gz", lambda d: break_golden(d / "bundle"), "-bad")

    def append(stage: Path) -> None:
        with open(stage / "cameras.yaml", "a") as fh:
            fh.write("# second release\n")

    out["second"] = rewrite_package(out["good"], root / "second.tar.gz", append, "-2")
    return out


def _install(capsys, *args: str) -> tuple[int, str]:
    code = main(["install", "--python", "current", "--service", "probe", "--health-timeout", "20", *args])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip()


def _current(root: Path) -> str | None:
    link = root / "current"
    return os.readlink(link) if link.is_symlink() else None


def test_install_then_broken_releases_roll_back_and_rollback_by_hand(packages, tmp_path, capsys):
    root = tmp_path / "box"
    code, line = _install(capsys, str(packages["good"]), "--root", str(root))
    assert code == 0 and line.startswith("installed ") and "/health ok" in line, line
    first = _current(root)
    assert first and (root / first / "bundle" / "edgecam.json").is_file()
    assert (root / first / "data").resolve() == (root / "data").resolve()

    code, line = _install(capsys, str(packages["bad_golden"]), "--root", str(root))
    assert code == 1 and "edgecam verify failed" in line and "rolled back to" in line, line
    assert _current(root) == first and len(list((root / "releases").iterdir())) == 1

    code, line = _install(capsys, str(packages["no_health"]), "--root", str(root), "--health-timeout", "6")
    assert code == 1 and "/health not ok within 6 s" in line and f"rolled back to {Path(first).name}" in line, line
    assert _current(root) == first
    state = json.loads((root / "state.json").read_text())
    assert state["current"] == Path(first).name
    assert [h["outcome"] for h in state["history"]] == ["installed", "rolled back", "rolled back"]

    # a second good release (same model, another config), then back to the first by hand
    code, line = _install(capsys, str(packages["second"]), "--root", str(root))
    assert code == 0 and f"previous: {Path(first).name}" in line, line
    second = _current(root)
    assert second != first
    code, line = _install(capsys, "--rollback", "--root", str(root))
    assert code == 0 and line.startswith(f"rolled back to {Path(first).name}"), line
    assert _current(root) == first
    assert json.loads((root / "state.json").read_text())["previous"] == Path(second).name


def test_a_first_install_that_fails_leaves_nothing_current(packages, tmp_path, capsys):
    root = tmp_path / "box"
    code, line = _install(capsys, str(packages["bad_golden"]), "--root", str(root))
    assert code == 1 and "nothing is current" in line and "edgecam verify failed" in line, line
    assert _current(root) is None and not any((root / "releases").iterdir())
    code, line = _install(capsys, str(packages["no_health"]), "--root", str(root), "--health-timeout", "5")
    assert code == 1 and "nothing is current" in line and "/health not ok" in line, line
    assert not (root / "current").exists() and not (root / "current").is_symlink()


def test_rollback_without_a_previous_release_is_bad_input(tmp_path, capsys):
    code, line = _install(capsys, "--rollback", "--root", str(tmp_path))
    assert code == 2 and "nothing installed here" in line


# ---------------------------------------------------------------- archives that must not be unpacked
def _write(out: Path, entries: list[tuple[str, bytes]], special: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special:
            tar.addfile(info)
    return out


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _refused(capsys, package: Path, root: Path, message: str) -> None:
    code, line = _install(capsys, str(package), "--root", str(root))
    assert code == 2 and message in line, line
    assert not root.exists(), "nothing may be written before the archive has passed"


def test_a_tampered_file_is_refused_before_anything_is_unpacked(packages, tmp_path, capsys):
    entries = _members(packages["good"])
    name, data = next((n, d) for n, d in entries if n == "bundle/model.onnx" or n.endswith("model.bin"))
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01  # one byte
    entries = [(n, bytes(changed) if n == name else d) for n, d in entries]
    _refused(capsys, _write(tmp_path / "t.tar.gz", entries), tmp_path / "box", f"{name}: sha256 differs")


def test_a_damaged_archive_is_refused(packages, tmp_path, capsys):
    raw = bytearray(packages["good"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "d.tar.gz").write_bytes(bytes(raw))
    _refused(capsys, tmp_path / "d.tar.gz", tmp_path / "box", "package")


@pytest.mark.parametrize("name", ["../evil.txt", "bundle/../../evil.txt", "/etc/evil.txt"])
def test_traversal_and_absolute_entries_are_refused(packages, tmp_path, capsys, name):
    entries = [*_members(packages["good"]), (name, b"x")]
    problem = "is an absolute path" if name.startswith("/") else "path traversal"
    _refused(capsys, _write(tmp_path / "t.tar.gz", entries), tmp_path / "box", problem)
    assert not (tmp_path / "evil.txt").exists()


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        (tarfile.SYMTYPE, "symlink"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "device file"),
        (tarfile.BLKTYPE, "device file"),
        (tarfile.FIFOTYPE, "FIFO"),
    ],
)
def test_links_devices_and_fifos_are_refused(packages, tmp_path, capsys, kind, word):
    special = [_special("bundle/golden/extra", kind, "/etc/passwd")]
    _refused(capsys, _write(tmp_path / "s.tar.gz", _members(packages["good"]), special), tmp_path / "box", word)


def test_a_file_package_json_does_not_list_is_refused(packages, tmp_path, capsys):
    entries = [*_members(packages["good"]), ("bundle/extra.onnx", b"more")]
    _refused(capsys, _write(tmp_path / "u.tar.gz", entries), tmp_path / "box", "not listed in package.json")


def test_a_version_that_names_a_path_is_refused(packages, tmp_path):
    entries = _members(packages["good"])
    index = json.loads(dict(entries)["package.json"])
    index["version"] = "../../etc"
    entries = [(n, json.dumps(index).encode() if n == "package.json" else d) for n, d in entries]
    with pytest.raises(EdgecamError, match="not a plain name"):
        check_archive(_write(tmp_path / "v.tar.gz", entries))


def test_the_same_package_again_is_already_current(packages, tmp_path, capsys):
    root = tmp_path / "box"
    assert _install(capsys, str(packages["good"]), "--root", str(root), "--service", "none")[0] == 0
    release = next((root / "releases").iterdir())
    stamp = (release / "release.json").stat().st_mtime_ns
    code, line = _install(capsys, str(packages["good"]), "--root", str(root), "--service", "none")
    assert code == 0 and "already current" in line
    assert (release / "release.json").stat().st_mtime_ns == stamp
    shutil.rmtree(root)


def test_a_service_command_restarts_each_release_and_its_failure_rolls_back(packages, tmp_path, capsys):
    """--service-cmd: the operator's own restart (e.g. `docker restart edgecam`), told the release in
    $EDGECAM_RELEASE; a command that fails counts as a release that does not come up."""
    root, log = tmp_path / "box", tmp_path / "restarts.log"
    ok = f'echo "$EDGECAM_RELEASE" >> {log}'
    code, line = _install(
        capsys, str(packages["no_http"]), "--root", str(root), "--service", "command", "--service-cmd", ok
    )
    assert code == 0 and "service command ran (no http:" in line, line
    first = (root / "current").resolve()
    assert log.read_text().split() == [str(first)]
    failing = f'echo "$EDGECAM_RELEASE" >> {log}; case "$EDGECAM_RELEASE" in *-2) exit 3;; esac'
    code, line = _install(
        capsys, str(packages["second"]), "--root", str(root), "--service", "command", "--service-cmd", failing
    )
    assert code == 1 and "service command exited 3" in line and f"rolled back to {first.name}" in line, line
    restarts = log.read_text().split()
    assert restarts[1].endswith("-2") and restarts[2] == str(first)  # the new one, then the previous one again
    assert (root / "current").resolve() == first


def test_a_service_command_with_another_service_mode_is_bad_input(packages, tmp_path, capsys):
    code, line = _install(capsys, str(packages["good"]), "--root", str(tmp_path / "box"), "--service-cmd", "true")
    assert code == 2 and "cannot go with --service probe" in line and not (tmp_path / "box").exists()


def test_a_member_that_cannot_be_written_is_said_so(tmp_path):
    from edgecam.devices.archive import _write

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(EdgecamError, match="cannot write .*file/x"):
        _write(io.BytesIO(b"data"), tmp_path / "file" / "x")


def test_help_and_bad_input_are_one_line_each(tmp_path):
    import subprocess
    import sys

    def edgecam(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "edgecam", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    helped = edgecam("install", "--help")
    assert helped.returncode == 0 and "exit codes" in helped.stdout and "rolled back" in helped.stdout
    for args, expected in [
        (["install", str(tmp_path / "missing.tar.gz"), "--root", str(tmp_path / "r")], "package not found"),
        (["install", "--root", str(tmp_path / "r")], "no package given"),
        (["package", str(tmp_path), "--device", "no-such-box", "--config", "c.yaml", "--out", "p.tar.gz"], "unknown"),
    ]:
        result = edgecam(*args)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_service_that_cannot_start_counts_as_a_failed_release(packages, tmp_path, monkeypatch):
    """An exception while starting (here: the systemd unit cannot be written) must not leave the new release
    current: it is reported and rolled back like a /health failure."""
    from edgecam.devices import service
    from edgecam.devices.install import install_package

    monkeypatch.setattr(service, "UNIT_PATH", tmp_path / "no-such-dir" / "edgecam.service")
    stopped = []  # this host's systemd is left alone
    monkeypatch.setattr(service.ServiceControl, "stop", lambda self: stopped.append(self.mode))
    root = tmp_path / "box"
    control = service.ServiceControl("systemd", root, health_timeout=5)
    outcome = install_package(packages["no_http"], root, control, python="current")
    assert outcome.code == 1 and "cannot start the systemd service" in outcome.line, outcome.line
    assert "nothing is current" in outcome.line and not (root / "current").is_symlink()
    assert stopped == ["systemd"]  # no release left: the unit must not keep restarting a removed one


def test_the_current_interpreter_says_when_its_edgecam_is_not_the_packaged_one(packages, tmp_path, capsys):
    from edgecam import __version__

    entries = _members(packages["no_http"])
    index = json.loads(dict(entries)["package.json"])
    index["edgecam_version"] = "0.0.1"
    entries = [(n, json.dumps(index).encode() if n == "package.json" else d) for n, d in entries]
    package = _write(tmp_path / "old.tar.gz", entries)
    code, line = _install(capsys, str(package), "--root", str(tmp_path / "box"), "--service", "none")
    assert code == 0 and f"note: edgecam {__version__} of this interpreter runs a package of 0.0.1" in line, line


def test_a_probe_does_not_read_another_programs_health(packages, tmp_path, capsys):
    """With something already answering on the release's /health port, a probe cannot tell its own run's health:
    the release is refused before `current` switches, rather than passed on someone else's 200."""
    import http.server
    import threading

    import yaml

    port = yaml.safe_load(dict(_members(packages["good"]))["cameras.yaml"])["http"]["port"]

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "box"
        code, line = _install(capsys, str(packages["good"]), "--root", str(root))
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and "already answers before the probe starts" in line and "nothing is current" in line, line
    assert not (root / "current").is_symlink()
