"""What package / install tests deploy: a tiny classifier bundle WITH golden frames (built without torch), a short
video of its colours, camera configs whose /health turns ok or never does, and a device profile of our own."""

from __future__ import annotations

import json
import socket
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from edgecam.devices import package as pkg
from edgecam.export.golden_writer import write_golden
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import load_bundle, sha256_file, write_manifest
from edgecam.runtime.preprocess import preprocess_batch
from tests.runtime.conftest import CLASS_NAMES, build_tiny_bundle, solid

ENGINE = {"onnx": "onnxruntime", "openvino": "openvino"}


def golden_bundle(root: Path) -> Path:
    """The tiny colour classifier with golden frames: one solid frame per class and each variant's output on it."""
    build_tiny_bundle(root)
    bundle = load_bundle(root)
    frames = [solid(name) for name in CLASS_NAMES]
    batch, _ = preprocess_batch(frames, bundle.preprocess)
    outputs = {}
    for name, var in bundle.variants.items():
        engine = create_backend(ENGINE[var.format])
        engine.load(bundle.path_of(var), threads=1, precision=var.precision)
        outputs[name] = np.asarray(engine.infer(batch)[0])
    engines = {n: ENGINE[v.format] for n, v in bundle.variants.items()}
    manifest = dict(bundle.manifest)
    manifest["golden"] = write_golden(root, frames, outputs, "classify", engines=engines)
    write_manifest(root, manifest)
    return root


def break_golden(root: Path) -> Path:
    """Store golden outputs the model does not give (classes rolled by one), checksums redone: every file is intact,
    so only the golden comparison of `edgecam verify` can catch it."""
    manifest = json.loads((root / "edgecam.json").read_text())
    golden = manifest["golden"]
    for rel in golden["outputs"].values():
        np.save(root / rel, np.roll(np.load(root / rel), 1, axis=1))
        golden["files"][rel] = {"sha256": sha256_file(root / rel), "size_bytes": (root / rel).stat().st_size}
    write_manifest(root, manifest)
    return root


def rewrite_package(source: Path, out: Path, edit: Callable[[Path], None], suffix: str) -> Path:
    """A package whose files `edit` changed, with package.json listing the new checksums and a new version: what
    a packager that skipped a check (or an older one) would ship. Valid as an archive; its contents decide."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        with tarfile.open(source) as tar:
            tar.extractall(stage, filter="data")
        index = json.loads((stage / pkg.INDEX).read_text())
        (stage / pkg.INDEX).unlink()
        edit(stage)
        index["files"] = pkg._files(stage)
        index["version"] += suffix
        pkg._write_tar(out, stage, index)
    return out


def colour_video(path: Path, frames: int = 30, fps: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        writer.write(solid(CLASS_NAMES[(i // 10) % len(CLASS_NAMES)]))
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def camera_config(folder: Path, bundle: Path, source: str, port: int | None, name: str = "cameras.yaml") -> Path:
    """One camera on `bundle`: a looping file (serves for as long as it runs) or a live URL; `http:` on `port`."""
    camera = {
        "name": "shelf",
        "source": source,
        "bundle": str(bundle),
        "max_fps": 10,
        "sinks": {"jsonl": "out/x.jsonl"},
    }
    if "://" not in source:
        camera["loop"] = True
    config = {"cameras": [camera], **({"http": {"host": "127.0.0.1", "port": port}} if port else {})}
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def profile_file(folder: Path, backend: str = "onnxruntime", precisions=("int8", "fp32"), memory: int = 768) -> Path:
    """A user's own device profile, read like a shipped one."""
    path = folder / f"box-{backend}.yaml"
    profile = {
        "arch": "x86_64",
        "cores": 2,
        "memory_mb": 2048,
        "backend": backend,
        "device": "cpu" if backend == "onnxruntime" else "CPU",
        "precisions": list(precisions),
        "threads": 2,
        "budget": {"fps": 5, "cameras": 1, "peak_memory_mb": memory},
        "speed_factor": 1.0,
    }
    path.write_text(yaml.safe_dump(profile))
    return path
