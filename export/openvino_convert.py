"""ONNX -> OpenVINO IR (FP32 or FP16 weights), with the edgecam metadata in rt_info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openvino as ov


def convert_openvino(onnx_path: Path, xml_path: Path, metadata: dict[str, Any], fp16: bool = False) -> Path:
    """Write `xml_path` (+ .bin). FP16 halves the file; the CPU plugin still computes in f32 for it."""
    model = ov.convert_model(str(onnx_path))
    for key, value in metadata.items():
        model.set_rt_info(value if isinstance(value, str) else json.dumps(value), ["edgecam", key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return xml_path


def read_rt_info(xml_path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The edgecam keys stored in an IR's rt_info (absent keys are left out)."""
    model = ov.Core().read_model(str(xml_path))
    return {k: model.get_rt_info(["edgecam", k]).astype(str) for k in keys if model.has_rt_info(["edgecam", k])}
