"""facetwin.inference.threads.prefetch: order, errors handed over after the items before them,
and an early stop of the consumer stops the worker."""

import threading
import time

import pytest

from facetwin.inference.threads import prefetch


def test_items_arrive_in_order_and_are_computed_ahead_in_another_thread():
    seen = []

    def gen():
        for i in range(6):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(gen(), depth=2, name="worker-x")) == list(range(6))
    assert set(seen) == {"worker-x"}


def test_an_error_reaches_the_consumer_after_the_items_before_it():
    def gen():
        yield 1
        yield 2
        raise ValueError("broken frame 3")

    got = []
    with pytest.raises(ValueError, match="broken frame 3"):
        for x in prefetch(gen(), depth=4):
            got.append(x)
    assert got == [1, 2]


def test_stopping_early_stops_the_worker():
    made = []

    def gen():
        for i in range(1000):
            made.append(i)
            yield i

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    it.close()  # the consumer leaves (a KeyboardInterrupt, an error downstream)
    time.sleep(0.3)
    n = len(made)
    time.sleep(0.3)
    assert len(made) == n < 10  # at most depth + a few items were produced, and no more after the close
