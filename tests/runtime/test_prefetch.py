import threading
import time

import pytest

from edgecam.runtime.prefetch import Prefetcher


def test_every_item_arrives_in_order():
    with Prefetcher(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))


def test_reads_at_most_depth_ahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    items = Prefetcher(source(), depth=2)
    assert next(items) == 0
    time.sleep(0.3)  # the producer fills the queue and then waits
    assert len(produced) <= 1 + 2 + 1  # the one taken, `depth` queued, one waiting to be put
    items.close()


def test_an_error_in_the_source_is_raised_in_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    items = Prefetcher(source())
    assert next(items) == 1 and next(items) == 2
    with pytest.raises(OSError, match="disk gone"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_close_stops_the_reader_thread_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    items = Prefetcher(endless(), depth=2, name="prefetch-under-test")
    assert next(items) == 0
    items.close()
    items.close()  # twice is harmless
    assert not any(t.name == "prefetch-under-test" for t in threading.enumerate())
    with pytest.raises(StopIteration):
        next(items)


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter(()), depth=0)
