"""One inference engine shared by every camera that runs the same bundle.

Two engines in one process disturb each other (two ORT sessions alternating ran ~2x slower; two OpenVINO compiled
models 1.3-1.5x, see shared/reference/peer-latency-2cpu.md), so cameras never load a model each. They submit
preprocessed batches here, and this hands them to the backend's async API (`Backend.submit`): OpenVINO runs them
on one compiled model through an `AsyncInferQueue`, ONNX Runtime on one session from a small thread pool, other
backends one at a time. How many run at once is the backend's answer to `open_async(workers)`.

A model loaded with `mode="throughput"` (OpenVINO) has its cores split into streams that run requests side by side,
which is what several cameras submitting at once need; its backend then runs at least the plugin's optimal number
of requests. ONNX Runtime already runs `workers` requests in parallel, so the mode changes nothing there.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgecam.runtime.model import Model


class SharedEngine:
    """`engine.submit(batch) -> Future` of the model's first output (what `Model.infer` returns).

    One per loaded `Model`: it opens the model's backend for async work and closes it again.
    """

    def __init__(self, model: Model, workers: int = 2) -> None:
        self.model = model
        self.backend = model.engine
        self._lock = threading.Lock()  # the counter; never held while waiting for the engine
        self._pending = 0
        self._closed = False
        self.workers = self.backend.open_async(max(1, int(workers)))
        # A thread-safe backend runs a camera's batch on the camera's own thread (no hand-off, no callback on an
        # engine thread), at most `workers` at once; the others go through the backend's async queue.
        self.direct = self.backend.thread_safe
        self._slots = threading.BoundedSemaphore(self.workers)
        self._helpers: ThreadPoolExecutor | None = None  # made on the first `infer_async`
        self.kind = f"{self.backend.name}-{'direct' if self.direct else self.backend.async_kind}"

    @property
    def queue_depth(self) -> int:
        """Batches submitted and not yet finished (running or waiting for a free worker)."""
        return self._pending

    def _finished(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def submit(self, batch: np.ndarray) -> Future:
        """Queue a float32 NxCxHxW batch; a backend with all its workers busy may make this wait for one."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared engine is closed")
            self._pending += 1
        future.add_done_callback(self._finished)
        try:
            inner = self.backend.submit(batch)
        except Exception as exc:
            future.set_exception(exc)
        else:
            inner.add_done_callback(lambda f: _forward(f, future))
        return future

    def infer_async(self, batch: np.ndarray) -> Future:
        """`infer` for a caller that goes on working while its batch runs (a file camera prepares its next frame):
        a thread-safe backend runs it on a helper thread through the same direct path, others `submit` it."""
        if not self.direct:
            return self.submit(batch)
        with self._lock:
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(self.workers, thread_name_prefix="edgecam-infer")
            helpers = self._helpers
        return helpers.submit(self.infer, batch)

    def infer(self, batch: np.ndarray, timeout: float | None = 60.0) -> np.ndarray:
        """The first output for `batch`, the drop-in for `Model.infer`. Through the async queue a hung engine
        raises TimeoutError after `timeout` s; a direct call holds one of the `workers` slots while it runs."""
        if not self.direct:
            return self.submit(batch).result(timeout)
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared engine is closed")
            self._pending += 1
        try:
            if not self._slots.acquire(timeout=timeout if timeout is not None else -1):
                raise TimeoutError(f"no free engine slot in {timeout} s")
            try:
                return self.backend.infer(batch)[0]
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._pending -= 1

    def view(self) -> Model:
        """A per-camera `Model` (same bundle, backend, preprocessing and decoding) whose inference runs on this
        engine, with its own `StageTimes`: the timers are not thread-safe and each camera reports its own stages."""
        return self.model.view(self.infer, self.infer_async)

    def info(self) -> dict[str, Any]:
        """The backend's own report (OpenVINO adds its streams) and how this engine shares it."""
        return {
            **self.backend.info(),
            "variant": self.model.variant.name,
            "shared": self.kind,
            "workers": self.workers,
            "mode": self.model.mode,
        }

    def close(self) -> None:
        """Finish what is queued, then refuse new work."""
        with self._lock:
            self._closed = True
            helpers, self._helpers = self._helpers, None
        if helpers is not None:  # the cameras have finished what they started; a hung call must not hang the exit
            helpers.shutdown(wait=False, cancel_futures=True)
        self.backend.close()


def _forward(inner: Future, outer: Future) -> None:
    """Copy a backend future's outcome (the first output, or the error) into the caller's future."""
    exc = inner.exception()
    if exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result()[0])
