"""One inference engine shared by every camera that runs the same bundle.

Two engines in one process disturb each other (two ORT sessions alternating ran ~2x slower; two OpenVINO compiled
models 1.3-1.5x, see shared/reference/peer-latency-2cpu.md), so cameras never load a model each. They submit
preprocessed batches here: OpenVINO runs them on one compiled model through an `AsyncInferQueue` with `workers`
infer requests (results come back through a callback into futures); ONNX Runtime runs them on one session from a
small thread pool (`InferenceSession.run` is thread-safe). Other backends get a single worker.

A model loaded with `mode="throughput"` (OpenVINO) has its cores split into streams that run requests side by side,
which is what several cameras submitting at once need; the queue then holds at least the plugin's optimal number of
requests. ONNX Runtime already runs `workers` requests in parallel, so the mode changes nothing there.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgecam.runtime.model import Model
from edgecam.runtime.stats import StageTimes


class SharedEngine:
    """`engine.submit(batch) -> Future` of the model's first output (what `Model.infer` returns)."""

    def __init__(self, model: Model, workers: int = 2) -> None:
        self.model = model
        self.workers = max(1, int(workers))
        self._lock = threading.Lock()  # the counter; never held while waiting for the engine
        self._submit_lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._queue: Any = None
        self._pool: ThreadPoolExecutor | None = None
        compiled = getattr(model.engine, "compiled", None)
        if model.engine.name == "openvino" and compiled is not None:
            import openvino as ov

            self._ov = ov
            if model.mode == "throughput":
                self.workers = max(self.workers, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._input_shape = compiled.input(0).get_partial_shape()
            self._queue = ov.AsyncInferQueue(compiled, self.workers)
            self._queue.set_callback(self._done)
            self.kind = "openvino-async"
        else:
            thread_safe = model.engine.name == "onnxruntime"
            self._pool = ThreadPoolExecutor(self.workers if thread_safe else 1, thread_name_prefix="edgecam-infer")
            self.kind = f"{model.engine.name}-pool"

    @property
    def queue_depth(self) -> int:
        """Batches submitted and not yet finished (running or waiting for a free worker)."""
        return self._pending

    def _finished(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _done(self, request: Any, future: Future) -> None:
        """AsyncInferQueue callback, on an OpenVINO thread: copy the output out before the request is reused."""
        try:
            future.set_result(request.get_output_tensor(0).data.copy())
        except Exception as exc:
            future.set_exception(exc)

    def submit(self, batch: np.ndarray) -> Future:
        """Queue a float32 NxCxHxW batch; a full OpenVINO queue makes this wait for a free infer request."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared engine is closed")
            self._pending += 1
        future.add_done_callback(self._finished)
        batch = np.ascontiguousarray(batch, np.float32)
        try:
            if self._queue is not None:
                # A request that fails asynchronously never calls back and poisons the queue (OpenVINO 2026.4), so
                # the one failure a caller can cause, a batch of the wrong shape, is refused here instead.
                if not self._input_shape.compatible(self._ov.PartialShape(list(batch.shape))):
                    raise ValueError(
                        f"batch shape {list(batch.shape)} does not fit the model input {self._input_shape}"
                    )
                with self._submit_lock:  # AsyncInferQueue hands out idle requests; one submitter at a time
                    self._queue.start_async({0: batch}, future)
            else:
                assert self._pool is not None
                inner = self._pool.submit(self.model.engine.infer, batch)
                inner.add_done_callback(lambda f: _forward(f, future))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def infer(self, batch: np.ndarray, timeout: float | None = 60.0) -> np.ndarray:
        """Blocking `submit(batch).result()`, the drop-in for `Model.infer`; a hung engine raises TimeoutError."""
        return self.submit(batch).result(timeout)

    def view(self) -> Model:
        """A per-camera `Model` (same bundle, preprocessing and decoding) whose inference runs on this engine,
        with its own `StageTimes`: the timers are not thread-safe and each camera reports its own stages."""
        return _EngineView(self.model, self)

    def info(self) -> dict[str, Any]:
        info = {**self.model.engine.info(), "shared": self.kind, "workers": self.workers, "mode": self.model.mode}
        if self._queue is not None:
            info["streams"] = int(self.model.engine.compiled.get_property("NUM_STREAMS"))
        return info

    def close(self) -> None:
        """Finish what is queued, then refuse new work."""
        with self._lock:
            self._closed = True
        if self._queue is not None:
            self._queue.wait_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _forward(inner: Future, outer: Future) -> None:
    """Copy a pool future's outcome (the first output, or the error) into the caller's future."""
    exc = inner.exception()
    if exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result()[0])


class _EngineView(Model):
    """A Model sharing everything with `model` except its timers, inferring through `engine`."""

    def __init__(self, model: Model, engine: SharedEngine) -> None:  # no super().__init__: nothing is loaded
        self.__dict__.update(model.__dict__)
        self.times = StageTimes()
        self._shared = engine

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._shared.infer(batch)
