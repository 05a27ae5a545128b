"""Reading and decoding run at a lower CPU priority than inference.

With a dozen cameras on two cores, each camera's decoder threads and read-ahead thread outnumber the engine's
threads many times over, and a fair scheduler hands the engine a thin slice: frames then wait for inference while
decoding runs ahead with slack it does not need (measured in BENCHMARKS.md's camera sweep). Linux keeps a niceness
per thread, inherited by the threads a thread creates, so readers lower their own and open their decoders from a
thread that already has. Lowering a priority needs no privilege; where it cannot be set, nothing changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
READER_NICENESS = 5  # nice levels below the engine; 10 measured no better at 16 cameras


def lower_own_priority(step: int = READER_NICENESS) -> None:
    """Make the calling thread `step` nice levels lower (never above 19)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + step, 19))
    except (AttributeError, OSError):  # not Linux, or not allowed: run as before
        pass


def call_with_lower_priority(fn: Callable[[], T], step: int = READER_NICENESS) -> T:
    """`fn()` on a short-lived thread `step` nice levels lower, so the threads it starts (a video decoder's) keep
    that priority while the caller's stays as it was (raising it back would need a privilege)."""
    out: dict[str, object] = {}

    def run() -> None:
        lower_own_priority(step)
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="edgecam-open", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]
