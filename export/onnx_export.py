"""PyTorch -> ONNX (torch.export-based exporter, dynamic batch), checked, with edgecam metadata inside."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec

OPSET = 18


def export_onnx(
    model: torch.nn.Module, spec: PreprocessSpec, path: Path, metadata: dict[str, Any], output_names: list[str]
) -> Path:
    """Write `path` with input `images` [batch, 3, H, W] and the edgecam metadata in metadata_props."""
    model = model.eval()
    dummy = torch.zeros(2, *spec.input_shape)
    batch = torch.export.Dim("batch", min=1, max=1024)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it logs a line per torchvision op it skips; we do not use torchvision
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=["images"],
                output_names=output_names,
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many error types; the message is what matters
            raise EdgecamError(f"ONNX export failed: {str(exc).splitlines()[0]}", path=path) from None
        finally:
            quiet.setLevel(level)
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
