"""Carry out a plan: up to ``n_par`` transfers at once, each verified and atomic; deletes last."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fsspec.callbacks import Callback

from fusionsync.errors import FusionSyncError
from fusionsync.sync.cache import HashCache
from fusionsync.sync.plan import Action, LocalEntry, Plan
from fusionsync.sync.problems import is_local_error, local_failure, server_unreachable
from fusionsync.sync.remote import Remote
from fusionsync.sync.report import Backup, Failure, Stats, SyncReport
from fusionsync.sync.scan import info_mtime, is_local, join

if TYPE_CHECKING:
    from fusionsync.sync.spread import Spread

log = logging.getLogger("fusionsync")
Row = tuple[str, int, float, str]
T = TypeVar("T")


class _Bytes(Callback):  # type: ignore[misc]
    """Feeds a transfer's byte progress into the pass statistics."""

    def __init__(self, stats: Stats, name: str) -> None:
        super().__init__()
        self._stats = stats
        self._name = name

    def relative_update(self, inc: int = 1) -> None:
        self._stats.advance(self._name, inc)

    def absolute_update(self, value: int) -> None:
        slot = self._stats.active.get(self._name)
        if slot is not None:
            self._stats.advance(self._name, value - slot[0])


@dataclass
class Context:
    """Everything a pass needs to move files."""

    remote: Remote
    fs_local: Any
    local_root: str
    cache: HashCache
    stats: Stats
    local: dict[str, LocalEntry] = field(default_factory=dict)
    pool: Executor | None = None
    backup_dir: str | None = None
    folders: set[str] = field(default_factory=set)
    """Local folders known to exist (created this pass)."""
    report: SyncReport | None = None
    """Where backups are recorded."""


def describe(exc: BaseException) -> str:
    """One sentence about a failed item."""
    if isinstance(exc, FusionSyncError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def explain(exc: BaseException, action: Action, ctx: Context, verb: str) -> str:
    """One sentence about a failed item; a local error names the local file and says what happened."""
    if is_local_error(exc) and is_local(ctx.fs_local):
        assert isinstance(exc, OSError)
        return local_failure(exc, join(ctx.local_root, action.path), verb)
    return describe(exc)


async def execute(
    plan: Plan, ctx: Context, report: SyncReport, n_par: int, stop: asyncio.Event, spread: Spread | None = None
) -> None:
    """Run the transfers of ``plan`` (at most ``n_par`` at once), then its deletes if nothing failed.

    When ``stop`` is set, transfers in flight are cancelled (their temporaries removed), none
    start, no delete runs, and the report says the pass was interrupted. Once a transfer has
    given up because nothing answers at the server's address, transfers not yet started fail at
    once instead of each waiting through its own retries (the next pass tries them again).
    With ``spread``, the transfers run in batches on its executor (other processes or machines);
    deletes run here in any case.
    """
    transfers = plan.transfers
    ctx.stats.begin(len(transfers), sum(a.size for a in transfers))
    if spread is not None:
        await spread.run(transfers, ctx, report, n_par, stop)
    else:
        synced: list[Row] = []
        try:
            await run_transfers(transfers, ctx, report, n_par, stop, synced)
        finally:
            ctx.cache.mark_synced(synced)
    if report.interrupted:
        return
    if plan.deletes and report.failed:
        report.warnings.append(f"{len(plan.deletes)} deletes not done: items failed in this pass")
        return
    for action in plan.deletes:
        try:
            await _delete(action, ctx, plan.direction)
            report.deleted.append(action.path)
        except Exception as exc:
            report.failed.append(Failure(action.path, explain(exc, action, ctx, "delete")))


async def run_transfers(
    transfers: list[Action], ctx: Context, report: SyncReport, n_par: int, stop: asyncio.Event, synced: list[Row]
) -> None:
    """The transfers (at most ``n_par`` at once): each one transferred (its cache row added to ``synced``)
    or failed, in ``report``; stopped by ``stop`` (``report.interrupted``). A worker of a spread sync runs
    its batch with this very function."""
    direction = report.direction
    unreachable: list[str] = []
    verb = "read" if direction == "upload" else "write"

    async def one(action: Action) -> None:
        ctx.stats.open(action.path, action.size)
        ok = False
        try:
            if unreachable:
                reason = (
                    f"not started: nothing answers at {ctx.remote.address} any more "
                    f"(an earlier {direction} gave up), so this one waits for the next pass"
                )
                report.failed.append(Failure(action.path, reason))
                return
            synced.append(await _transfer(action, ctx, direction))
            report.transferred.append(action.path)
            report.bytes += action.size
            ok = True
        except Exception as exc:  # one item's failure never stops the others
            reason = explain(exc, action, ctx, verb)
            log.warning("%s of %s failed: %s", direction, action.path, reason)
            report.failed.append(Failure(action.path, reason))
            if server_unreachable(exc):
                unreachable.append(action.path)
        finally:
            ctx.stats.close(action.path, ok)

    todo = iter(transfers)

    async def worker() -> None:  # n_par workers, not one task per file: 100,000 files cost 100,000 frames
        for action in todo:
            await one(action)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(len(transfers), max(1, n_par)))]
    everything: asyncio.Future[Any] = asyncio.gather(*tasks)
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([everything, stopper], return_when=asyncio.FIRST_COMPLETED)
        report.interrupted = stop.is_set()
    finally:
        stopper.cancel()
        for task in tasks:  # stopped (or this coroutine cancelled): transfers in flight end, temporaries go
            task.cancel()
        await asyncio.gather(everything, stopper, return_exceptions=True)  # their outcome is retrieved


