"""One sync pass: scan both sides, plan, check the plan's deletes, execute, report.

The engine runs on the remote's event loop; local I/O runs in threads, so any fsspec
filesystem works on the local side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.catalog.names import identifier_problem
from fusionsync.client.transfer import gather_or_cancel
from fusionsync.errors import DeleteRefused, UsageError
from fusionsync.sync.cache import HashCache
from fusionsync.sync.execute import Context, execute
from fusionsync.sync.naming import LocalNames, match_remote_series
from fusionsync.sync.plan import LocalEntry, Op, Plan, RemoteEntry, plan
from fusionsync.sync.remote import Remote
from fusionsync.sync.report import Failure, Stats, SyncReport
from fusionsync.sync.scan import LocalFile, LocalScan, scan_local
from fusionsync.sync.spread import Spread

log = logging.getLogger("fusionsync")
T = TypeVar("T")


@dataclass
class Options:
    catalog: str
    datasets: list[str]
    direction: Literal["upload", "download"]
    flatten: bool
    dataset_format: str | None
    n_par: int
    dry_run: bool = False
    delete: bool = False
    max_delete: int | None = None
    allow_delete_all: bool = False
    backup_dir: str | None = None
    rehash: bool = False
    stats: Stats = field(default_factory=Stats)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    spread: Spread | None = None
    """Where transfers run when not in this process (other processes, a Dask cluster)."""


async def remote_state(remote: Remote, opts: Options, warnings: list[str]) -> dict[DistKey, RemoteEntry]:
    """Every distribution of the selected datasets, from the change listing (one call per dataset).

    A distribution whose series or format is not a safe path segment is skipped with a warning:
    nothing the server says can make a sync write outside its folder.
    """
    listings = await asyncio.gather(*(remote.list_distributions(opts.catalog, d) for d in opts.datasets))
    state: dict[DistKey, RemoteEntry] = {}
    safe_formats: set[str] = set()  # a few formats, checked once each
    for dataset, listing in zip(opts.datasets, listings, strict=True):
        for dist in listing:
            problem = identifier_problem(dist.series)
            if problem is None and dist.format not in safe_formats:
                problem = identifier_problem(dist.format)
                if problem is None:
                    safe_formats.add(dist.format)
            if problem is not None:
                warnings.append(f"dataset {dataset}: skipped distribution {dist.series!r}/{dist.format!r}: {problem}")
                continue
            if opts.dataset_format and dist.format != opts.dataset_format:
                continue
            key = DistKey(opts.catalog, dataset, dist.series, dist.format)
            state[key] = RemoteEntry(key, dist.size, dist.digest, dist.modified)
    return state


async def run_pass(remote: Remote, fs_local: Any, root: str, cache: HashCache, opts: Options) -> SyncReport:
    """One pass: scan both sides, plan, execute (unless dry run), report."""
    started = time.monotonic()
    names = LocalNames(opts.catalog, opts.datasets, opts.dataset_format)
    remote_warnings: list[str] = []

    async def learn_raw(files: list[LocalFile]) -> None:
        # isRawData only decides the format of files with an unknown extension: ask about their datasets alone.
        needed = sorted(names.datasets_with_unknown_formats(f.path for f in files))
        flags = await asyncio.gather(*(remote.dataset_is_raw(opts.catalog, d) for d in needed))
        names.raw.update(zip(needed, flags, strict=True))

    async def survey() -> tuple[LocalScan, dict[DistKey, RemoteEntry]]:
        subdirs = [f"{opts.catalog}/{d}" for d in opts.datasets]
        # When one side fails the other is cancelled before the pass ends: nothing may use the cache after.
        vanished = opts.direction == "upload" and opts.delete
        local = scan_local(fs_local, root, subdirs, cache, names.key_of, pool, learn_raw, opts.rehash, vanished)
        scanned, state = await gather_or_cancel([local, remote_state(remote, opts, remote_warnings)])
        return scanned, state

    with ThreadPoolExecutor(max_workers=max(4, min(opts.n_par, 16)), thread_name_prefix="fusionsync") as pool:
        surveyed = await until_stopped(survey(), opts.stop)
        if surveyed is None:
            return SyncReport(
                opts.direction, dry_run=opts.dry_run, interrupted=True, duration=time.monotonic() - started
            )
        local_scan, state = surveyed
        if opts.direction == "upload":
            match_remote_series(local_scan.entries, state)
        local_held = Counter(e.key.dataset for e in local_scan.entries.values() if e.key is not None)
        remote_held = Counter(key.dataset for key in state)
        _leave_unreadable_alone(local_scan, state, opts.flatten)
        the_plan = plan(
            opts.direction,
            local_scan.entries,
            state,
            flatten=opts.flatten,
            delete=opts.delete,
            backup=opts.backup_dir is not None,
            vanished=local_scan.vanished,
        )
        report = SyncReport.from_plan(the_plan, opts.dry_run)
        report.hashed = local_scan.hashed
        for item in local_scan.unreadable:  # failed items: they also hold back this pass's deletes
            report.failed.append(Failure(item.path, item.reason))
            report.plan_lines.append(f"! {item.path}")
            log.warning("%s: %s", item.path, item.reason)
        report.warnings.extend(local_scan.warnings + remote_warnings)
        if opts.direction == "upload":
            check_deletes(the_plan, local_held, remote_held, opts, root)
        else:
            check_deletes(the_plan, remote_held, local_held, opts, root)
        _remember_equal(cache, the_plan, local_scan.entries)
        for action in the_plan.transfers:
            if action.note:
                log.info("%s: %s", action.path, action.note)
        if opts.dry_run:
            report.transferred = [a.path for a in the_plan.transfers]
            report.bytes = sum(a.size for a in the_plan.transfers)
            report.deleted = [a.path for a in the_plan.deletes]
        else:
            ctx = Context(
                remote, fs_local, root, cache, opts.stats, local_scan.entries, pool, opts.backup_dir, report=report
            )
            await execute(the_plan, ctx, report, opts.n_par, opts.stop, opts.spread)
    report.duration = time.monotonic() - started
    log.info(report.summary())
    return report


def check_deletes(the_plan: Plan, source: Counter[str], destination: Counter[str], opts: Options, root: str) -> None:
    """Refuse (:class:`DeleteRefused`, nothing done) a pass that deletes more than ``max_delete``
    files, or that would empty a dataset at the destination because the source has none of its
    distributions (an empty or mistyped folder), unless ``max_delete`` or ``allow_delete_all`` says so.

    ``source`` and ``destination`` count the distributions of each dataset on either side.
    """
    deletes = the_plan.deletes
    if not deletes:
        return
    if opts.max_delete is not None:
        if len(deletes) > opts.max_delete:
            raise DeleteRefused(
                f"this pass would delete {len(deletes)} files, more than --max-delete {opts.max_delete}; "
                "nothing was done"
            )
        return  # a limit was given and holds: that is the user's say
    if opts.allow_delete_all:
        return
    gone = Counter(action.key.dataset for action in deletes)
    for dataset, count in sorted(gone.items()):
        if count == destination[dataset] and not source[dataset]:
            folder = f"{root.rstrip('/')}/{opts.catalog}/{dataset}"
            if opts.direction == "upload":
                where = f"on the server, since {folder} has none"
            else:
                where = f"in {folder}, since the server lists none"
            raise DeleteRefused(
                f"this pass would delete all {count} distributions of dataset {dataset!r} {where}; nothing was "
                f"done (give --allow-delete-all, or --max-delete {len(deletes)}, if that is what you want)"
            )


async def until_stopped(coro: Awaitable[T], stop: asyncio.Event) -> T | None:
    """The result of ``coro``, or None when ``stop`` is set first (``coro`` is then cancelled)."""
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
    if work.cancelled() and stop.is_set():
        return None
    return work.result()


def _leave_unreadable_alone(scan: LocalScan, remote: dict[DistKey, RemoteEntry], flatten: bool) -> None:
    """No action on a distribution whose local file, or a folder above it, could not be read.

    What is in such a file (or folder) is unknown, so it is neither sent, overwritten nor deleted.
    """
    keys = {item.key for item in scan.unreadable if item.key is not None}
    folders = tuple(item.path + "/" for item in scan.unreadable if item.key is None)
    for key in list(remote):
        if key in keys or (folders and local_relative_path(key, flatten).startswith(folders)):
            del remote[key]


def _remember_equal(cache: HashCache, the_plan: Plan, local: dict[str, LocalEntry]) -> None:
    """Files already equal to the other side count as synced from now on (so later edits are seen)."""
    rows = []
    for action in the_plan.actions:
        entry = local.get(action.path)
        if action.op is Op.EQUAL and entry is not None and entry.synced_digest != entry.digest:
            rows.append((entry.path, entry.size, entry.mtime, entry.digest))
    if rows:
        cache.mark_synced(rows)


def check_names(catalog: str, datasets: list[str]) -> None:
    for kind, value in [("catalog", catalog)] + [("dataset", d) for d in datasets]:
        problem = identifier_problem(value)
        if problem:
            raise UsageError(f"{kind} {value!r} {problem}")
