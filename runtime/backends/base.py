"""The small interface every inference engine implements: a synchronous `infer` and an optional async `submit`."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# "latency": one request gets all the cores (`edgecam run`); "throughput": the cores split into streams that run
# several requests side by side (many cameras on one model).
PERFORMANCE_MODES = ("latency", "throughput")


def as_input(batch: np.ndarray) -> np.ndarray:
    """The batch as contiguous float32, without a copy (or a function call into numpy) when it already is one."""
    if batch.dtype == np.float32 and batch.flags.c_contiguous:
        return batch
    return np.ascontiguousarray(batch, np.float32)


class Backend(ABC):
    """Load one model file and run batches through it. One instance per model, shared by all cameras.

    `infer` is the synchronous call. `submit` is the asynchronous one the shared engine uses: a `Future` of the
    same outputs, with up to `max_parallel` batches running at once. The default runs `infer` on a thread pool: one
    thread, or as many as asked when the engine declares `infer` thread-safe; engines with their own async API
    (OpenVINO) override `open_async` / `submit` / `wait_all` / `close`.
    """

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # the variant formats this engine can run
    # True when `infer` may run from several threads at once on one loaded model (ONNX Runtime's session.run).
    thread_safe: ClassVar[bool] = False
    # How `submit` runs batches, for reports: "pool" (threads calling `infer`) or the engine's own ("async").
    async_kind: ClassVar[str] = "pool"

    def __init__(self) -> None:
        self._async_lock = threading.Lock()  # the pool and the in-flight set; never held while a batch runs
        self._pool: ThreadPoolExecutor | None = None
        self._parallel = 0
        self._async_closed = False
        self._inflight: set[Future] = set()

    @abstractmethod
    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
        streams: int | None = None,
    ) -> None:
        """Load and compile `path`; `precision` is the variant's, so the engine runs what was validated. `mode`
        ("latency" or "throughput") and `streams` (parallel CPU streams in throughput mode) are performance
        settings for engines that have them (OpenVINO); others ignore them."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """float32 NxCxHxW -> the model's outputs, in order; they stay valid after the next call."""

    def info(self) -> dict[str, Any]:
        """What the engine really runs (version, threads, precision), for reports."""
        return {"backend": self.name}

    def bind(self, batch: np.ndarray) -> Callable[[], None]:
        """A call that runs `batch` again and again with the least work per call, for benchmarks: the engine is
        timed, not Python. It returns nothing; `infer` is the call that gives outputs."""
        batch = as_input(batch)
        run = self.infer

        def call() -> None:
            run(batch)

        return call

    # ------------------------------------------------------------------ async
    def open_async(self, requests: int = 1) -> int:
        """Get `submit` ready to run up to `requests` batches at once; returns how many it will really run (one
        when `infer` is not thread-safe; an engine may raise it to what its performance mode needs)."""
        workers = max(1, int(requests)) if self.thread_safe else 1
        self.close()
        with self._async_lock:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"edgecam-{self.name}")
            self._parallel, self._async_closed = workers, False
        return workers

    @property
    def max_parallel(self) -> int:
        """How many submitted batches run at once (0 before `open_async` or the first `submit`)."""
        return self._parallel

    def submit(self, batch: np.ndarray) -> Future:
        """Queue a float32 NxCxHxW batch -> a Future of its outputs (as `infer` returns them). An error of this
        batch is raised by the future's `result()`; the engine keeps running the others. The engine may read the
        batch's memory until the future is done (no copy): do not write into it before."""
        if self._pool is None and not self._async_closed:
            self.open_async(1)
        with self._async_lock:
            if self._pool is None:
                raise RuntimeError(f"the {self.name} backend's async queue is closed")
            future = self._pool.submit(self.infer, as_input(batch))
            self._inflight.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._async_lock:
            self._inflight.discard(future)

    def wait_all(self) -> None:
        """Return once every batch submitted so far has finished."""
        with self._async_lock:
            pending = list(self._inflight)
        wait(pending)

    def close(self) -> None:
        """Finish what was submitted and release the async workers; `submit` then raises until `open_async`."""
        with self._async_lock:
            pool, self._pool, self._async_closed, self._parallel = self._pool, None, True, 0
        if pool is not None:
            pool.shutdown(wait=True)
