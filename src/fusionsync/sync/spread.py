"""Transfers spread over other processes or machines: the caller's side.

The plan is made once, here; its transfers are split into batches (by dataset, and by bytes and
files so that every worker gets several) and submitted to an executor: a
``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``; a Dask ``Client.get_executor()``) or a
``distributed.Client``. Each batch runs in a worker with its own client (:mod:`fusionsync.sync.batch`)
and returns one result per item; results are merged here, as each batch ends, into the report and
the hash cache, and the workers' progress reaches the pass statistics live over a small TCP channel
(which also carries ``stop`` to every worker).

Faults: a batch whose worker dies is submitted again once (Dask also moves it to another worker by
itself); a second loss, or an executor that can take no more work, reports its items as failed (the
next pass tries them again). A download is written to a temporary and renamed only when verified, so
a killed worker leaves no partial file at a destination path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import pickle
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fusionsync.errors import UsageError
from fusionsync.sync.batch import Batch, BatchResult, Channel, run_batch
from fusionsync.sync.execute import Context, describe
from fusionsync.sync.plan import Action
from fusionsync.sync.remote import Remote
from fusionsync.sync.report import Failure, Stats, SyncReport

log = logging.getLogger("fusionsync")
BATCHES_PER_WORKER = 4
"""Batches per worker thread: enough that a fast worker takes over a slow one's share."""
MAX_BATCH_FILES = 10_000
"""More files than this make several batches anyway (what a lost worker makes do again)."""
ATTEMPTS = 2


def split(transfers: list[Action], workers: int) -> list[list[Action]]:
    """The transfers in batches (in order): about :data:`BATCHES_PER_WORKER` per worker, each of at most an
    even share of the bytes and files, cut where a dataset ends when the batch is half full already."""
    if not transfers:
        return []
    parts = max(workers * BATCHES_PER_WORKER, math.ceil(len(transfers) / MAX_BATCH_FILES))
    most_bytes = sum(a.size for a in transfers) / parts
    most_files = math.ceil(len(transfers) / parts)
    batches: list[list[Action]] = []
    current: list[Action] = []
    size = 0
    for action in transfers:
        if current:
            full = size + action.size > most_bytes or len(current) >= most_files
            half = size >= most_bytes / 2 or len(current) >= most_files / 2
            if full or (half and action.key.dataset != current[-1].key.dataset):
                batches.append(current)
                current, size = [], 0
        current.append(action)
        size += action.size
    batches.append(current)
    return batches


@dataclass
class Spread:
    """An executor to run a pass's transfers on, with what its workers need."""

    executor: Executor
    workers: int
    host: str
    """The address workers reach the caller at (the progress channel)."""
    settings: bytes = b""
    """The remote, pickled: each worker opens its own client from it."""
    fs_local: Any = None

    async def run(
        self, transfers: list[Action], ctx: Context, report: SyncReport, n_par: int, stop: asyncio.Event
    ) -> None:
        """The transfers, in batches on the executor; results merged into ``report``, ``ctx.cache`` and
        ``ctx.stats`` as each batch ends; ``stop`` stops every batch (``report.interrupted``)."""
        if not transfers:
            return
        hub = Hub(ctx.stats)
        await hub.start(self.host)
        channel = Channel(self.host, hub.port, hub.token)
        batches = {}
        for number, actions in enumerate(split(transfers, self.workers)):
            batch = Batch(number, report.direction, actions, ctx.local_root, n_par, channel, ctx.backup_dir)
            if report.direction == "upload":
                batch.local = {a.path: ctx.local[a.path] for a in actions}
                batch.uploads = ctx.cache.uploads(batch.journaled)
            batches[number] = batch
        running: dict[asyncio.Future[Any], tuple[Batch, int]] = {}

        def submit(batch: Batch, attempt: int) -> None:
            try:
                future = self.executor.submit(run_batch, self.settings, self.fs_local, batch)
            except Exception as exc:  # a broken or shut down executor takes no more work
                give_up(batch, exc)
                return
            running[asyncio.wrap_future(future)] = (batch, attempt)

        def give_up(batch: Batch, exc: BaseException) -> None:
            reason = f"its worker stopped before it finished ({describe(exc)}); the next pass tries it again"
            log.warning("batch %d of %d files: %s", batch.number, len(batch.actions), reason)
            report.failed.extend(Failure(a.path, reason) for a in batch.actions)
            hub.finish(batch.number, 0, 0, len(batch.actions))

        for batch in batches.values():
            submit(batch, 1)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while running:
                waiting = [*running] if hub.stopping else [*running, stopper]
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    hub.stop()  # every batch stops (one not started yet does nothing) and says what it did
                for future in done:
                    if future is stopper:
                        continue
                    batch, attempt = running.pop(future)
                    exc = asyncio.CancelledError("cancelled") if future.cancelled() else future.exception()
                    if exc is None:
                        self._merge(future.result(), batch, ctx, report, hub, stop.is_set())
                    elif attempt < ATTEMPTS and not stop.is_set():
                        log.warning("batch %d: %s; submitting it again", batch.number, describe(exc))
                        hub.finish(batch.number, 0, 0, 0)
                        submit(batch, attempt + 1)
                    else:
                        give_up(batch, exc)
        finally:
            stopper.cancel()
            hub.stop()
            await asyncio.gather(stopper, *running, return_exceptions=True)
            await hub.close()
        report.interrupted = stop.is_set()

    @staticmethod
    def _merge(result: BatchResult, batch: Batch, ctx: Context, report: SyncReport, hub: Hub, stopping: bool) -> None:
        sizes = {a.path: a.size for a in batch.actions}
        done = [row[0] for row in result.synced]
        report.transferred.extend(done)
        report.bytes += sum(sizes[path] for path in done)
        failed = list(result.failed)
        if result.interrupted and not stopping:  # it lost touch with us and stopped: what it left is failed
            accounted = {*done, *(f.path for f in failed)}
            reason = (
                "not transferred: its worker lost touch with this process and stopped; the next pass tries it again"
            )
            failed.extend(Failure(a.path, reason) for a in batch.actions if a.path not in accounted)
        report.failed.extend(failed)
        report.backups.extend(result.backups)
        ctx.cache.mark_synced(result.synced)
        if batch.direction == "upload":
            ctx.cache.set_uploads(batch.journaled, result.uploads)
        hub.finish(batch.number, sum(sizes[path] for path in done), len(done), len(failed))


