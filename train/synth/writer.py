"""Write synthetic datasets to disk: ImageFolder trees for classification, YOLO trees for detection.

Train and val images come from different scenes (separate random streams), so validation accuracy is
not inflated by crops of the same shelf landing in both splits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

from .retail import GAP_CLASS, RETAIL_CLASSES, SKU_NAMES, render_shelf
from .security import DETECTION_CLASSES, SECURITY_CLASSES, render_street

SCENARIOS = ("retail", "security")
CLASSES = {"retail": RETAIL_CLASSES, "security": SECURITY_CLASSES}
DET_CLASSES = {"retail": (*SKU_NAMES, GAP_CLASS), "security": DETECTION_CLASSES}
SHELF_SIZE = (640, 480)  # scene size the retail crops are cut from
FRAME_SIZE = (192, 144)  # security classification frames: small files, still 96-128 px after resizing
JITTER = 0.06


def _check(scenario: str, out: Path, n: int, min_n: int) -> None:
    if scenario not in SCENARIOS:
        raise EdgecamError(f"unknown scenario {scenario!r}", fix=f"use one of: {', '.join(SCENARIOS)}")
    if n < min_n:
        raise EdgecamError(f"n={n} is too small for scenario {scenario!r}", fix=f"use n >= {min_n}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgecamError("output folder exists and is not empty", path=out, fix="choose an empty folder")


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent train/val generators from one seed (``SeedSequence.spawn`` works on numpy >= 1.17)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]


def _split_counts(n: int, classes: tuple[str, ...], val_fraction: float) -> tuple[dict, dict]:
    """Balanced per-class counts summing to ``n``; every class gets >= 1 train and (if asked) >= 1 val."""
    k = len(classes)
    train, val = {}, {}
    for i, c in enumerate(classes):
        total = n // k + (1 if i < n % k else 0)
        v = min(max(1, round(total * val_fraction)), total - 1) if val_fraction > 0 else 0
        train[c], val[c] = total - v, v
    return train, val


def _jitter_crop(img: np.ndarray, xywh: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Cut the slot with each edge moved by up to ``JITTER`` of the slot size, as a sloppy ROI would."""
    x, y, w, h = xywh
    dx0, dx1 = rng.uniform(-JITTER, JITTER, 2) * w
    dy0, dy1 = rng.uniform(-JITTER, JITTER, 2) * h
    ih, iw = img.shape[:2]
    x0, y0 = int(np.clip(round(x + dx0), 0, iw - 2)), int(np.clip(round(y + dy0), 0, ih - 2))
    x1, y1 = int(np.clip(round(x + w + dx1), x0 + 2, iw)), int(np.clip(round(y + h + dy1), y0 + 2, ih))
    return img[y0:y1, x0:x1]


