"""`edgecam export`: checkpoint -> bundle directory (ONNX + OpenVINO variants, parity, manifest)."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecam import __version__
from edgecam.export.onnx_export import export_onnx
from edgecam.export.openvino_convert import convert_openvino
from edgecam.export.parity import ParityResult, compare_logits
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import MANIFEST, SCHEMA_VERSION, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import load_images, scan
from edgecam.runtime.metrics import classification_report
from edgecam.runtime.preprocess import PreprocessSpec, preprocess_batch
from edgecam.train.checkpoint import load_checkpoint
from edgecam.train.flops import count_flops

# name -> (format, precision, file, backend used for parity)
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "onnx-fp32": ("onnx", "fp32", "model.onnx", "onnxruntime"),
    "openvino-fp32": ("openvino", "fp32", "openvino-fp32/model.xml", "openvino"),
    "openvino-fp16": ("openvino", "fp16", "openvino-fp16/model.xml", "openvino"),
}
DEFAULT_VARIANTS = ("onnx-fp32", "openvino-fp32", "openvino-fp16")


def _files_of(root: Path, main: str) -> dict[str, dict[str, Any]]:
    paths = [main] + ([main[: -len(".xml")] + ".bin"] if main.endswith(".xml") else [])
    return {p: {"sha256": sha256_file(root / p), "size_bytes": (root / p).stat().st_size} for p in paths}


def parity_frames(
    data: str | Path | None, class_names: tuple[str, ...], spec: PreprocessSpec, limit: int
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Validation frames through the shared preprocessing (labels too); random frames only without data."""
    if data:
        root = Path(data)
        root = root / "val" if (root / "val").is_dir() else root
        split = scan(root, class_names)
        step = max(1, len(split.samples) // limit) if limit else 1
        split.samples = split.samples[::step][:limit] if limit else split.samples
        images, targets, _ = load_images(split, "parity images")
        batch, _ = preprocess_batch(images, spec)
        return batch, np.asarray(targets), str(root)
    print("warning: no --data and the checkpoint's data folder is gone: parity runs on random frames", file=sys.stderr)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8) for _ in range(min(limit, 64))]
    return preprocess_batch(images, spec)[0], None, "random"


def run_batches(fn: Any, batch: np.ndarray, size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(fn(batch[i : i + size])) for i in range(0, len(batch), size)])


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    data: str | Path | None = None,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    parity_limit: int = 1000,
    force: bool = False,
) -> dict[str, Any]:
    """Write the bundle to a staging folder and move it into place only when every parity check passes."""
    out = Path(out)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise EdgecamError(f"unknown variant(s) {unknown}", fix=f"choose from {sorted(VARIANTS)}")
    if out.exists() and any(out.iterdir()) and not force:
        raise EdgecamError("output folder exists and is not empty", path=out, fix="choose a new folder or pass --force")
    model, meta = load_checkpoint(checkpoint)
    if meta["task"] != "classify":
        raise EdgecamError(f"exporting {meta['task']} checkpoints is not supported yet", path=checkpoint)
    spec: PreprocessSpec = meta["preprocess_spec"]
    class_names = tuple(meta["class_names"])
    if data is None and meta.get("config", {}).get("data") and Path(meta["config"]["data"]).is_dir():
        data = meta["config"]["data"]
    metadata = {
        "edgecam_schema": str(SCHEMA_VERSION),
        "task": meta["task"],
        "class_names": list(class_names),
        "preprocess": spec.to_dict(),
        "model": meta["model"],
    }
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        manifest = _build(model, meta, spec, class_names, metadata, stage, data, variants, parity_limit, checkpoint)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def _build(model, meta, spec, class_names, metadata, stage, data, variants, parity_limit, checkpoint) -> dict[str, Any]:
    onnx_path = export_onnx(model, spec, stage / "model.onnx", metadata, ["logits"])
    for name in variants:
        fmt, precision, rel, _ = VARIANTS[name]
        if fmt == "openvino":
            convert_openvino(onnx_path, stage / rel, metadata, fp16=precision == "fp16")
    frames, targets, frames_from = parity_frames(data, class_names, spec, parity_limit)
    with torch.no_grad():
        reference = run_batches(lambda b: model(torch.from_numpy(b)).numpy(), frames)
    entries: dict[str, Any] = {}
    results: list[ParityResult] = []
    for name in variants:
        fmt, precision, rel, backend_name = VARIANTS[name]
        engine = create_backend(backend_name)
        engine.load(stage / rel, precision=precision)
        logits = run_batches(lambda b, e=engine: e.infer(b)[0], frames)
        result = compare_logits(reference, logits, variant=name, backend=backend_name, precision=precision)
        results.append(result)
        metrics: dict[str, Any] = {"parity": result.to_dict()}
        if targets is not None:
            report = classification_report(targets, logits.argmax(1), class_names)
            metrics.update(top1=report["top1"], per_class=report["per_class"], eval_frames=report["n"])
        entries[name] = {
            "format": fmt,
            "precision": precision,
            "file": rel,
            "files": _files_of(stage, rel),
            "backend": backend_name,
            "metrics": metrics,
        }
    failed = [r for r in results if not r.passed]
    if failed:
        raise EdgecamError(
            "exported model disagrees with PyTorch: " + "; ".join(r.describe() for r in failed),
            path=checkpoint,
            fix="report this with the checkpoint; --variants can leave out the failing variant",
        )
    reference_metrics = None
    if targets is not None:
        reference_metrics = classification_report(targets, reference.argmax(1), class_names)["top1"]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "edgecam_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": meta["task"],
        "class_names": list(class_names),
        "preprocess": spec.to_dict(),
        "input": {"name": "images", "shape": [-1, *spec.input_shape], "dtype": "float32"},
        "outputs": [{"name": "logits", "shape": [-1, len(class_names)]}],
        "model": {**meta["model"], **count_flops(model, spec.input_shape)},
        "source": {
            "checkpoint": str(checkpoint),
            "sha256": sha256_file(Path(checkpoint)),
            "epoch": meta.get("epoch"),
            "val_top1": meta.get("metrics", {}).get("top1"),
        },
        "parity": {"frames": int(len(frames)), "frames_from": frames_from, "pytorch_top1": reference_metrics},
        "default_variants": [v for v in ("openvino-fp32", "onnx-fp32", "openvino-fp16") if v in variants],
        "variants": entries,
    }
    write_manifest(stage, manifest)
    assert (stage / MANIFEST).is_file()
    return manifest
