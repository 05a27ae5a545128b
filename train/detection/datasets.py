"""Detection ground truth from disk (YOLO `data.yaml`, COCO JSON) into one `DetDataset`; torch-free.

Bad label lines and unreadable images are skipped, recorded in `DetDataset.problems` as "file:line: reason"
and summarised in one warning line, so a few broken files never stop training but are never silently lost.
A split with no usable box at all is an error: training on it would only teach the model "background".
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import IMAGE_EXTS, read_image

from .samples import DetDataset, DetSample

TOL = 1e-3  # normalised coordinates may overshoot [0, 1] by this much (rounding in converters), then are clipped
SHOWN_PROBLEMS = 3  # how many problems the summary warning names


# ----------------------------------------------------------------------------------------------- dispatch


def load_detection_data(path: str | Path, split: str = "val") -> DetDataset:
    """A `.yaml`/`.yml` file or a folder holding `data.yaml` -> YOLO split; a `.json` -> COCO (one split)."""
    path = Path(path)
    if path.is_dir():
        for name in ("data.yaml", "data.yml"):
            if (path / name).is_file():
                return load_yolo(path / name, split)
    elif path.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(path, split)
    elif path.suffix.lower() == ".json":
        return load_coco(path)
    raise EdgecamError(
        "not a detection dataset",
        path=path,
        fix="give a YOLO data.yaml, a folder containing one, or a COCO annotation .json",
    )


# ------------------------------------------------------------------------------------------------- YOLO


def load_yolo(data_yaml: str | Path, split: str) -> DetDataset:
    """One split of an Ultralytics-style dataset; labels are found by the images/ -> labels/, .jpg -> .txt rule."""
    yaml_path = Path(data_yaml)
    cfg = _read_yaml(yaml_path)
    names = _yolo_names(cfg, yaml_path)
    root = _yolo_root(cfg, yaml_path)
    samples: list[DetSample] = []
    problems: list[str] = []
    for image_path in _split_images(cfg, split, root, yaml_path):
        size = _image_size(image_path, problems)
        if size is None:
            continue
        labels = _read_yolo_labels(yolo_label_path(image_path), size, len(names), problems)
        if labels is not None:
            samples.append(DetSample(image_path, size[0], size[1], *labels))
    fix = f"check the label files next to {split!r} (lines 'class cx cy w h', normalised to 0..1)"
    return _finish(DetDataset(samples, names, root, problems), yaml_path, fix)


def yolo_label_path(image: Path) -> Path:
    """The Ultralytics rule: the last `images` folder becomes `labels`, the extension becomes `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_yolo_line(line: str, num_classes: int) -> tuple[int, tuple[float, float, float, float]]:
    """`class cx cy w h` -> (class id, clipped normalised x1, y1, x2, y2); ValueError says what is wrong."""
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 values 'class cx cy w h', got {len(fields)}")
    values = []
    for token in fields:
        try:
            v = float(token)
        except ValueError:
            raise ValueError(f"non-numeric value {token!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"non-finite value {token!r}")
        values.append(v)
    c, cx, cy, w, h = values
    if c != int(c):
        raise ValueError(f"class id {fields[0]!r} is not an integer")
    if not 0 <= c < num_classes:
        raise ValueError(f"class id {int(c)} out of range 0..{num_classes - 1}")
    if w <= 0 or h <= 0:
        raise ValueError(f"zero or negative size w={w:g} h={h:g}")
    corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if min(corners) < -TOL or max(corners) > 1 + TOL:
        shown = ", ".join(f"{v:.4g}" for v in corners)
        raise ValueError(f"box ({shown}) outside [0, 1]")
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in corners)
    return int(c), (x1, y1, x2, y2)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgecamError("data.yaml not found", path=path, fix="give the path of the dataset's data.yaml")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdgecamError(f"malformed YAML: {exc}".splitlines()[0], path=path, fix="fix the YAML syntax") from None
    if not isinstance(cfg, dict):
        raise EdgecamError("expected a YAML mapping", path=path, fix="write keys path, train, val, names")
    return cfg


def _yolo_names(cfg: dict[str, Any], path: Path) -> tuple[str, ...]:
    names = cfg.get("names")
    fix = "add 'names: [a, b, ...]' or 'names: {0: a, 1: b}'"
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise EdgecamError("'names' keys must be integer class ids", path=path, fix=fix) from None
        if sorted(by_id) != list(range(len(by_id))):
            raise EdgecamError(f"'names' ids {sorted(by_id)} are not 0..n-1", path=path, fix=fix)
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise EdgecamError("no class names ('names' is missing or empty)", path=path, fix=fix)
    if cfg.get("nc") is not None and cfg["nc"] != len(names):
        raise EdgecamError(f"nc: {cfg['nc']} but {len(names)} names", path=path, fix="make nc match the names")
    return tuple(str(n) for n in names)


def _yolo_root(cfg: dict[str, Any], path: Path) -> Path:
    root = cfg.get("path")
    if not root:
        return path.parent
    root = Path(str(root)).expanduser()
    return root if root.is_absolute() else path.parent / root


def _split_images(cfg: dict[str, Any], split: str, root: Path, yaml_path: Path) -> list[Path]:
    entry = cfg.get(split)
    if not entry:
        raise EdgecamError(f"no {split!r} entry", path=yaml_path, fix=f"add '{split}: images/{split}'")
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        where = Path(str(item)).expanduser()
        where = where if where.is_absolute() else root / where
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        elif where.is_file() and where.suffix.lower() == ".txt":
            images += _image_list(where)
        else:
            raise EdgecamError(
                f"{split!r} split not found: {where}",
                path=yaml_path,
                fix=f"point '{split}' at a folder of images or a .txt list of image paths",
            )
    if not images:
        raise EdgecamError(f"the {split!r} split has no images", path=yaml_path, fix="add images or fix the path")
    return images


def _image_list(list_file: Path) -> list[Path]:
    """A .txt of image paths, one a line; relative paths are relative to the list's folder."""
    out = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else list_file.parent / p)
    return out


def _image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    """(width, height) from one decode, as training will see the image; None (and a problem) if unreadable."""
    try:
        h, w = read_image(path).shape[:2]
    except EdgecamError:
        problems.append(f"{path}: unreadable or missing image")
        return None
    return w, h


def _read_yolo_labels(
    label: Path, size: tuple[int, int], num_classes: int, problems: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Boxes in pixels and class ids; no label file is a background image; an unreadable one skips the image."""
    if not label.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: unreadable label file ({type(exc).__name__}), image skipped")
        return None
    w, h = size
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            c, (x1, y1, x2, y2) = parse_yolo_line(line, num_classes)
        except ValueError as exc:
            problems.append(f"{label}:{number}: {exc}")
            continue
        boxes.append((x1 * w, y1 * h, x2 * w, y2 * h))
        classes.append(c)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


# ------------------------------------------------------------------------------------------------- COCO


def load_coco(annotation_json: str | Path, images_dir: str | Path | None = None) -> DetDataset:
    """COCO `instances` JSON; category ids become contiguous class ids in sorted-id order, crowd boxes are ignored.

    Images are looked up in `images_dir`, else next to the JSON, else in `images/` beside it. Boxes may
    overshoot the image by max(1 px, 0.1 %) (rounding in annotation tools) and are clipped.
    """
    path = Path(annotation_json)
    data = _read_coco_json(path)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    names = tuple(str(c.get("name", c["id"])) for c in categories)
    folders = [Path(images_dir)] if images_dir is not None else [path.parent, path.parent / "images"]
    problems: list[str] = []
    sizes: dict[Any, tuple[Path, int, int]] = {}  # image id -> (file, width, height) of readable images
    known: set[Any] = set()
    for entry in data["images"]:
        known.add(entry.get("id"))
        file = next((d / entry["file_name"] for d in folders if (d / entry["file_name"]).is_file()), None)
        size = _image_size(file or folders[0] / entry["file_name"], problems)
        if size is None:
            continue
        stated = (entry.get("width"), entry.get("height"))
        if None not in stated and tuple(stated) != size:
            problems.append(f"{file}: image is {size[0]}x{size[1]} but the JSON says {stated[0]}x{stated[1]}, skipped")
            continue
        sizes[entry["id"]] = (file, *size)
    boxes: dict[Any, list[tuple[float, ...]]] = {i: [] for i in sizes}
    classes: dict[Any, list[int]] = {i: [] for i in sizes}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd"):
            continue
        image_id = ann.get("image_id")
        if image_id in known and image_id not in sizes:
            continue  # its image was skipped and already reported
        try:
            if image_id not in sizes:
                raise ValueError(f"unknown image id {image_id!r}")
            if ann.get("category_id") not in class_of:
                raise ValueError(f"unknown category id {ann.get('category_id')!r}")
            xyxy = _coco_box(ann.get("bbox"), sizes[image_id][1:])
        except ValueError as exc:
            problems.append(f"{path}: annotation id {ann.get('id', '?')}: {exc}")
            continue
        boxes[image_id].append(xyxy)
        classes[image_id].append(class_of[ann["category_id"]])
    samples = [
        DetSample(file, w, h, np.asarray(boxes[i], np.float32).reshape(-1, 4), np.asarray(classes[i], np.int64))
        for i, (file, w, h) in sizes.items()
    ]
    fix = "check the 'annotations' (bbox [x, y, w, h] in pixels) and that the images are next to the JSON"
    return _finish(DetDataset(samples, names, folders[0], problems), path, fix)


def _read_coco_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgecamError("COCO annotation file not found", path=path, fix="give the path of the .json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgecamError(f"malformed JSON: {exc}", path=path, fix="re-export the COCO annotations") from None
    fix = "a COCO file needs 'images', 'annotations' and 'categories' lists"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EdgecamError("no 'images' list", path=path, fix=fix)
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise EdgecamError("no 'categories'", path=path, fix=fix)
    entries_ok = all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in data["categories"]) and all(
        isinstance(e, dict) and "id" in e and isinstance(e.get("file_name"), str) for e in data["images"]
    )
    if not entries_ok:
        raise EdgecamError("a category or image entry lacks its 'id' or 'file_name'", path=path, fix=fix)
    return data


def _coco_box(bbox: Any, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """COCO [x, y, w, h] pixels -> clipped xyxy; ValueError says what is wrong."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"bbox must be [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"non-numeric bbox {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"non-finite bbox {bbox!r}")
    if w <= 0 or h <= 0:
        raise ValueError(f"zero or negative size w={w:g} h={h:g}")
    iw, ih = size
    tx, ty = max(1.0, TOL * iw), max(1.0, TOL * ih)
    if x < -tx or y < -ty or x + w > iw + tx or y + h > ih + ty:
        raise ValueError(f"bbox {[x, y, w, h]} outside the {iw}x{ih} image")
    x1, y1 = min(max(x, 0.0), iw), min(max(y, 0.0), ih)
    return x1, y1, min(max(x + w, 0.0), iw), min(max(y + h, 0.0), ih)


# ----------------------------------------------------------------------------------------------- shared


_REPORTED: set[tuple[str, int]] = set()  # (source, its problems) this process has already warned about


def _finish(det: DetDataset, source: Path, fix: str) -> DetDataset:
    """One warning line for all problems, then refuse a split without a single valid box.

    A COCO file is one split, so training loads the same file as "train" and "val" (as does a YOLO data.yaml
    whose val is its train folder): the same problems are reported once per process, not once per load."""
    key = (str(source), hash(tuple(det.problems)))
    if det.problems and key not in _REPORTED:
        _REPORTED.add(key)
        shown = "; ".join(det.problems[:SHOWN_PROBLEMS])
        more = f" (and {len(det.problems) - SHOWN_PROBLEMS} more)" if len(det.problems) > SHOWN_PROBLEMS else ""
        print(f"warning: {source}: skipped {len(det.problems)} bad label(s)/image(s): {shown}{more}", file=sys.stderr)
    if not det.samples:
        raise EdgecamError("no readable images", path=source, fix="check the image files and paths")
    if not any(len(s.classes) for s in det.samples):
        raise EdgecamError("no valid labels at all", path=source, fix=fix)
    return det
