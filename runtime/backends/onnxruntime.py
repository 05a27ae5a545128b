"""ONNX Runtime on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend
from edgecam.runtime.errors import EdgecamError


@register_backend
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)

    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EdgecamError("onnxruntime is not installed", fix="pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # Spinning intra-op threads steal the cores from capture and from other sessions in the process.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise EdgecamError(f"ONNX Runtime cannot load the model: {exc}", path=path, fix="re-export") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._threads = threads
        self._precision = precision
        self._version = ort.__version__

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch, np.float32)})

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "version": self._version,
            "threads": self._threads,
            "precision": self._precision,
        }
