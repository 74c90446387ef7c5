"""``fsync``: the SDK-compatible entry point, one pass or a continuous loop.

A pass is scan → plan → execute → report. The engine runs on the Fusion filesystem's
event loop; local I/O runs in threads, so any fsspec filesystem works on the local side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.catalog.names import identifier_problem
from fusionsync.client.transfer import gather_or_cancel
from fusionsync.errors import AuthError, FusionSyncError, UsageError
from fusionsync.sync.cache import HashCache, RootLock
from fusionsync.sync.execute import Context, describe, execute
from fusionsync.sync.plan import Op, RemoteEntry, plan
from fusionsync.sync.report import Failure, Stats, SyncReport
from fusionsync.sync.scan import LocalFile, LocalScan, is_local, key_from_name, scan_local, unknown_format_datasets

log = logging.getLogger("fusionsync")
DEFAULT_N_PAR = 8
MAX_BACKOFF = 300.0


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
    backup_dir: str | None = None
    stats: Stats = field(default_factory=Stats)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def configure_logging(log_level: int, log_path: str) -> None:
    """Log to ``log_path/fusion_fsync.log`` at ``log_level``, as the SDK does."""
    log.setLevel(log_level)
    target = os.path.abspath(os.path.join(log_path, "fusion_fsync.log"))
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            return
    os.makedirs(log_path, exist_ok=True)
    handler = logging.FileHandler(target)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(name)s:%(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    log.addHandler(handler)


def local_root_of(fs_local: Any, local_path: str) -> str:
    """The local root as an absolute path (a relative one is taken from the current folder)."""
    if is_local(fs_local):
        return os.path.abspath(local_path or ".")
    return str(fs_local._strip_protocol(local_path or "")).rstrip("/")


def root_id(fs_local: Any, root: str) -> str:
    protocol = fs_local.protocol if isinstance(fs_local.protocol, str) else fs_local.protocol[0]
    return f"{protocol}://{root}"


async def remote_state(fs_fusion: Any, opts: Options, warnings: list[str]) -> dict[DistKey, RemoteEntry]:
    """Every distribution of the selected datasets, from the change listing (one call per dataset).

    A distribution whose series or format is not a safe path segment is skipped with a warning:
    nothing the server says can make a sync write outside its folder.
    """
    listings = await asyncio.gather(*(fs_fusion._dataset_changes(opts.catalog, d) for d in opts.datasets))
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


async def run_pass(fs_fusion: Any, fs_local: Any, root: str, cache: HashCache, opts: Options) -> SyncReport:
    """One pass: scan both sides, plan, execute (unless dry run), report."""
    started = time.monotonic()
    raw: dict[tuple[str, str], bool] = {}
    wanted = set(opts.datasets)

    def key_of(path: str) -> DistKey | None:
        key = key_from_name(path, lambda c, d: raw.get((c, d), False))
        if key is None or key.catalog != opts.catalog or key.dataset not in wanted:
            return None
        if opts.dataset_format and key.format != opts.dataset_format:
            return None
        return key

    remote_warnings: list[str] = []

    async def learn_raw(files: list[LocalFile]) -> None:
        # isRawData only decides the format of files with an unknown extension: ask about their datasets alone.
        needed = sorted(d for c, d in unknown_format_datasets(files) if c == opts.catalog and d in wanted)
        flags = await asyncio.gather(*(fs_fusion._is_raw(opts.catalog, d) for d in needed))
        raw.update({(opts.catalog, d): flag for d, flag in zip(needed, flags, strict=True)})

    async def survey() -> tuple[Any, dict[DistKey, RemoteEntry]]:
        subdirs = [f"{opts.catalog}/{d}" for d in opts.datasets]
        # When one side fails the other is cancelled before the pass ends: nothing may use the cache after.
        local = scan_local(fs_local, root, subdirs, cache, key_of, pool, learn_raw)
        scanned, remote = await gather_or_cancel([local, remote_state(fs_fusion, opts, remote_warnings)])
        return scanned, remote

    with ThreadPoolExecutor(max_workers=max(4, min(opts.n_par, 16)), thread_name_prefix="fusionsync") as pool:
        surveyed = await until_stopped(survey(), opts.stop)
        if surveyed is None:
            return SyncReport(
                opts.direction, dry_run=opts.dry_run, interrupted=True, duration=time.monotonic() - started
            )
        local_scan, remote = surveyed
        _leave_unreadable_alone(local_scan, remote, opts.flatten)
        the_plan = plan(
            opts.direction,
            local_scan.entries,
            remote,
            flatten=opts.flatten,
            delete=opts.delete,
            backup=opts.backup_dir is not None,
        )
        report = SyncReport.from_plan(the_plan, opts.dry_run)
        report.hashed = local_scan.hashed
        for item in local_scan.unreadable:  # failed items: they also hold back this pass's deletes
            report.failed.append(Failure(item.path, item.reason))
            report.plan_lines.append(f"! {item.path}")
            log.warning("%s: %s", item.path, item.reason)
        report.warnings.extend(local_scan.warnings + remote_warnings)
        for warning in local_scan.warnings + remote_warnings:
            log.warning(warning)
        if opts.max_delete is not None and len(the_plan.deletes) > opts.max_delete:
            raise UsageError(
                f"this pass would delete {len(the_plan.deletes)} files, more than --max-delete {opts.max_delete}; "
                "nothing was done"
            )
        _remember_equal(cache, the_plan, local_scan.entries)
        if opts.dry_run:
            report.transferred = [a.path for a in the_plan.transfers]
            report.bytes = sum(a.size for a in the_plan.transfers)
            report.deleted = [a.path for a in the_plan.deletes]
        else:
            ctx = Context(fs_fusion, fs_local, root, cache, opts.stats, local_scan.entries, pool, opts.backup_dir)
            await execute(the_plan, ctx, report, opts.n_par, opts.stop)
    report.duration = time.monotonic() - started
    for conflict in report.conflicts:
        log.warning("%s: %s", conflict.path, conflict.reason)
    log.info(report.summary())
    return report


async def until_stopped(coro: Any, stop: asyncio.Event) -> Any:
    """The result of ``coro``, or None when ``stop`` is set first (``coro`` is then cancelled)."""
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return None


def _leave_unreadable_alone(scan: LocalScan, remote: dict[DistKey, RemoteEntry], flatten: bool) -> None:
    """No action on a distribution whose local file, or a folder above it, could not be read.

    What is in such a file (or folder) is unknown, so it is neither sent, overwritten nor deleted.
    """
    keys = {item.key for item in scan.unreadable if item.key is not None}
    folders = tuple(item.path + "/" for item in scan.unreadable if item.key is None)
    for key in list(remote):
        if key in keys or (folders and local_relative_path(key, flatten).startswith(folders)):
            del remote[key]


def _remember_equal(cache: HashCache, the_plan: Any, local: dict[str, Any]) -> None:
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


class Runner:
    """Runs engine coroutines on the Fusion filesystem's loop.

    The first Ctrl+C (or SIGTERM) sets the pass's stop event: transfers in flight are cancelled,
    their temporaries removed, and the pass returns its report; a second one exits at once.
    """

    def __init__(self, fs_fusion: Any, stop: asyncio.Event) -> None:
        self.loop: asyncio.AbstractEventLoop = fs_fusion.loop
        self.stop = stop
        self.stopping = False

    def run(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return self._wait(future)
        except KeyboardInterrupt:
            self.stopping = True
            self.loop.call_soon_threadsafe(self.stop.set)
            log.warning("interrupted: finishing cleanly (press Ctrl+C again to stop at once)")
            try:
                return self._wait(future)
            except KeyboardInterrupt:
                os._exit(130)

    @staticmethod
    def _wait(future: concurrent.futures.Future[Any]) -> Any:
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue


def sleep_interruptibly(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


def watch(
    runner: Runner,
    one_pass: Callable[[], Any],
    interval: float,
    on_report: Callable[[SyncReport], None] | None,
) -> SyncReport | None:
    """Passes every ``interval`` seconds; failures back off exponentially; stops on Ctrl+C/SIGTERM."""
    last: SyncReport | None = None
    failures = 0
    while True:
        try:
            result: SyncReport = runner.run(one_pass())
            if runner.stopping:  # stopped on purpose: answer for the last pass that ran to its end
                return last if result.interrupted else result
            last = result
            if on_report is not None:
                on_report(last)
            failures = failures + 1 if last.failed else 0
        except AuthError:
            raise
        except (FusionSyncError, OSError) as exc:
            if isinstance(exc, UsageError):
                raise
            failures += 1
            log.error("sync pass failed: %s", describe(exc))
            if runner.stopping:
                return last
        delay = interval if failures == 0 else min(MAX_BACKOFF, interval * 2 ** min(failures, 10))
        delay *= 1 + random.uniform(0, 0.1) if failures else 1
        try:
            sleep_interruptibly(delay)
        except KeyboardInterrupt:
            return last


class _SigtermAsInterrupt:
    """Within the block, SIGTERM behaves like Ctrl+C (only possible in the main thread)."""

    def __enter__(self) -> None:
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def sync_main(
    fs_fusion: Any,
    fs_local: Any,
    opts: Options,
    local_path: str,
    once: bool,
    interval: float,
    on_report: Callable[[SyncReport], None] | None = None,
) -> SyncReport | None:
    """Lock the local root, then run one pass or the continuous loop."""
    check_names(opts.catalog, opts.datasets)
    root = local_root_of(fs_local, local_path)
    cache = HashCache.for_root(root_id(fs_local, root))
    lock = RootLock(cache.path)
    lock.acquire(root)
    runner = Runner(fs_fusion, opts.stop)
    try:
        with _SigtermAsInterrupt():
            if once:
                report: SyncReport = runner.run(run_pass(fs_fusion, fs_local, root, cache, opts))
                if on_report is not None:
                    on_report(report)
                return report
            return watch(runner, lambda: run_pass(fs_fusion, fs_local, root, cache, opts), interval, on_report)
    finally:
        cache.close()
        lock.release()


def fsync(
    fs_fusion: Any,
    fs_local: Any,
    products: list[str] | None = None,
    datasets: list[str] | None = None,
    catalog: str | None = None,
    direction: str = "upload",
    flatten: bool = False,
    dataset_format: str | None = None,
    n_par: int | None = None,
    show_progress: bool = True,
    local_path: str = "",
    log_level: int = logging.ERROR,
    log_path: str = ".",
    *,
    once: bool = False,
    interval: float = 10.0,
    dry_run: bool = False,
    delete: bool = False,
    max_delete: int | None = None,
    backup_dir: str | None = None,
) -> SyncReport | None:
    """Synchronise a local folder (any fsspec filesystem) with Fusion datasets.

    The parameters and defaults are the official SDK's ``fsync``: files are named
    ``{dataset}__{catalog}__{series}.{format}`` under ``{local_path}{catalog}/{dataset}/{series}/``
    (``flatten=True`` drops the series folder); ``products`` are expanded into their datasets;
    ``catalog`` defaults to ``common``; the log goes to ``{log_path}/fusion_fsync.log``.
    ``n_par`` transfers run at once (default 8). Keyword-only extras:

    - ``once``: run one pass and return its :class:`SyncReport` (otherwise passes repeat every
      ``interval`` seconds until Ctrl+C or SIGTERM, and the last report is returned);
    - ``dry_run``: plan only, transfer nothing (the report lists what would be done);
    - ``delete``: mirror, removing at the destination what the source no longer has, after all
      transfers of the pass succeeded; ``max_delete`` refuses a pass that would delete more;
    - ``backup_dir``: local files that were changed since the last sync (and would be overwritten
      or deleted) are moved there first; without it such files are kept and reported as conflicts.
    """
    if direction not in ("upload", "download"):
        raise UsageError(f"direction must be 'upload' or 'download', not {direction!r}")
    if not products and not datasets:
        raise UsageError("give at least one dataset or product to sync")
    if n_par is not None and n_par < 1:
        raise UsageError(f"n_par must be at least 1, not {n_par}")
    if interval <= 0:
        raise UsageError(f"interval must be a positive number of seconds, not {interval}")
    configure_logging(log_level, log_path)
    catalog = catalog or "common"
    wanted = list(datasets or [])
    for product in products or []:
        wanted.extend(fsspec_sync(fs_fusion, fs_fusion._product_datasets(catalog, product)))
    if not wanted:
        raise UsageError("the given products hold no datasets")
    opts = Options(
        catalog=catalog,
        datasets=list(dict.fromkeys(wanted)),
        direction=direction,  # type: ignore[arg-type]
        flatten=flatten,
        dataset_format=dataset_format,
        n_par=n_par or DEFAULT_N_PAR,
        dry_run=dry_run,
        delete=delete,
        max_delete=max_delete,
        backup_dir=os.path.abspath(backup_dir) if backup_dir and is_local(fs_local) else backup_dir,
    )
    from fusionsync.sync.progress import ProgressDisplay

    with ProgressDisplay(opts.stats, show_progress and not dry_run):
        return sync_main(fs_fusion, fs_local, opts, local_path, once, interval)


def fsspec_sync(fs: Any, coro: Any) -> Any:
    """Run one coroutine of ``fs`` on its loop from synchronous code."""
    return asyncio.run_coroutine_threadsafe(coro, fs.loop).result()
