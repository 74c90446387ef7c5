"""The worker's side of a spread sync: one batch of a plan's transfers, run in another process or machine.

:func:`run_batch` is what an executor runs. It opens its own Fusion client from the pickled settings
(once per process: later batches reuse its connections and tokens) and uses the destination
filesystem it was given (fsspec filesystems pickle), runs the batch with the engine's own transfers
(:func:`fusionsync.sync.execute.run_transfers`: verified, atomic, ``n_par`` at once) and returns a
:class:`BatchResult` that accounts for every item. While it runs, a thread reports its progress to
the caller over a TCP connection (a JSON line every :data:`PERIOD` seconds) and listens for ``stop``:
the caller's Ctrl+C cancels the batch's transfers (their temporaries removed), as does losing the
caller (no orphan work): its channel closes, or a local worker process sees the caller gone (:func:`abandon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fusionsync.catalog.digest import PART_SIZE
from fusionsync.sync.cache import HashCache, UploadRow
from fusionsync.sync.execute import Context, Row, run_transfers
from fusionsync.sync.plan import Action, LocalEntry
from fusionsync.sync.remote import Remote
from fusionsync.sync.report import Backup, Failure, Stats, SyncReport

log = logging.getLogger("fusionsync")
PERIOD = 0.2
"""Seconds between two progress reports of a batch."""
MAX_ACTIVE = 8
"""Transfers in flight named in a progress report (the display shows a few)."""


@dataclass(frozen=True)
class Channel:
    """Where a batch reports its progress and hears ``stop``: the caller's address and a token."""

    host: str
    port: int
    token: str


@dataclass
class Batch:
    """Some transfers of one pass, with what a worker needs to run them."""

    number: int
    direction: str
    actions: list[Action]
    root: str
    n_par: int
    channel: Channel | None = None
    backup_dir: str | None = None
    local: dict[str, LocalEntry] = field(default_factory=dict)
    """The scanned local files of an upload batch."""
    uploads: list[UploadRow] = field(default_factory=list)
    """Multipart uploads of these files interrupted in earlier passes (continued, not started again)."""

    @property
    def journaled(self) -> list[str]:
        """The files whose multipart uploads may be recorded (those larger than one part)."""
        if self.direction != "upload":
            return []
        return [a.path for a in self.actions if a.size > PART_SIZE]


@dataclass
class BatchResult:
    """What became of each item of a batch: transferred (with its cache row) or failed; neither only
    when the batch was interrupted."""

    number: int
    synced: list[Row] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    backups: list[Backup] = field(default_factory=list)
    uploads: list[UploadRow] = field(default_factory=list)
    interrupted: bool = False


_remotes: dict[bytes, Remote] = {}
_remotes_lock = threading.Lock()


def remote_of(settings: bytes) -> Remote:
    """This process's client for the pickled remote ``settings`` (made once, then shared by its batches)."""
    with _remotes_lock:
        remote = _remotes.get(settings)
        if remote is None:
            remote = _remotes[settings] = pickle.loads(settings)
        return remote


_abandoned = threading.Event()
_halts: dict[int, Callable[[], object]] = {}  # batch number → what stops it, for the batches running here
_busy = 0  # batches running here
_lock = threading.Lock()


def abandon() -> None:
    """The caller is gone: stop the batches running in this process, and run no more."""
    _abandoned.set()
    with _lock:
        halts = list(_halts.values())
    for halt in halts:
        halt()


def busy() -> bool:
    """Whether a batch runs in this process."""
    return _busy > 0


def run_batch(settings: bytes, fs_local: Any, batch: Batch) -> BatchResult:
    """Run ``batch`` here (what an executor calls); see the module's description."""
    global _busy
    if threading.current_thread() is threading.main_thread():
        # A process of a local pool shares the terminal's Ctrl+C: the caller stops the batch through its channel.
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a pool of the CLI ignores it from the start)
    with _lock:
        _busy += 1
    reporter = None
    try:
        reporter = Reporter(batch.channel, batch.number) if batch.channel else None
        if _abandoned.is_set() or (reporter is not None and reporter.stopped):  # stopped before it began
            return BatchResult(batch.number, interrupted=True)
        remote = remote_of(settings)
        return asyncio.run_coroutine_threadsafe(_run(remote, fs_local, batch, reporter), remote.loop).result()
    finally:
        if reporter is not None:
            reporter.close()
        with _lock:
            _busy -= 1


