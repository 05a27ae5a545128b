"""`edgecam install`: A/B releases with automatic rollback, as Mender and RAUC update firmware.

Layout under ROOT (default /opt/edgecam):

    releases/<version>/   the unpacked package (bundle/, cameras.yaml, wheel, ...), its venv/ and release.json
    current -> releases/<version>    the release the service runs (a symlink, swapped with one rename)
    data/                 outputs shared by every release (each release's `data` links here)
    state.json            current / previous release and the history: what happened, when, why

Order: every checksum of the archive is checked before anything is written (devices/archive.py); the release is
unpacked and its interpreter prepared; `edgecam verify` runs on it (golden frames); only then `current` switches and
the service (re)starts; if its `/health` does not turn ok within the timeout, `current` switches back to the
previous release and that one is restarted. A release that fails is removed; its reason stays in state.json.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam import __version__
from edgecam.devices.archive import check_archive, extract_archive
from edgecam.devices.package import BUNDLE_DIR, DATA_DIR, DEFAULT_ROOT, INDEX
from edgecam.devices.service import ServiceControl
from edgecam.runtime.errors import EdgecamError

EXIT_INSTALLED, EXIT_ROLLED_BACK, EXIT_BAD_INPUT = 0, 1, 2
STATE = "state.json"
RELEASE = "release.json"
HISTORY = 50  # state.json keeps this many events
VERIFY_TIMEOUT = 600


@dataclass
class Outcome:
    """What an install or rollback did: `code` is the exit code, `line` the one line printed."""

    code: int
    line: str
    version: str | None = None
    current: str | None = None
    previous: str | None = None
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("code", "line", "version", "current", "previous", "steps")}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_state(root: Path) -> dict[str, Any]:
    try:
        state = json.loads((root / STATE).read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(root: Path, state: dict[str, Any], action: str, version: str | None, outcome: str, why: str) -> None:
    state.setdefault("history", []).append(
        {"time": _now(), "action": action, "version": version, "outcome": outcome, "why": why}
    )
    state["history"] = state["history"][-HISTORY:]
    tmp = root / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / STATE)


def current_version(root: Path) -> str | None:
    link = root / "current"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _switch(root: Path, version: str | None) -> None:
    """Point `current` at releases/<version> with one rename (never a moment without a link), or remove it."""
    link, tmp = root / "current", root / ".current.tmp"
    if version is None:
        link.unlink(missing_ok=True)
        return
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("releases") / version)
    tmp.replace(link)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One install or rollback at a time per root."""
    with open(root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgecamError(
                "another edgecam install is running on this root", path=root, fix="wait for it"
            ) from None
        yield


def _python(release: Path, info: dict[str, Any]) -> str:
    return info.get("python") or str(release / "venv" / "bin" / "python")


def _prepare_python(release: Path, index: dict[str, Any], mode: str, find_links: str | None) -> str | None:
    """`venv`: a virtualenv in the release with the wheel and its requirements (None: the release's own venv);
    `current`: this interpreter, whose edgecam runs the release (returned)."""
    if mode == "current":
        return sys.executable
    venv = release / "venv"
    if _pip_targets_other_pythons():  # this pip installs into the release; it gets none of its own (ensurepip: ~6 s)
        steps = [[sys.executable, "-m", "venv", "--without-pip", str(venv)]]
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    else:
        steps = [[sys.executable, "-m", "venv", str(venv)]]
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    pip += ["--find-links", find_links] if find_links else []
    steps.append([*pip, str(release / index["wheel"]), "-r", str(release / index["requirements"])])
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            raise _ReleaseFailed(f"{' '.join(cmd[1:4])} took more than 30 minutes") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise _ReleaseFailed(f"{' '.join(cmd[1:4])} failed: {lines[-1] if lines else proc.returncode}")
    return None


def _pip_targets_other_pythons() -> bool:
    """This interpreter has a pip that installs into another environment (`pip --python`, pip 22.3 and later)."""
    try:
        from pip import __version__ as version
    except ImportError:
        return False
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) >= (22, 3)


class _ReleaseFailed(Exception):
    """The release cannot serve (environment, verify, health): reported, not raised to the user."""


def _verify(release: Path, python: str, index: dict[str, Any]) -> str:
    """`edgecam verify` on the release's bundle with its own interpreter: the summary line, or _ReleaseFailed."""
    bundle = index["bundle"]
    cmd = [python, "-m", "edgecam", "verify", str(release / BUNDLE_DIR), "--json"]
    cmd += ["--backend", bundle["backend"], "--variant", bundle["variant"]]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=VERIFY_TIMEOUT, cwd=release)
    except subprocess.TimeoutExpired:
        raise _ReleaseFailed(f"edgecam verify took more than {VERIFY_TIMEOUT} s") from None
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {}
    if proc.returncode != 0 or not report.get("passed"):
        problems = report.get("problems") or [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:]
        raise _ReleaseFailed(f"edgecam verify failed: {problems[0] if problems else f'exit {proc.returncode}'}")
    return f"verified ({report.get('golden_frames', 0)} golden frames)"


