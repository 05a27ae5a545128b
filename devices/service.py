"""Starting an installed release and asking it whether it serves: systemd, an operator's command, or a probe.

`edgecam install` switches `current` and then calls `ServiceControl.activate`, which (re)starts the runtime and waits
for the config's HTTP `/health` to answer 200 (every camera online and fresh) within the health timeout:

- systemd: the unit (rendered for the install root) into /etc/systemd/system, `systemctl restart edgecam`.
- command: `--service-cmd CMD` runs CMD through the shell (e.g. `docker restart edgecam`), then the same wait.
- probe: starts `edgecam run --config` of the release itself for the health window, then stops it with SIGTERM.
  What it proves: this release, on this box, serves with every camera online. It leaves nothing running, so it is
  the mode for tests and for boxes whose supervisor is not systemd (it is `auto` off a systemd root).
- none: nothing is started or checked (`verify` alone decides).

A config without `http:` has no `/health`: systemd is then asked whether the unit stayed active, a probe whether the
run is still going (or ended with 0 on a finite file), and a command is taken at its exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgecam.devices.package import CONFIG, DEFAULT_ROOT, STOP_MARGIN, render_unit
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.shutdown import DRAIN_SECONDS

MODES = ("auto", "systemd", "command", "probe", "none")
UNIT_PATH = Path("/etc/systemd/system/edgecam.service")
UNIT_NAME = "edgecam.service"
SETTLE_SECONDS = 5.0  # without /health: how long the runtime must stay up to count as started
POLL = 0.5


def health_url(release: Path) -> str | None:
    """The release's `/health` URL from its cameras.yaml `http:`; None without one (or with port 0)."""
    try:
        raw = yaml.safe_load((release / CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    http = raw.get("http") if isinstance(raw, dict) else None
    if not isinstance(http, dict):
        return None
    host, port = str(http.get("host", "127.0.0.1")), int(http.get("port", 8080) or 0)
    if port == 0:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/health"


def _health(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200, f"{resp.status}"
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read().decode("utf-8", "replace"))
            return False, f"{exc.code} {body.get('status', '')}".strip()
        except (ValueError, OSError):
            return False, str(exc.code)
    except (OSError, ValueError) as exc:
        return False, f"no answer ({getattr(exc, 'reason', exc)})"


def resolve_mode(mode: str, root: Path, command: str | None) -> str:
    """`auto`: `command` when one is given, systemd when installing under the default root as root on a systemd
    host, otherwise a probe."""
    if command and mode not in ("auto", "command"):
        raise EdgecamError(f"--service-cmd restarts the runtime itself: it cannot go with --service {mode}",
                           fix="drop --service, or --service-cmd")  # fmt: skip
    if mode != "auto":
        if mode == "command" and not command:
            raise EdgecamError("--service command needs --service-cmd CMD", fix="e.g. --service-cmd 'docker restart x'")
        return mode
    if command:
        return "command"
    systemd = shutil.which("systemctl") and Path("/run/systemd/system").is_dir() and os.geteuid() == 0
    return "systemd" if systemd and root == Path(DEFAULT_ROOT) else "probe"


@dataclass
class ServiceControl:
    mode: str  # systemd | command | probe | none (resolved)
    root: Path
    health_timeout: float = 60.0
    command: str | None = None

    def activate(self, release: Path, python: str | None, memory_mb: int) -> tuple[bool, str]:
        """(Re)start the runtime on `release` (now `current`) and wait for it to serve: (ok, one phrase why)."""
        try:
            return self._activate(release, python, memory_mb)
        except (OSError, subprocess.SubprocessError) as exc:  # a unit that cannot be written, a command that hangs
            return False, f"cannot start the {self.mode} service: {exc}"

    def _activate(self, release: Path, python: str | None, memory_mb: int) -> tuple[bool, str]:
        if self.mode == "none":
            return True, "service not started (--service none)"
        if self.mode == "probe":
            return self._probe(release, python)
        if self.mode == "systemd":
            UNIT_PATH.write_text(render_unit(str(self.root), python, memory_mb))
            for args in (["daemon-reload"], ["enable", UNIT_NAME], ["restart", UNIT_NAME]):
                proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
                if proc.returncode != 0:
                    return False, f"systemctl {' '.join(args)} failed: {_last(proc.stderr)}"
        else:
            env = {**os.environ, "EDGECAM_RELEASE": str(release)}
            proc = subprocess.run(self.command, shell=True, capture_output=True, text=True, timeout=300, env=env)
            if proc.returncode != 0:
                return False, f"service command exited {proc.returncode}: {_last(proc.stderr or proc.stdout)}"
        url = health_url(release)
        if url is not None:
            return self._wait(url, lambda: None)
        if self.mode == "systemd":
            time.sleep(min(SETTLE_SECONDS, self.health_timeout))
            active = subprocess.run(["systemctl", "is-active", "--quiet", UNIT_NAME], timeout=30).returncode == 0
            return (
                active,
                "service active (no http: in cameras.yaml, /health not checked)" if active else "service not active",
            )
        return True, "service command ran (no http: in cameras.yaml, /health not checked)"

    def preflight(self, release: Path) -> str | None:
        """Before `current` switches: why this mode cannot judge the release, or None. A probe whose /health port
        already answers (the running service, another program) would read someone else's health."""
        url = health_url(release) if self.mode == "probe" else None
        if url is not None and not _health(url)[1].startswith("no answer"):
            return f"{url} already answers before the probe starts (a running service?): use --service systemd"
        return None

    def stop(self) -> None:
        """Stop the supervised runtime (systemd only: a probe leaves nothing running, a command is the operator's)."""
        if self.mode == "systemd":
            with contextlib.suppress(OSError, subprocess.SubprocessError):  # no systemd: nothing of ours runs there
                subprocess.run(["systemctl", "stop", UNIT_NAME], capture_output=True, timeout=120)

    def _wait(self, url: str, exited) -> tuple[bool, str]:
        t0, last = time.monotonic(), "no answer"
        while time.monotonic() - t0 < self.health_timeout:
            gone = exited()
            if gone is not None:
                return False, gone
            ok, last = _health(url)
            if ok:
                return True, f"/health ok after {time.monotonic() - t0:.1f} s"
            time.sleep(POLL)
        return False, f"/health not ok within {self.health_timeout:g} s (last: {last})"

    def _probe(self, release: Path, python: str | None) -> tuple[bool, str]:
        cmd = [python or str(release / "venv" / "bin" / "python"), "-m", "edgecam", "run"]
        cmd += ["--config", str(release / CONFIG), "--drain-timeout", f"{DRAIN_SECONDS:g}"]
        log = release / "probe.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=release, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:

            def exited() -> str | None:
                code = proc.poll()
                return (
                    None if code is None else f"the run exited with {code} ({_last(log.read_text('utf-8', 'replace'))})"
                )

            url = health_url(release)
            if url is not None:
                return self._wait(url, exited)
            time.sleep(min(SETTLE_SECONDS, self.health_timeout))
            code = proc.poll()
            if code in (None, 0):
                return True, "the run stayed up (no http: in cameras.yaml, /health not checked)"
            return False, exited() or "the run failed"
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=DRAIN_SECONDS + STOP_MARGIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
