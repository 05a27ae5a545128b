"""Read-ahead for in-order sources (files, folders): the next frames decode on a thread while the model runs.

OpenCV's decoders release the GIL, so decoding the next 720p frame overlaps inference of this one instead of
adding to it. Nothing is dropped and the order is kept; `depth` bounds how many decoded frames wait (memory).
An error in the source is raised in the consumer, where it would have been raised without read-ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from edgecam.runtime.priority import lower_own_priority

T = TypeVar("T")
_END = object()


class Prefetcher(Generic[T]):
    """Iterate `items` on a daemon thread, `depth` items ahead of the consumer. `close()` stops it early."""

    def __init__(
        self, items: Iterator[T], depth: int = 2, name: str = "edgecam-prefetch", lower_priority: bool = False
    ) -> None:
        """`lower_priority`: read at the readers' lower CPU priority (runtime/priority.py)."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._items = items
        self.lower_priority = lower_priority
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Put unless stopped; False when the consumer has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        if self.lower_priority:
            lower_own_priority()
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Raised(exc))
            return
        self._put(_END)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._stop.set()
            raise StopIteration
        if isinstance(item, _Raised):
            self._stop.set()
            raise item.exc
        return item  # type: ignore[return-value]

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading ahead; frames already decoded are discarded. Safe to call twice."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
