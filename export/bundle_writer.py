"""`edgecam export`: checkpoint -> bundle directory (ONNX + OpenVINO variants, parity, manifest)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecam import __version__
from edgecam.export import quantize as q
from edgecam.export.gates import GateResult, evaluate_gate
from edgecam.export.golden_writer import golden_indices, write_golden
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
    # The FP32 IR run with INFERENCE_PRECISION_HINT=bf16: the same files, a different engine setting.
    "openvino-bf16": ("openvino", "bf16", "openvino-fp32/model.xml", "openvino"),
    "openvino-int8": ("openvino", "int8", "openvino-int8/model.xml", "openvino"),
    "onnx-int8": ("onnx", "int8", "model-int8.onnx", "onnxruntime"),
}
DEFAULT_VARIANTS = ("onnx-fp32", "openvino-fp32", "openvino-fp16")
# What `--int8` adds: both INT8 forms, and bf16 so a benchmark shows f32 vs bf16 vs INT8 side by side.
INT8_VARIANTS = ("openvino-bf16", "openvino-int8", "onnx-int8")
# Precisions judged by the accuracy gate rather than by output parity: INT8, and bf16 (8 mantissa bits: its scores
# legitimately differ from FP32 by more than parity allows, e.g. 0.13 on a pruned detector, with the same mAP).
GATED = ("int8", "bf16")
# `edgecam quantize --engine E`: the INT8 variants for that engine (the FP32 ONNX file is always written: it is
# what the INT8 files are made from, and the reference their parity is shown against).
QUANTIZE_VARIANTS = {
    "openvino": ("openvino-int8",),
    "onnxruntime": ("onnx-int8",),
    "both": ("openvino-int8", "onnx-int8"),
}


def pruning_summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a reader of the manifest wants to know about pruning (the channel history stays in the checkpoint)."""
    if not record:
        return None
    keys = ("ratio", "target_gflops", "channel_ratio", "global", "round_to", "base")
    return {k: record.get(k) for k in keys}


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
    int8: bool = False,
    calib: int = 300,
    max_drop: float | None = None,
    allow_drop: bool = False,
) -> dict[str, Any]:
    """Write the bundle to a staging folder and move it into place only when every parity check passes.

    `int8` adds INT8_VARIANTS, calibrated on `calib` training frames; each INT8 variant must pass its accuracy gate
    (export/gates.py) or nothing is written, unless `allow_drop`, which writes the bundle and records the failure.
    `max_drop` (points of top-1 / mAP@0.5, implies `int8`) runs NNCF's accuracy-controlled quantization.
    """
    out = Path(out)
    if max_drop is not None and not 0 <= max_drop < 100:
        raise EdgecamError(f"--max-drop is in points (0.5 = half a point of top-1/mAP@0.5), got {max_drop}")
    asked_int8 = any(VARIANTS.get(v, ("", ""))[1] == "int8" for v in variants)
    if int8 or (max_drop is not None and not asked_int8):
        variants = tuple(variants) + tuple(v for v in INT8_VARIANTS if v not in variants)
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
        options = {"calib": calib, "max_drop": max_drop, "allow_drop": allow_drop}
        manifest = _build(model, meta, stage, data, variants, parity_limit, Path(checkpoint), options)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def _build(model, meta, stage: Path, data, variants, parity_limit: int, checkpoint: Path, options) -> dict[str, Any]:
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
    for rel, precision in {VARIANTS[v][2]: VARIANTS[v][1] for v in variants if VARIANTS[v][0] == "openvino"}.items():
        if precision != "int8":
            convert_openvino(onnx_path, stage / rel, metadata, fp16=precision == "fp16")
    frames = task.load_frames(data, parity_limit if meta["task"] == "classify" else min(parity_limit, 100))
    with torch.no_grad():
        reference = run_batches(lambda b: model(torch.from_numpy(b)).numpy(), frames)
    int8 = [v for v in variants if VARIANTS[v][1] == "int8"]
    quantized = _quantize(task, meta, stage, onnx_path, data, int8, metadata, frames, options) if int8 else {}
    entries: dict[str, Any] = {}
    failed = []
    keep = golden_indices(len(frames))
    golden_outputs: dict[str, np.ndarray] = {}
    for name in variants:
        fmt, precision, rel, backend_name = VARIANTS[name]
        engine = create_backend(backend_name)
        engine.load(stage / rel, precision=precision)
        raw = run_batches(lambda b, e=engine: e.infer(b)[0], frames)
        golden_outputs[name] = raw[keep]
        result, metrics = task.check(raw, reference, name, backend_name, precision)
        if not result.passed and precision not in GATED:  # these answer to the accuracy gate; parity is information
            failed.append(result)
        entries[name] = {
            "format": fmt,
            "precision": precision,
            "file": rel,
            "files": _files_of(stage, rel),
            "backend": backend_name,
            "engine": engine.info(),
            "metrics": metrics,
            **quantized.get(name, {}),
        }
    if failed:
        raise EdgecamError(
            "exported model disagrees with PyTorch: " + "; ".join(r.describe() for r in failed),
            path=checkpoint,
            fix="report this with the checkpoint; --variants can leave out the failing variant",
        )
    gated = [v for v in variants if VARIANTS[v][1] in GATED]
    if gated:
        _enforce_gates(task, meta["task"], reference, gated, entries, options["allow_drop"], checkpoint)
    # the device self-test (`edgecam verify`): a few frames and what each variant answered on them here
    golden = write_golden(
        stage,
        [task.images[i] for i in keep],
        golden_outputs,
        meta["task"],
        precisions={n: VARIANTS[n][1] for n in variants},
        engines={n: VARIANTS[n][3] for n in variants},
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
            "pruned": pruning_summary(meta.get("pruned")),
        },
        "parity": {
            "frames": int(len(frames)),
            "frames_from": task.frames_from,
            "pytorch": task.reference_metrics(reference),
        },
        "default_variants": [v for v in ("openvino-fp32", "onnx-fp32", "openvino-fp16") if v in variants],
        "variants": entries,
        "golden": golden,
    }
    write_manifest(stage, manifest)
    return manifest


