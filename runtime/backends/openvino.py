"""OpenVINO on the CPU. FP32 variants run with INFERENCE_PRECISION_HINT=f32: the CPU plugin would run bf16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend
from edgecam.runtime.errors import EdgecamError

_CORE = None
# A variant's precision -> the inference precision the CPU plugin is told to use.
_HINT = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32"}


def core() -> Any:
    """One OpenVINO Core per process: models compiled from it share the CPU streams."""
    global _CORE
    if _CORE is None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise EdgecamError("openvino is not installed", fix="pip install openvino") from exc
        _CORE = ov.Core()
    return _CORE


@register_backend
class OpenVinoBackend(Backend):
    name = "openvino"
    formats = ("openvino", "onnx")

    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
    ) -> None:
        import openvino.properties as props
        import openvino.properties.hint as hints

        config: dict[str, Any] = {
            hints.performance_mode: hints.PerformanceMode.THROUGHPUT
            if mode == "throughput"
            else hints.PerformanceMode.LATENCY,
            hints.inference_precision: _HINT.get(precision, "f32"),
        }
        if threads:
            config[props.inference_num_threads] = int(threads)
        try:
            model = core().read_model(str(path))
            self.compiled = core().compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long C++ messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgecamError(f"OpenVINO cannot load the model: {first}", path=path, fix="re-export") from None
        self.request = self.compiled.create_infer_request()
        self._threads = threads
        self._precision = precision

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def info(self) -> dict[str, Any]:
        import openvino as ov
        import openvino.properties.hint as hints

        return {
            "backend": self.name,
            "version": ov.get_version(),
            "threads": self._threads,
            "precision": self._precision,
            "engine_precision": self.compiled.get_property(hints.inference_precision).to_string(),
            "conv_precisions": conv_precisions(self.compiled),
        }


def conv_precisions(compiled: Any) -> dict[str, int]:
    """How many convolutions the plugin really runs at each precision (u8/i8 = INT8 kernels).

    The inference-precision hint says f32 for an INT8 IR, yet its quantized convolutions run in INT8: only the
    compiled (runtime) graph tells which precision each layer got.
    """
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
    return dict(sorted(counts.items()))