def install_package(
    package: str | Path,
    root: str | Path = DEFAULT_ROOT,
    control: ServiceControl | None = None,
    python: str = "venv",
    find_links: str | None = None,
) -> Outcome:
    """Install `package` as a new release under `root`; see the module docstring. Bad input raises EdgecamError."""
    root = Path(root).absolute()
    index = check_archive(package)  # nothing is written before every member has passed
    version = index["version"]
    root.mkdir(parents=True, exist_ok=True)
    control = control or ServiceControl("probe", root)
    with _locked(root):
        state = read_state(root)
        previous = current_version(root)
        if previous == version:
            return Outcome(EXIT_INSTALLED, f"{version} is already current: nothing to do", version, version)
        releases = root / "releases"
        release, partial = releases / version, releases / f".partial-{version}"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(release, ignore_errors=True)  # a release that is not current: reinstalled from scratch
        try:
            extract_archive(package, partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.replace(release)
        (root / DATA_DIR).mkdir(exist_ok=True)
        (release / DATA_DIR).symlink_to(Path("..") / ".." / DATA_DIR)
        steps: list[str] = []
        try:
            interpreter = _prepare_python(release, index, python, find_links)
            info = {"version": version, "installed": _now(), "python": interpreter, "package": str(package)}
            (release / RELEASE).write_text(json.dumps(info, indent=2) + "\n")
            steps.append(_verify(release, _python(release, info), index))
            problem = control.preflight(release)
            if problem:
                raise _ReleaseFailed(problem)
            if python == "current" and index.get("edgecam_version") != __version__:
                steps.append(
                    f"note: edgecam {__version__} of this interpreter runs a package of {index['edgecam_version']}"
                )
        except _ReleaseFailed as exc:
            shutil.rmtree(release, ignore_errors=True)
            return _failed(root, state, version, previous, str(exc), steps)
        _switch(root, version)
        ok, why = control.activate(release, interpreter, _memory(release))
        steps.append(why)
        if not ok:
            _switch(root, previous)
            if previous is None:
                control.stop()  # nothing to run: a supervisor must not keep restarting a removed release
            else:
                back = releases / previous
                _, again = control.activate(back, _release_info(back).get("python"), _memory(back))
                steps.append(f"{previous} restarted: {again}")
            shutil.rmtree(release, ignore_errors=True)
            return _failed(root, state, version, previous, why, steps)
        state.update(current=version, previous=previous)
        _prune(releases, {version, previous})
        _write_state(root, state, "install", version, "installed", "; ".join(steps))
        line = f"installed {version}: {'; '.join(steps)}" + (f" (previous: {previous})" if previous else "")
        return Outcome(EXIT_INSTALLED, line, version, version, previous, steps)


def _failed(root: Path, state: dict, version: str, previous: str | None, why: str, steps: list[str]) -> Outcome:
    state.update(current=previous)
    if previous is None:
        line = f"release {version} failed: {why}; nothing is current (no previous release)"
    else:
        line = f"release {version} failed: {why}; rolled back to {previous}"
    _write_state(root, state, "install", version, "rolled back" if previous else "failed", why)
    return Outcome(EXIT_ROLLED_BACK, line, version, previous, state.get("previous"), steps)


def _release_info(release: Path) -> dict[str, Any]:
    try:
        return json.loads((release / RELEASE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _memory(release: Path) -> int:
    """The release's profile's peak memory (the unit's MemoryMax)."""
    try:
        index = json.loads((release / INDEX).read_text(encoding="utf-8"))
        return int(index["profile"]["budget"]["peak_memory_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1024


def _prune(releases: Path, keep: set[str | None]) -> None:
    """Keep the current and previous releases (the A and B); older ones only take space on a small disk."""
    for path in releases.iterdir():
        if path.is_dir() and path.name not in keep and not path.name.startswith("."):
            shutil.rmtree(path, ignore_errors=True)


def rollback(root: str | Path = DEFAULT_ROOT, control: ServiceControl | None = None) -> Outcome:
    """`edgecam install --rollback`: make the previous release current again and (re)start it."""
    root = Path(root).absolute()
    if not (root / "releases").is_dir():
        raise EdgecamError("nothing installed here", path=root, fix="give the --root edgecam install used")
    control = control or ServiceControl("probe", root)
    with _locked(root):
        state = read_state(root)
        current, previous = current_version(root), state.get("previous")
        if not previous or not (root / "releases" / previous / INDEX).is_file():
            raise EdgecamError("no previous release to roll back to", path=root / STATE, fix="install a package")
        _switch(root, previous)
        release = root / "releases" / previous
        ok, why = control.activate(release, _release_info(release).get("python"), _memory(release))
        state.update(current=previous, previous=current)
        _write_state(root, state, "rollback", previous, "rolled back" if ok else "rolled back, not serving", why)
        line = f"rolled back to {previous} (was {current}): {why}"
        return Outcome(EXIT_INSTALLED if ok else EXIT_ROLLED_BACK, line, previous, previous, current, [why])
