"""PyTorch -> ONNX (train/onnx_trace.py: the exporter settings), checked, with edgecam metadata inside, one file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import torch

from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.onnx_trace import trace_onnx


def export_onnx(
    model: torch.nn.Module, spec: PreprocessSpec, path: Path, metadata: dict[str, Any], output_names: list[str]
) -> Path:
    """Write `path` with input `images` [batch, 3, H, W] and the edgecam metadata in metadata_props."""
    trace_onnx(model, spec.input_shape, path, output_names)
    proto = onnx.load(str(path))  # also pulls in weights the exporter may have put in a side file
    # torch.export records its own bookkeeping keys; keep the file's metadata to what a consumer needs.
    del proto.metadata_props[:]
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path), save_as_external_data=False)  # one self-contained file
    side = path.with_name(path.name + ".data")
    if side.exists():
        side.unlink()
    return path


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Strings go in as they are, everything else as JSON."""
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)


def read_metadata(path: Path) -> dict[str, str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