async def _run(remote: Remote, fs_local: Any, batch: Batch, reporter: Reporter | None) -> BatchResult:
    stop = asyncio.Event()
    stats = Stats()
    stats.begin(len(batch.actions), sum(a.size for a in batch.actions))
    loop = asyncio.get_running_loop()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)

    if reporter is not None:
        reporter.start(stats, halt)
    with _lock:
        _halts[batch.number] = halt
    if _abandoned.is_set():
        stop.set()
    cache = HashCache.in_memory()
    report = SyncReport(batch.direction)
    synced: list[Row] = []
    try:
        cache.set_uploads([], batch.uploads)
        with ThreadPoolExecutor(max_workers=max(4, min(batch.n_par, 16)), thread_name_prefix="fusionsync") as pool:
            ctx = Context(
                remote, fs_local, batch.root, cache, stats, batch.local, pool, batch.backup_dir, report=report
            )
            await run_transfers(batch.actions, ctx, report, batch.n_par, stop, synced)
        uploads = cache.uploads(batch.journaled)
    finally:
        cache.close()
        with _lock:
            _halts.pop(batch.number, None)
    return BatchResult(batch.number, synced, report.failed, report.backups, uploads, report.interrupted)


class Reporter:
    """A batch's end of the progress channel. Made before the batch starts: it connects and hears
    whether to go at all (:attr:`stopped`). Once started, a thread sends the batch's progress every
    :data:`PERIOD` seconds, and calls ``on_stop`` when the caller says ``stop`` or goes away. Without a
    connection the batch runs anyway (no live progress; it stops when the caller's executor stops it)."""

    def __init__(self, channel: Channel, number: int) -> None:
        self._number = number
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = False
        self._sock: socket.socket | None = None
        try:
            sock = socket.create_connection((channel.host, channel.port), timeout=10)
        except OSError as exc:
            log.warning("batch %d: no progress channel to %s:%d (%s)", number, channel.host, channel.port, exc)
            return
        try:
            sock.sendall(json.dumps({"token": channel.token, "batch": number}).encode() + b"\n")
            self.stopped = sock.recv(5).startswith(b"stop")
        except OSError as exc:
            log.warning("batch %d: the progress channel failed (%s)", number, exc)
            sock.close()
            return
        self._sock = sock

    def start(self, stats: Stats, on_stop: Callable[[], object]) -> None:
        if self._sock is not None:
            self._thread = threading.Thread(
                target=self._run, args=(self._sock, stats, on_stop), name="fusionsync-batch-progress", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._done.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread now, not at its next report
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()

    @staticmethod
    def snapshot(s: Stats) -> dict[str, Any]:
        active = dict(s.active)  # one C-level copy: the loop thread changes it meanwhile
        named = dict(sorted(active.items())[:MAX_ACTIVE])
        return {"b": s.bytes_done, "d": s.files_done, "f": s.files_failed, "a": {k: list(v) for k, v in named.items()}}

    def _run(self, sock: socket.socket, stats: Stats, on_stop: Callable[[], object]) -> None:
        try:
            sock.settimeout(PERIOD)
            while not self._done.is_set():
                sock.sendall(json.dumps(self.snapshot(stats)).encode() + b"\n")
                try:
                    heard = sock.recv(64)
                except TimeoutError:
                    continue
                if self._done.is_set():
                    return
                if not heard or b"stop" in heard:  # told to stop, or the caller is gone
                    on_stop()
                    if not heard:
                        return
        except OSError:  # the caller is gone: nobody wants these transfers any more
            if not self._done.is_set():
                on_stop()
