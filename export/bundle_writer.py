"""`edgecam export`: checkpoint -> bundle directory (ONNX + OpenVINO variants, parity, manifest)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import torch

from edgecam import __version__
from edgecam.export.onnx_export import export_onnx
from edgecam.export.openvino_convert import convert_openvino
from edgecam.export.tasks import TASKS, run_batches
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import SCHEMA_VERSION, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
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
    if meta["task"] not in TASKS:
        raise EdgecamError(f"cannot export a {meta['task']!r} checkpoint", path=checkpoint)
    if data is None and meta.get("config", {}).get("data") and Path(meta["config"]["data"]).exists():
        data = meta["config"]["data"]
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        manifest = _build(model, meta, stage, data, variants, parity_limit, Path(checkpoint))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def _build(model, meta, stage: Path, data, variants, parity_limit: int, checkpoint: Path) -> dict[str, Any]:
    spec: PreprocessSpec = meta["preprocess_spec"]
    class_names = tuple(meta["class_names"])
    task = TASKS[meta["task"]](class_names, spec, meta)
    metadata = {
        "edgecam_schema": str(SCHEMA_VERSION),
        "task": meta["task"],
        "class_names": list(class_names),
        "preprocess": spec.to_dict(),
        "model": meta["model"],
    }
    if "detect" in meta:
        metadata["detect"] = meta["detect"]
    onnx_path = export_onnx(model, spec, stage / "model.onnx", metadata, task.output_names)
    for name in variants:
        fmt, precision, rel, _ = VARIANTS[name]
        if fmt == "openvino":
            convert_openvino(onnx_path, stage / rel, metadata, fp16=precision == "fp16")
    frames = task.load_frames(data, parity_limit if meta["task"] == "classify" else min(parity_limit, 100))
    with torch.no_grad():
        reference = run_batches(lambda b: model(torch.from_numpy(b)).numpy(), frames)
    entries: dict[str, Any] = {}
    failed = []
    for name in variants:
        fmt, precision, rel, backend_name = VARIANTS[name]
        engine = create_backend(backend_name)
        engine.load(stage / rel, precision=precision)
        raw = run_batches(lambda b, e=engine: e.infer(b)[0], frames)
        result, metrics = task.check(raw, reference, name, backend_name, precision)
        if not result.passed:
            failed.append(result)
        entries[name] = {
            "format": fmt,
            "precision": precision,
            "file": rel,
            "files": _files_of(stage, rel),
            "backend": backend_name,
            "metrics": metrics,
        }
    if failed:
        raise EdgecamError(
            "exported model disagrees with PyTorch: " + "; ".join(r.describe() for r in failed),
            path=checkpoint,
            fix="report this with the checkpoint; --variants can leave out the failing variant",
        )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "edgecam_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": meta["task"],
        "class_names": list(class_names),
        "preprocess": spec.to_dict(),
        "input": {"name": "images", "shape": [-1, *spec.input_shape], "dtype": "float32"},
        **task.manifest(frames, reference),
        "model": {**meta["model"], **count_flops(model, spec.input_shape)},
        "source": {
            "checkpoint": str(checkpoint),
            "sha256": sha256_file(checkpoint),
            "epoch": meta.get("epoch"),
            "metrics": meta.get("metrics", {}),
        },
        "parity": {
            "frames": int(len(frames)),
            "frames_from": task.frames_from,
            "pytorch": task.reference_metrics(reference),
        },
        "default_variants": [v for v in ("openvino-fp32", "onnx-fp32", "openvino-fp16") if v in variants],
        "variants": entries,
    }
    write_manifest(stage, manifest)
    return manifest