def _retail_samples(rng: np.random.Generator, quota: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """Slot crops until every quota is met; state probabilities follow what is still missing."""
    left = dict(quota)
    while sum(left.values()) > 0:
        probs = [left[c] + 0.02 * sum(left.values()) for c in RETAIL_CLASSES]
        scene = render_shelf(rng, SHELF_SIZE, state_probs=probs)
        for i in rng.permutation(len(scene.slots)):
            slot = scene.slots[int(i)]
            if left[slot.state] > 0 and slot.xywh[2] >= 8 and slot.xywh[3] >= 8:
                left[slot.state] -= 1
                yield slot.state, _jitter_crop(scene.image, slot.xywh, rng)


def _security_samples(rng: np.random.Generator, quota: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """Whole frames, classes interleaved round-robin so a short run still covers every class."""
    left = dict(quota)
    while sum(left.values()) > 0:
        for c in SECURITY_CLASSES:
            if left[c] > 0:
                left[c] -= 1
                yield c, render_street(rng, FRAME_SIZE, content=c).image


def _progress(enabled: bool, total: int) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if enabled and (done[0] % 100 == 0 or done[0] == total):
            print(f"\rsynth: {done[0]}/{total}", end="\n" if done[0] == total else "", file=sys.stderr, flush=True)

    return tick


def synth_classification(
    scenario: str,
    out: Path | str,
    n: int,
    seed: int = 0,
    val_fraction: float = 0.2,
    crop_size: int | None = None,
    progress: bool = False,
) -> dict:
    """Write a balanced ImageFolder dataset ``out/{train,val}/<class>/<idx>.png`` of ``n`` images in total."""
    out = Path(out)
    classes = CLASSES.get(scenario, ())
    _check(scenario, out, n, 2 * max(1, len(classes)))
    if not 0.0 <= val_fraction < 1.0:
        raise EdgecamError(f"val_fraction={val_fraction} must be in [0, 1)", fix="use e.g. 0.2")
    if crop_size is not None and crop_size < 8:
        raise EdgecamError(f"crop_size={crop_size} is too small", fix="use crop_size >= 8 or leave it unset")
    counts = dict(zip(("train", "val"), _split_counts(n, classes, val_fraction), strict=True))
    sampler = _retail_samples if scenario == "retail" else _security_samples
    tick = _progress(progress, n)
    # One child stream per split: train and val never share a scene, and val does not shift with n_train.
    for split, rng in zip(("train", "val"), _streams(seed), strict=True):
        for c in classes:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        index = dict.fromkeys(classes, 0)
        for c, img in sampler(rng, counts[split]):
            if crop_size is not None:
                img = cv2.resize(img, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / split / c / f"{index[c]:05d}.png"), img)
            index[c] += 1
            tick()
    meta = {
        "scenario": scenario,
        "seed": seed,
        "n": n,
        "classes": list(classes),
        "val_fraction": val_fraction,
        "crop_size": crop_size,
        "train": counts["train"],
        "val": counts["val"],
    }
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"classes": list(classes), "train": counts["train"], "val": counts["val"], "out": str(out)}


def _yolo_lines(boxes: list, names: tuple[str, ...], size: tuple[int, int], min_px: float = 3.0) -> list[str]:
    """``cls cx cy w h`` lines normalised to the image, boxes clipped and tiny ones dropped."""
    w, h = size
    lines = []
    for b in boxes:
        x0, y0, x1, y1 = np.clip(np.asarray(b.xyxy, np.float64), 0, [w, h, w, h])
        if x1 - x0 < min_px or y1 - y0 < min_px:
            continue
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        lines.append(f"{names.index(b.cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines


def synth_detection(
    scenario: str,
    out: Path | str,
    n: int,
    seed: int = 0,
    imgsz: tuple[int, int] = (640, 480),
    val_fraction: float = 0.2,
) -> dict:
    """Write a YOLO dataset (``images/``, ``labels/``, ``data.yaml``) of ``n`` scenes of size ``imgsz`` (w, h)."""
    out = Path(out)
    _check(scenario, out, n, 2)
    names = DET_CLASSES[scenario]
    n_val = min(max(1, round(n * val_fraction)), n - 1) if val_fraction > 0 else 0
    counts = {"train": n - n_val, "val": n_val}
    size = (int(imgsz[0]), int(imgsz[1]))
    n_boxes = 0
    for split, rng in zip(("train", "val"), _streams(seed), strict=True):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(counts[split]):
            if scenario == "retail":
                # a camera closer to the shelf than the slot-crop scenes, mostly stocked: products are the objects
                rows, per_row = int(rng.integers(2, 5)), int(rng.integers(2, 6))
                scene = render_shelf(rng, size, n_rows=rows, slots_per_row=per_row, state_probs=(0.6, 0.25, 0.15))
                img, boxes = scene.image, scene.boxes
            else:
                content = ("person", "vehicle", "clear", "vehicle")[i % 4]  # a 1-image val split still has boxes
                street = render_street(rng, size, content=content)
                img, boxes = street.image, street.boxes
            lines = _yolo_lines(boxes, names, size)
            n_boxes += len(lines)
            cv2.imwrite(str(out / "images" / split / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            (out / "labels" / split / f"{i:05d}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    yaml = [
        f"path: {out.resolve()}",
        "train: images/train",
        "val: images/val",
        f"nc: {len(names)}",
        "names: [" + ", ".join(names) + "]",
    ]
    (out / "data.yaml").write_text("\n".join(yaml) + "\n")
    return {"names": list(names), "train": counts["train"], "val": counts["val"], "boxes": n_boxes, "out": str(out)}
