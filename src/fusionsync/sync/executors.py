"""The executors of the CLI: worker processes of this machine (``--processes N``) and a running Dask
cluster (``--scheduler ADDRESS``). ``fsync(executor=...)`` takes these or any other."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from fusionsync.errors import UsageError
from fusionsync.sync import batch
from fusionsync.sync.execute import describe

NEEDS_DASK = "--scheduler needs the optional Dask support, which is not installed: pip install 'fusionsync[dask]'"


CALLER_CHECK = 0.5
"""Seconds between a worker's checks that its caller still runs."""
STOP_GRACE = 10.0
"""Seconds a worker that lost its caller gives its batch to stop and remove its temporaries."""


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (OSError: no such process, or no /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _started(pid: int) -> str | None:
    try:
        return _stat(pid)[19]
    except OSError:
        return None


def _alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid``, started at ``started`` (from /proc where there is one), still runs."""
    if not os.path.isdir("/proc/self"):  # no /proc here (macOS): whether the pid exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        fields = _stat(pid)
    except OSError:
        return False
    return fields[0] != "Z" and (started is None or fields[19] == started)


def _worker_setup(caller: int, started: str | None) -> None:
    """In a worker process: Ctrl+C (sent to the whole terminal's process group) is the caller's to handle (it
    stops the workers' batches through their progress channels); once the caller is gone (killed), the
    worker stops its batch and ends, instead of running what was queued and then waiting for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while _alive(caller, started):
            time.sleep(CALLER_CHECK)
        batch.abandon()
        deadline = time.monotonic() + STOP_GRACE
        while batch.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(0)

    threading.Thread(target=watch, name="fusionsync-caller-watch", daemon=True).start()


class LocalProcesses(Executor):
    """Worker processes of this machine for ``fsync(executor=...)``: what ``--processes N`` uses.

    They are forked from a clean server process (not from the caller and its threads), ignore Ctrl+C (the
    caller stops their batches) and end when the caller is gone (killed). A process that dies breaks a
    ``ProcessPoolExecutor`` for good; here the next submission starts a new pool, so the batches it lost can
    run again.

    Args:
        n: How many worker processes.
    """

    def __init__(self, n: int) -> None:
        self._max_workers = n
        self._lock = threading.Lock()
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["fusionsync.sync.batch"])
        caller = os.getpid()
        return ProcessPoolExecutor(
            self._max_workers, mp_context=context, initializer=_worker_setup, initargs=(caller, _started(caller))
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker process (in a new pool if a dead process broke the last)."""
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new()
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the worker processes (after their work, with ``wait``)."""
        self._pool.shutdown(wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def open_executor(processes: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """The executor of the command's ``--processes N`` or ``--scheduler ADDRESS``, shut down (or disconnected)
    after the block.

    Args:
        processes: How many local worker processes (a :class:`LocalProcesses`).
        scheduler: The address of a running Dask scheduler (a ``distributed.Client`` of it).

    Returns:
        A context manager giving the executor, or None when neither is given.

    Raises:
        UsageError: Both are given, the Dask extra is not installed, or the scheduler cannot be reached.
    """
    if processes and scheduler:
        raise UsageError("give --processes or --scheduler, not both")
    if processes:
        with LocalProcesses(processes) as pool:
            yield pool
        return
    if not scheduler:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise UsageError(NEEDS_DASK) from None
    try:
        client = Client(scheduler, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {describe(exc)}") from exc
    with client:
        yield client
