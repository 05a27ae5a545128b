"""The one `torch.onnx.export` call: exporter, opset, input name and dynamic batch, for `edgecam export` and the
pruning report's ONNX Runtime latency (which must time the graph that export writes).

It lives in train/ rather than export/ because export/ imports train/ and train/ may not import export/ (DESIGN.md);
export/onnx_export.py adds the metadata, the checker and the single-file save on top.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from edgecam.runtime.errors import EdgecamError

OPSET = 18
INPUT_NAME = "images"
MAX_BATCH = 1024


def trace_onnx(
    model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, output_names: list[str] | None = None
) -> Path:
    """Write `path`: input `images` [batch, *input_shape], batch dynamic (1..MAX_BATCH), torch.export-based exporter.

    The example batch is 2: torch.export specialises a dimension traced at size 1. Weights may land in a side file
    `path.data`; callers that ship the file fold it in (export/onnx_export.py).
    """
    model = model.eval()
    dummy = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
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
                input_names=[INPUT_NAME],
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
    return path
