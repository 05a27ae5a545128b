"""OpenVINO on a device: the CPU, or the one asked for (GPU, NPU, AUTO, ...), checked to be on this host before the
model compiles. FP32 variants run with INFERENCE_PRECISION_HINT=f32: the CPU plugin would run bf16 (and the GPU
plugin f16). Threads are a CPU setting: other devices get only the performance hint and streams."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend, as_input
from edgecam.runtime.device import OV_VIRTUAL, check_device, ov_parts
from edgecam.runtime.errors import EdgecamError

_CORE = None
# A variant's precision -> the inference precision the CPU plugin is told to use.
INFERENCE_PRECISION = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32"}
# Devices that take the inference-precision hint (the NPU compiles to its own precisions and refuses it).
PRECISION_DEVICES = ("CPU", "GPU")


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
    """One compiled model: `infer` on an infer request per calling thread, `submit` on an `AsyncInferQueue`."""

    name = "openvino"
    formats = ("openvino", "onnx")
    async_kind = "async"
    thread_safe = True  # `infer` runs one request per calling thread

    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
        streams: int | None = None,
    ) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        device = check_device(self.name, device)
        config: dict[str, Any] = {
            hints.performance_mode: hints.PerformanceMode.THROUGHPUT
            if mode == "throughput"
            else hints.PerformanceMode.LATENCY,
        }
        head = device.split(":")[0]
        if head in OV_VIRTUAL:
            # AUTO / MULTI / HETERO refuse device settings of their own: each device they may pick gets them.
            parts = ov_parts(device) or list(core().available_devices)
            each = {p: _device_config(p, precision, threads) for p in parts}
            config[props.device.properties] = {p: c for p, c in each.items() if c}
        else:
            config.update(_device_config(device, precision, threads))
            if streams:
                config[props.num_streams] = int(streams)
        try:
            model = core().read_model(str(path))
            self.compiled = core().compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long C++ messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgecamError(f"OpenVINO cannot load the model: {first}", path=path, fix="re-export") from None
        # Read once: a property lookup crosses into the plugin, which costs more than a small model's inference.
        self._ov = ov
        self._path = Path(path)
        self._outputs = len(self.compiled.outputs)
        self._input_shape = self.compiled.input(0).get_partial_shape()
        self._mode = mode
        self._device = device
        self._streams = _int_property(self.compiled, props.num_streams, 1)  # AUTO does not say
        self._optimal = _int_property(self.compiled, props.optimal_number_of_infer_requests, 1)
        self._threads = threads
        self._precision = precision
        self._local = threading.local()  # each calling thread's infer request
        self._queue: Any = None
        self._submit_lock = threading.Lock()

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Thread-safe: each calling thread runs its own infer request (made on first use), so cameras call it
        from their own threads and the plugin runs them side by side on its streams, with no hand-off to another
        thread. The batch is copied into an input tensor kept per thread and batch shape: setting a new tensor on
        every call costs more than the inference of a small model (the dynamic-batch plugin re-plans its memory)."""
        slot = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _RequestSlot(self.compiled.create_infer_request())
        if batch.shape != slot.shape:
            self._check_shape(batch.shape)
            slot.use_shape(self._ov, batch.shape)
        np.copyto(slot.data, batch, casting="same_kind")
        request = slot.request
        request.infer(None, False, True)  # share_outputs: no intermediate copy, ours follows
        # The output tensors are reused by the next call: copy them out.
        return [request.get_output_tensor(i).data.copy() for i in range(self._outputs)]

    def bind(self, batch: np.ndarray) -> Callable[[], None]:
        """An infer request of its own with `batch`'s memory set once as its input tensor: each call only runs
        the request (as `benchmark_app` does), its outputs left in the request."""
        self._check_shape(batch.shape)
        data = as_input(batch)
        request = self.compiled.create_infer_request()
        request.set_input_tensor(self._ov.Tensor(data, shared_memory=True))
        start, wait = request.start_async, request.wait

        def call() -> None:
            # start + wait: no outputs dictionary is built (`infer` costs ~10 us more per call, 3-8 % at 64 px)
            start()
            wait()

        call.keep = data  # type: ignore[attr-defined]  # the tensor shares this memory
        return call

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if not self._input_shape.compatible(self._ov.PartialShape(list(shape))):
            raise EdgecamError(
                f"batch shape {list(shape)} does not fit the model input {self._input_shape}",
                path=self._path,
                fix="send preprocessed NxCxHxW batches at the bundle's input size",
            )

    def open_async(self, requests: int = 1) -> int:
        """An `AsyncInferQueue` of `requests` infer requests, at least the plugin's optimal number in throughput
        mode (one per stream), so several cameras' batches run side by side."""
        n = max(1, int(requests))
        if self._mode == "throughput":
            n = max(n, self._optimal)
        self.close()
        queue = self._ov.AsyncInferQueue(self.compiled, n)
        queue.set_callback(self._done)
        with self._async_lock:
            self._queue, self._parallel, self._async_closed = queue, n, False
        return n

    def submit(self, batch: np.ndarray) -> Future:
        """Start `batch` on an idle infer request (waiting for one when all are busy)."""
        if self._queue is None and not self._async_closed:
            self.open_async(1)
        future: Future = Future()
        batch = as_input(batch)
        with self._submit_lock:  # AsyncInferQueue hands out idle requests: one submitter at a time
            queue = self._queue
            if queue is None:
                raise RuntimeError(f"the {self.name} backend's async queue is closed")
            try:
                # A request that fails asynchronously never calls back and poisons the queue (OpenVINO 2026.4),
                # so the one failure a caller can cause, a batch of the wrong shape, is refused before it starts.
                self._check_shape(batch.shape)
                with self._async_lock:
                    self._inflight.add(future)
                future.add_done_callback(self._forget)
                future.batch = batch  # type: ignore[attr-defined]  # the request reads this memory until done
                queue.start_async({0: batch}, future, share_inputs=True)  # no copy of a 1.2 MB detector input
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
        return future

    def _done(self, request: Any, future: Future) -> None:
        """AsyncInferQueue callback, on an OpenVINO thread: copy the outputs out before the request is reused."""
        try:
            future.set_result([request.get_output_tensor(i).data.copy() for i in range(self._outputs)])
        except Exception as exc:
            future.set_exception(exc)

    def wait_all(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        super().wait_all()

    def close(self) -> None:
        with self._submit_lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.wait_all()
        super().close()

    def info(self) -> dict[str, Any]:
        import openvino.properties.hint as hints

        return {
            "backend": self.name,
            "version": self._ov.get_version(),
            "device": self._device,
            "execution_devices": _execution_devices(self.compiled, self._device),
            "threads": self._threads,
            "precision": self._precision,
            "mode": self._mode,
            "streams": self._streams,
            "optimal_requests": self._optimal,
            "engine_precision": _precision_property(self.compiled, hints.inference_precision),
            "conv_precisions": conv_precisions(self.compiled),
        }


def _device_config(device: str, precision: str, threads: int | None) -> dict[str, Any]:
    """What one physical device is told: the variant's inference precision (CPU, GPU) and threads (CPU)."""
    import openvino.properties as props
    import openvino.properties.hint as hints

    physical = device.split(".")[0]
    config: dict[str, Any] = {}
    if physical in PRECISION_DEVICES:
        config[hints.inference_precision] = INFERENCE_PRECISION.get(precision, "f32")
    if threads and physical == "CPU":
        config[props.inference_num_threads] = int(threads)
    return config


def _int_property(compiled: Any, key: Any, default: int) -> int:
    """A compiled model's integer property, or `default` when its device plugin does not have it."""
    try:
        return int(compiled.get_property(key))
    except Exception:  # RuntimeError "not supported property" from a virtual device (AUTO)
        return default


def _precision_property(compiled: Any, key: Any) -> str | None:
    """The inference precision the plugin runs, None when the device plugin does not say (AUTO, NPU)."""
    try:
        return compiled.get_property(key).to_string()
    except Exception:
        return None


def _execution_devices(compiled: Any, device: str) -> list[str]:
    """The devices the compiled model really runs on (AUTO names the one it chose); the asked-for device when the
    plugin does not say."""
    try:
        return [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
    except Exception:  # an older plugin without the property
        return [device]


def conv_precisions(compiled: Any) -> dict[str, int]:
    """How many convolutions the plugin really runs at each precision (u8/i8 = INT8 kernels).

    The inference-precision hint says f32 for an INT8 IR, yet its quantized convolutions run in INT8: only the
    compiled (runtime) graph tells which precision each layer got.
    """
    counts: dict[str, int] = {}
    try:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                precision = info["runtimePrecision"].astype(str)
                counts[precision] = counts.get(precision, 0) + 1
    except Exception:  # a device plugin whose runtime graph has no such layer info (the NPU)
        return {}
    return dict(sorted(counts.items()))


class _RequestSlot:
    """One thread's infer request and the float32 input tensors it keeps per batch shape."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.tensors: dict[tuple[int, ...], Any] = {}
        self.shape: tuple[int, ...] | None = None
        self.data = np.empty(0, np.float32)

    def use_shape(self, ov: Any, shape: tuple[int, ...]) -> None:
        tensor = self.tensors.get(shape)
        if tensor is None:
            if len(self.tensors) >= 8:  # batch sizes vary with the regions of a frame; keep a few
                self.tensors.clear()
            tensor = self.tensors[shape] = ov.Tensor(ov.Type.f32, ov.Shape(list(shape)))
        self.request.set_input_tensor(tensor)
        self.shape, self.data = shape, tensor.data
