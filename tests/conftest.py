"""Shared fixtures: tiny seeded datasets made in code, so every test runs offline in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import settings

# Property tests replay the same examples on every run (`make test`, CI): a failure is one a developer can replay.
# HYPOTHESIS_PROFILE=explore searches with fresh random examples instead.
settings.register_profile("replay", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "replay"))

COLORS = ("blue", "green", "red")  # index = the BGR channel that dominates


def write_color_dataset(root: Path, per_class: int, size: int = 40, seed: int = 0, split: str | None = None) -> Path:
    """ImageFolder whose class is the dominant colour of a central square on a noisy background."""
    rng = np.random.default_rng(seed)
    base = root / split if split else root
    for ci, name in enumerate(COLORS):
        (base / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
            a, b = int(rng.integers(2, size // 4)), int(rng.integers(3 * size // 4, size - 2))
            img[a:b, a:b, ci] = rng.integers(170, 255)
            cv2.imwrite(str(base / name / f"{i:03d}.png"), img)
    return root


@pytest.fixture(scope="session")
def color_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ splits, plus one corrupt file in train that must be skipped."""
    root = tmp_path_factory.mktemp("colors")
    write_color_dataset(root, 40, seed=1, split="train")
    write_color_dataset(root, 12, seed=2, split="val")
    (root / "train" / "red" / "corrupt.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, color_data: Path) -> Path:
    """A test_tiny classifier trained for a few epochs on the colour data (seconds on 2 cores)."""
    from edgecam.train.config import load_config
    from edgecam.train.trainer import train_classifier

    out = tmp_path_factory.mktemp("run")
    cfg = load_config(
        None,
        dict(
            data=str(color_data),
            out=str(out),
            model="test_tiny",
            imgsz=32,
            epochs=6,
            batch=16,
            lr=0.01,
            progress=False,
            patience=0,
        ),
    )
    return train_classifier(cfg).best


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, color_data: Path) -> Path:
    from edgecam.export.bundle_writer import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(tiny_checkpoint, out, data=color_data)
    return out


def soak(short: float, full: float) -> float:
    """A fault test's duration: `short` in `make test`, `full` in `make soak` (EDGECAM_SOAK=1)."""
    return full if os.environ.get("EDGECAM_SOAK") == "1" else short


@pytest.fixture(scope="session")
def edgecam_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edgecam wheel of this source tree, built once per session as `edgecam package` builds it."""
    from edgecam.devices.package import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))
