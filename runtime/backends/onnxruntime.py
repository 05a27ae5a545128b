"""ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend, as_input
from edgecam.runtime.errors import EdgecamError


@register_backend
class OnnxRuntimeBackend(Backend):
    """One InferenceSession; `submit` runs batches on a thread pool, since `InferenceSession.run` is thread-safe."""

    name = "onnxruntime"
    formats = ("onnx",)
    thread_safe = True

    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
        streams: int | None = None,
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
        return self.session.run(self.output_names, {self.input_name: as_input(batch)})

    def bind(self, batch: np.ndarray) -> Callable[[], None]:
        """An IO binding with the input bound once: each call only runs the session (outputs stay in ORT)."""
        data = as_input(batch)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, data)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        run = self.session.run_with_iobinding

        def call() -> None:
            run(binding)  # the outputs stay in the binding: a benchmark does not read them

        call.keep = data  # type: ignore[attr-defined]  # the binding points into this memory
        return call

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "version": self._version,
            "threads": self._threads,
            "precision": self._precision,
        }