def _quantize(task, meta, stage: Path, onnx_path: Path, data, names, metadata, frames, options) -> dict[str, Any]:
    """Write the INT8 files; returns per variant what the manifest records about how it was made."""
    import onnx
    import openvino as ov

    calib = q.load_calibration(meta["task"], task.spec, task.class_names, data, options["calib"])
    accuracy = None
    if options["max_drop"] is not None:
        if not task.labelled:
            raise EdgecamError("--max-drop needs labelled validation data", fix="pass --data")
        accuracy = q.AccuracyControl(frames, task.score, options["max_drop"] / 100.0)
    out: dict[str, Any] = {}
    reverted: list[str] = []
    if "openvino-int8" in names:
        fp32 = stage / VARIANTS["openvino-fp32"][2]
        model = ov.Core().read_model(str(fp32)) if fp32.is_file() else ov.convert_model(str(onnx_path))
        heads = q.ov_head_ops(model) if meta["task"] == "detect" else []
        quantized, info = q.quantize_openvino(model, calib, heads, accuracy=accuracy)
        for key, value in metadata.items():
            quantized.set_rt_info(value if isinstance(value, str) else json.dumps(value), ["edgecam", key])
        path = stage / VARIANTS["openvino-int8"][2]
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        reverted = info["reverted_layers"]
        out["openvino-int8"] = {"calibration": calib.describe(), "quantization": info}
    if "onnx-int8" in names:
        proto = onnx.load(str(onnx_path))
        exclude = q.onnx_head_nodes(proto) if meta["task"] == "detect" else []
        mapped, unmapped = q.onnx_names_for(reverted, proto)  # accuracy control's choices, found by name
        info = q.quantize_onnx(
            onnx_path, stage / VARIANTS["onnx-int8"][2], calib, metadata, sorted({*exclude, *mapped})
        )
        info["reverted_layers"], info["unmapped_layers"] = mapped, unmapped
        out["onnx-int8"] = {"calibration": calib.describe(), "quantization": info}
    return out


def _enforce_gates(task, task_name: str, reference, names, entries, allow_drop: bool, checkpoint: Path) -> None:
    """Record each INT8 variant's gate; a failure stops the export unless `allow_drop`."""
    before = task.metrics(reference)
    results: list[GateResult] = []
    for name in names:
        gate = evaluate_gate(task_name, name, before, entries[name]["metrics"])
        entries[name]["gate"] = {**gate.to_dict(), "accepted_by_allow_drop": not gate.passed and allow_drop}
        results.append(gate)
    failed = [g for g in results if not g.passed]
    if failed and not allow_drop:
        unchecked = any(g.drop is None for g in failed)
        raise EdgecamError(
            "accuracy gate failed (reduced precision vs FP32): " + "; ".join(g.describe() for g in failed),
            path=checkpoint,
            fix="pass --data with labelled images so the INT8 accuracy can be compared, or --allow-drop"
            if unchecked
            else "pass --max-drop D to keep the most sensitive layers in float, calibrate on more frames (--calib), "
            "or pass --allow-drop to write the bundle anyway",
        )