async def _run(ctx: Context, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(ctx.pool, fn, *args)


async def _transfer(action: Action, ctx: Context, direction: str) -> Row:
    """Move one file; return what the hash cache should remember of the local copy."""
    target = join(ctx.local_root, action.path)
    callback = _Bytes(ctx.stats, action.path)
    remote, key = ctx.remote, action.key
    if direction == "upload":
        entry = ctx.local[action.path]
        # An interrupted multipart upload of this very content continues from the parts the server holds.
        journal = ctx.cache.journal(entry.path, entry.size, entry.mtime, entry.digest, key.remote_path)
        if is_local(ctx.fs_local):
            await remote.upload_distribution(key, target, callback, journal)
        else:  # streamed from the filesystem's own reader: no scratch copy
            source = await _run(ctx, ctx.fs_local.open, target, "rb")
            try:
                await remote.upload_distribution(key, source, callback, journal)
            finally:
                await _run(ctx, source.close)
        # What was scanned (and hashed) is what was sent; a later edit changes mtime and is sent next pass.
        return action.path, entry.size, entry.mtime, entry.digest
    if action.backup:
        await _backup(ctx, action.path)
    if is_local(ctx.fs_local):
        folder = os.path.dirname(target)
        if folder not in ctx.folders:  # one mkdir per folder and pass, not one per file
            # On the loop: a mkdir costs a few microseconds, a hand-over to a thread ~0.4 ms of loop time.
            _makedirs(folder)
            ctx.folders.add(folder)
        st = await remote.download_distribution(key, target, callback, action.size, action.digest)
        return action.path, st.st_size, st.st_mtime_ns / 1e9, action.digest
    await remote.stream_distribution(key, ctx.fs_local, target, callback, action.size, action.digest)
    info = await _run(ctx, ctx.fs_local.info, target)
    return action.path, int(info["size"]), info_mtime(info), action.digest


def _makedirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` in one system call when only the last folder is missing."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


async def _backup(ctx: Context, rel: str) -> None:
    """Move a local file out of the way into the backup folder, keeping its relative path.

    An earlier backup of the same file is never overwritten: the new one gets a numbered name.
    """
    assert ctx.backup_dir is not None
    src = join(ctx.local_root, rel)
    dest = await _run(ctx, _move_aside, ctx.fs_local, src, join(ctx.backup_dir, rel))
    if ctx.report is not None:
        ctx.report.backups.append(Backup(rel, dest))
    log.info("%s: moved to %s", rel, dest)


def _move_aside(fs: Any, src: str, dest: str) -> str:
    """Move ``src`` to ``dest``, or to ``dest.1``, ``dest.2`` … when taken; the name used."""
    local = is_local(fs)
    exists = os.path.lexists if local else fs.exists
    if local:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
    candidate, n = dest, 0
    while exists(candidate):
        n += 1
        candidate = f"{dest}.{n}"
    if local:
        shutil.move(src, candidate)
    else:
        fs.mv(src, candidate)
    return candidate


async def _delete(action: Action, ctx: Context, direction: str) -> None:
    if direction == "upload":
        await ctx.remote.delete_distribution(action.key)
        return
    if action.backup and ctx.backup_dir:
        await _backup(ctx, action.path)
    else:
        await _run(ctx, ctx.fs_local.rm_file, join(ctx.local_root, action.path))
    ctx.cache.forget([action.path])
