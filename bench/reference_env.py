"""The virtualenv the reference models (Ultralytics YOLOv8n, torchvision MobileNetV3-Small) are trained in.

Why a separate venv: Ultralytics pins and upgrades packages of its own (and is AGPL), and the reference torch is not
edgecam's torch; none of it may become a dependency of edgecam. The scripts in ``bench/reference/`` run under this
venv's python and talk to edgecam only through files and one JSON line on stdout.

Pure stdlib on purpose (no torch import): it runs in edgecam's own process before anything is trained.

    python = ensure_reference_env(Path("runs/reference-venv"))
    if python is None:
        print(f"reference models skipped: {reference_env.last_error}")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Installed in this order: torch and torchvision first, alone, so that Ultralytics' own requirements cannot pull in
# another torch; then what the scripts and their exports import. Ultralytics is pinned because yolo_ref.py stubs out
# some of its network calls by name (see its docstring).
TORCH_STEP = ("torch==2.14.1", "torchvision==0.29.1")
TOOLS_STEP = (
    "ultralytics-opencv-headless==8.4.190",
    "onnx>=1.16",
    "onnxslim>=0.1.82",  # Ultralytics' ONNX export simplifies by default and would try to pip-install it
    "onnxruntime>=1.18",
    "openvino>=2024.4",
    "nncf>=2.14",
)
# What the reference scripts import; checked once after installing.
IMPORTS = ("torch", "torchvision", "ultralytics", "onnx", "onnxslim", "onnxruntime", "openvino", "nncf")
STAMP = "edgecam-reference.json"
LOG = "edgecam-install.log"
PIP_TIMEOUT_S = 3600.0

last_error: str | None = None
"""Why the last ``ensure_reference_env`` call returned None (one line, for "reference models skipped: ...")."""


def venv_python(path: Path) -> Path:
    """The interpreter inside the venv at `path` (whether or not it exists yet)."""
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted() -> dict[str, object]:
    return {"torch_step": list(TORCH_STEP), "tools_step": list(TOOLS_STEP), "imports": list(IMPORTS)}


def _stamp_ok(path: Path) -> bool:
    """The venv was completed by this module with the same requirement list: nothing to run."""
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("wanted") == _wanted() and venv_python(path).exists()


def _run(cmd: list[str], log: Path, step: str, timeout: float = PIP_TIMEOUT_S) -> str | None:
    """Run one install step, appending its output to `log`; None on success, else a one-line reason."""
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONNOUSERSITE": "1",
        "YOLO_OFFLINE": "1",  # the import check must not probe the network either
        "YOLO_CONFIG_DIR": str(log.parent / "ultralytics-config"),  # nor write settings into the user's home
    }
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{step}: {type(exc).__name__}: {exc}"
    if rc == 0:
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    return f"{step} failed (exit {rc}): {last[:300]} (full log: {log})"


def ensure_reference_env(path: Path) -> Path | None:
    """Create or complete the reference venv at `path`; return its python, or None with `last_error` set.

    Instant once done (a stamp file records the requirement list it was completed with). A venv that exists without
    the stamp, e.g. made by hand, is completed in place rather than rebuilt: pip skips what is already there.
    """
    global last_error
    last_error = None
    path = Path(path).resolve()
    if _stamp_ok(path):
        return venv_python(path)
    python = venv_python(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        last_error = f"cannot create {path}: {exc.strerror or exc}"
        return None
    log = path / LOG
    steps: list[tuple[str, list[str]]] = []
    if not python.exists():
        steps.append(("python -m venv", [sys.executable, "-m", "venv", str(path)]))
    pip = [str(python), "-m", "pip", "install"]
    steps.append(("pip install torch", [*pip, *TORCH_STEP]))
    steps.append(("pip install ultralytics and exporters", [*pip, *TOOLS_STEP]))
    steps.append(("import check", [str(python), "-c", "import " + ", ".join(IMPORTS)]))
    for step, cmd in steps:
        reason = _run(cmd, log, step, timeout=300.0 if step == "import check" else PIP_TIMEOUT_S)
        if reason:
            last_error = reason
            return None
    (path / STAMP).write_text(json.dumps({"wanted": _wanted(), "python": str(python)}, indent=1) + "\n")
    return python


if __name__ == "__main__":  # python -m edgecam.bench.reference_env VENV_DIR
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/reference-venv")
    result = ensure_reference_env(target)
    print(result if result else f"reference models skipped: {last_error}")
    sys.exit(0 if result else 1)
