"""When a continuous sync runs its next pass: soon after a change, or every ``interval`` as a safety net.

Changes are announced from other threads (the catalog's change events on the engine's loop, local file
events in a watcher thread, see :mod:`fusionsync.sync.sources`); a burst of them makes one pass, which
starts once no change came for :data:`QUIET` seconds, or :attr:`Wakeup.burst` seconds after the first
(so a steady stream of catalog changes still makes a pass every second or so, not one per change). A
signal wakes the waiting thread at once: it only writes a byte to a pipe, which is safe in a signal
handler (a lock is not).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable

QUIET = 0.1
BURST = 1.0


class Wakeup:
    """Changes announced by any thread; :meth:`wait` returns when the next pass is due.

    ``burst``: the longest a pass waits for a stream of changes to pause (infinite for files being
    written: a pass in the middle of a write would send half a file).
    """

    def __init__(self, burst: float = BURST) -> None:
        self.burst = burst
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()  # between announcing threads and the waiting one, never in a signal handler
        self._first: float | None = None
        self._last: float | None = None
        self._closed = False

    def changed(self) -> None:
        """Something changed that the next pass should see (any thread but a signal handler)."""
        now = time.monotonic()
        with self._lock:
            if self._first is None:
                self._first = now
            self._last = now
        self._ring()

    def interrupt(self) -> None:
        """Wake the waiting thread at once (safe in a signal handler)."""
        self._ring()

    def take(self) -> None:
        """A pass starts: it sees every change announced so far."""
        with self._lock:
            self._first = self._last = None

    def wait(self, seconds: float, stopping: Callable[[], bool], not_before: float = 0.0) -> None:
        """Return after ``seconds``; sooner when a burst of changes has settled, but not before
        ``not_before`` seconds (after a failed pass, changes wait as long as a poll would); at once when
        ``stopping()`` holds."""
        started = time.monotonic()
        deadline = started + seconds
        while True:
            self._drain()  # before looking: whatever rings from now on ends the select below
            if stopping():
                return
            due = deadline
            with self._lock:
                if self._first is not None and self._last is not None:
                    settled = min(self._last + QUIET, self._first + self.burst)
                    due = min(due, max(settled, started + not_before))
            left = due - time.monotonic()
            if left <= 0:
                return
            select.select([self._read], [], [], left)

    def close(self) -> None:
        """Release the pipe (once every announcing thread has ended)."""
        if not self._closed:
            self._closed = True
            os.close(self._read)
            os.close(self._write)

    def _ring(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake is pending anyway
            os.write(self._write, b"\0")

    def _drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
