"""The wheel carries every package of the source tree (a hand-written list once left one out)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"edgecam": "edgecam", "runtime": "edgecam/runtime", "train": "edgecam/train", "export": "edgecam/export",
           "devices": "edgecam/devices", "bench": "edgecam/bench"}  # fmt: skip


@pytest.mark.slow
def test_the_wheel_holds_every_package_and_data_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("edgecam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{FOLDERS[init.relative_to(ROOT).parts[0]]}/{'/'.join(init.relative_to(ROOT).parts[1:])}"
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert expected and expected <= names, sorted(expected - names)
    assert "edgecam/runtime/sinks/liveview.html" in names
    assert {f"edgecam/bench/reference/{p.name}" for p in (ROOT / "bench" / "reference").glob("*.py")} <= names
    templates = {f"edgecam/devices/templates/{p.name}" for p in (ROOT / "devices" / "templates").iterdir()}
    assert {f"edgecam/devices/templates/{n}" for n in ("edgecam.service", "Containerfile")} <= templates <= names
