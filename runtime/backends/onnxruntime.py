"""ONNX Runtime on an execution provider: the CPU, or the one asked for (CUDA, TensorRT, ...), checked to be the one
the session really runs on (ONNX Runtime itself would fall back to the CPU with only a log line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend, as_input
from edgecam.runtime.device import check_device
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
        provider = check_device(self.name, device)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # Spinning intra-op threads steal the cores from capture and from other sessions in the process.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU provider stays behind the chosen one for the operators that provider lacks (ONNX Runtime's own
        # per-operator placement); the session as a whole must still run on the chosen provider (checked below).
        providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise EdgecamError(f"ONNX Runtime cannot load the model: {exc}", path=path, fix="re-export") from None
        running = self.session.get_providers()
        if not running or running[0] != provider:
            raise EdgecamError(
                f"ONNX Runtime could not start {provider} (it runs on {', '.join(running) or 'nothing'})",
                path=path,
                fix="check the provider's libraries (CUDA, cuDNN, TensorRT) and drivers, or use --device cpu",
            )
        self._providers = running
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
            "device": self._providers[0],
            "providers": self._providers,
            "threads": self._threads,
            "precision": self._precision,
        }