class Hub:
    """The caller's end of the workers' progress channels: each batch's latest snapshot, summed into
    ``stats``; ``stop`` sent to every batch (and to any that connects later)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.token = secrets.token_hex(16)
        self.port = 0
        self.stopping = False
        self._base = (stats.bytes_done, stats.files_done, stats.files_failed)
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._finished: set[int] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str) -> None:
        self._server = await asyncio.start_server(self._serve, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            for writer in self._writers:
                writer.write(b"stop\n")

    def finish(self, number: int, nbytes: int, files: int, failed: int) -> None:
        """A batch's outcome (all zero: it starts again), in place of its last snapshot."""
        if files or failed:
            self._finished.add(number)
        self._snapshots[number] = {"b": nbytes, "d": files, "f": failed, "a": {}}
        self._apply()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = json.loads(await reader.readline())
            if not isinstance(hello, dict) or hello.get("token") != self.token:
                return
            number = int(hello["batch"])
            self._writers.add(writer)
            writer.write(b"stop\n" if self.stopping else b"go\n")
            while line := await reader.readline():
                if number not in self._finished:  # a late snapshot never undoes a batch's outcome
                    self._snapshots[number] = json.loads(line)
                    self._apply()
        except (OSError, ValueError, KeyError, TypeError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _apply(self) -> None:
        snapshots = self._snapshots.values()
        bytes_done, files_done, files_failed = self._base
        active: dict[str, list[int]] = {}
        for snap in snapshots:
            bytes_done += snap["b"]
            files_done += snap["d"]
            files_failed += snap["f"]
            active.update(snap["a"])
        s = self.stats
        s.bytes_done, s.files_done, s.files_failed, s.active = bytes_done, files_done, files_failed, active


def spread_over(executor: Any, remote: Remote, fs_local: Any) -> Spread:
    """The :class:`Spread` for what a caller passed as ``executor`` (a ``distributed.Client`` is used
    through its ``get_executor()``); :class:`UsageError` for anything else."""
    try:
        settings = pickle.dumps(remote)
        pickle.dumps(fs_local)
    except Exception as exc:  # what does not pickle cannot reach a worker
        raise UsageError(f"the filesystems cannot be sent to the executor's workers: {describe(exc)}") from exc
    if _is_dask_client(executor):
        executor = executor.get_executor()
    if not isinstance(executor, Executor):
        raise UsageError(
            f"executor must be a concurrent.futures.Executor or a distributed.Client, not {type(executor).__name__}"
        )
    client: Any = getattr(executor, "_client", None)
    if _is_dask_client(client):  # a Dask cluster: its worker threads, and the address it reaches us at
        # Every submission a task of its own (a batch submitted again is run again, not answered from before).
        executor = client.get_executor(**{**getattr(executor, "_kwargs", {}), "pure": False})
        workers = sum(client.nthreads().values()) or 1
        return Spread(executor, workers, _address_towards(client.scheduler.address), settings, fs_local)
    workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    return Spread(executor, workers, "127.0.0.1", settings, fs_local)


def _is_dask_client(obj: Any) -> bool:
    return any(c.__module__.startswith("distributed") and c.__name__ == "Client" for c in type(obj).__mro__)


def _address_towards(scheduler: str) -> str:
    """The local IP address the scheduler's machine (and so, presumably, its workers) reaches us at."""
    host = urlsplit(scheduler).hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1") or not scheduler.startswith(("tcp://", "tls://")):
        return "127.0.0.1"
    from distributed.utils import get_ip

    return str(get_ip(host))  # type: ignore[no-untyped-call]
