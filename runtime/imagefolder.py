"""ImageFolder datasets (`root/<class>/*.png`): listing, splitting and reading, shared by training and `val`."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Split:
    """Image paths with class indices into `classes`."""

    samples: list[tuple[Path, int]]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.samples)


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 HxWx3; grayscale and alpha are converted. Unreadable files raise EdgecamError."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None or image.size == 0:
        raise EdgecamError("unreadable or corrupt image", path=path, fix="replace or delete the file")
    return image


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def scan(root: Path, classes: tuple[str, ...] | None = None) -> Split:
    """List `root/<class>/**/image`; an empty class, or fewer than two classes, is an error."""
    if not root.is_dir():
        raise EdgecamError("dataset folder not found", path=root, fix="give a folder laid out as <class>/<images>")
    dirs = _class_dirs(root)
    names = tuple(d.name for d in dirs)
    if classes is None:
        if len(names) < 2:
            raise EdgecamError(
                f"found {len(names)} class folder(s) {list(names)}; a classifier needs at least two",
                path=root,
                fix="lay the data out as <root>/<class>/<images> with one folder per class",
            )
        classes = names
    samples: list[tuple[Path, int]] = []
    index = {c: i for i, c in enumerate(classes)}
    for d in dirs:
        if d.name not in index:
            raise EdgecamError(
                f"class folder {d.name!r} is not among the model's classes {list(classes)}",
                path=d,
                fix="use data with the classes the model was trained on",
            )
        images = _images_in(d)
        if not images:
            raise EdgecamError(f"class {d.name!r} has no images", path=d, fix="add images or remove the folder")
        samples += [(p, index[d.name]) for p in images]
    return Split(samples, tuple(classes))


def load_splits(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """Explicit `train/` and `val/` folders when present, else a seeded, per-class split of `root`."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = scan(root / "train")
        return train, scan(root / "val", train.classes)
    if not 0.0 < val_fraction < 1.0:
        raise EdgecamError(f"val_fraction must be in (0, 1), got {val_fraction}")
    full = scan(root)
    rng = random.Random(seed)
    train, val = [], []
    for ci in range(len(full.classes)):
        items = [s for s in full.samples if s[1] == ci]
        rng.shuffle(items)
        n_val = max(1, round(len(items) * val_fraction))
        if len(items) - n_val < 1:
            raise EdgecamError(f"class {full.classes[ci]!r} has too few images to split", path=root)
        val += items[:n_val]
        train += items[n_val:]
    return Split(sorted(train), full.classes), Split(sorted(val), full.classes)


def load_images(split: Split, label: str = "images") -> tuple[list[np.ndarray], list[int], list[Path]]:
    """Decode every image; unreadable ones are skipped, counted and named in one warning line."""
    images, targets, bad = [], [], []
    for path, target in split.samples:
        try:
            images.append(read_image(path))
            targets.append(target)
        except EdgecamError:
            bad.append(path)
    if bad:
        shown = ", ".join(str(p) for p in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"warning: skipped {len(bad)} unreadable {label}: {shown}", file=sys.stderr)
    if not images:
        raise EdgecamError(f"no readable {label}", fix="check the dataset files")
    return images, targets, bad
