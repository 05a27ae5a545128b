"""Readers run below the engine: their threads are niced, the caller's priority is left alone."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from edgecam.runtime.priority import READER_NICENESS, call_with_lower_priority, lower_own_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is a Linux feature")


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_lowered_thread_and_the_threads_it_starts_run_lower_the_caller_does_not():
    before = nice_of_this_thread()
    seen: dict[str, int] = {}

    def opener() -> str:
        seen["opener"] = nice_of_this_thread()
        child = threading.Thread(target=lambda: seen.__setitem__("child", nice_of_this_thread()))
        child.start()
        child.join()
        return "capture"

    assert call_with_lower_priority(opener) == "capture"
    expected = min(before + READER_NICENESS, 19)
    assert seen == {"opener": expected, "child": expected}  # a decoder's threads inherit it
    assert nice_of_this_thread() == before


def test_an_error_in_the_lowered_call_is_raised_on_the_caller():
    def fails() -> None:
        raise ValueError("cannot open")

    with pytest.raises(ValueError, match="cannot open"):
        call_with_lower_priority(fails)


def test_lowering_stops_at_19():
    seen: list[int] = []

    def run() -> None:
        lower_own_priority(100)
        seen.append(nice_of_this_thread())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [19]
