"""When the next pass of a continuous sync is due: a burst of changes settles into one wake-up (or one per
``burst`` while it lasts), a failed pass holds changes back until ``not_before``, a stop ends the wait at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from fusionsync.sync.wakeup import QUIET, Wakeup


@pytest.fixture
def wakeup() -> Iterator[Wakeup]:
    w = Wakeup()
    yield w
    w.close()


def changes(
    wakeup: Wakeup, every: float, seconds: float, done: threading.Event, last: list[float] | None = None
) -> threading.Thread:
    """Announce a change every ``every`` seconds from another thread, for ``seconds`` or until ``done``
    (the time of the last one is appended to ``last``)."""

    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not done.is_set():
            wakeup.changed()
            if last is not None:
                last.append(time.monotonic())
            time.sleep(every)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def timed(wakeup: Wakeup, seconds: float, not_before: float = 0.0, stopping: object = None) -> float:
    started = time.monotonic()
    wakeup.wait(seconds, stopping if callable(stopping) else lambda: False, not_before)
    return time.monotonic() - started


def test_a_burst_settles_into_one_wake_up(wakeup: Wakeup) -> None:
    last: list[float] = []
    burst = changes(wakeup, 0.02, 0.2, threading.Event(), last)
    timed(wakeup, 10)
    woke = time.monotonic()
    burst.join()
    assert QUIET * 0.95 <= woke - last[-1] < QUIET + 0.3


def test_a_steady_stream_wakes_up_once_per_burst_period(wakeup: Wakeup) -> None:
    wakeup.burst = 0.3
    done = threading.Event()
    stream = changes(wakeup, 0.02, 10, done)
    try:
        took = timed(wakeup, 10)
        wakeup.take()
        again = timed(wakeup, 10)
    finally:
        done.set()
        stream.join()
    assert 0.29 <= took < 0.6 and 0.29 <= again < 0.6


def test_without_changes_the_interval_holds_and_a_failure_holds_changes_back(wakeup: Wakeup) -> None:
    assert 0.15 <= timed(wakeup, 0.15) < 0.4
    wakeup.changed()
    assert 0.3 <= timed(wakeup, 10, not_before=0.3) < 0.6
    wakeup.take()
    wakeup.changed()
    assert timed(wakeup, 10) < QUIET + 0.2


def test_a_stop_ends_the_wait_at_once(wakeup: Wakeup) -> None:
    stop = threading.Event()

    def later() -> None:
        time.sleep(0.1)
        stop.set()
        wakeup.interrupt()

    threading.Thread(target=later).start()
    assert timed(wakeup, 60, stopping=stop.is_set) < 0.5
    wakeup.changed()  # once stopping, a pending change holds nothing back
    assert timed(wakeup, 60, stopping=stop.is_set) < 0.05
