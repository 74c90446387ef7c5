"""``fsync``: the SDK-compatible entry point (one pass, or passes until a signal)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractFileSystem

from fusionsync.errors import UsageError
from fusionsync.sync.cache import HashCache, RootLock
from fusionsync.sync.passes import Options, check_names, run_pass
from fusionsync.sync.remote import Remote, is_fusion_filesystem, open_remote
from fusionsync.sync.report import SyncReport
from fusionsync.sync.runner import Announcer, OnPass, Runner, run_once, watch
from fusionsync.sync.scan import is_local
from fusionsync.sync.sources import LOG_NAME, change_sources
from fusionsync.sync.spread import spread_over

if TYPE_CHECKING:
    from fusionsync.sync.metrics import SyncMetrics

log = logging.getLogger("fusionsync")
DEFAULT_N_PAR = 8


def configure_logging(log_level: int, log_path: str) -> None:
    """Log to ``log_path/fusion_fsync.log`` at ``log_level``, as the SDK does."""
    log.setLevel(log_level)
    target = os.path.abspath(os.path.join(log_path, LOG_NAME))
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
    """The local root: for a local folder its real absolute path (a relative one is taken from the
    current folder, symbolic links are resolved, so every alias of a folder is the same root)."""
    if is_local(fs_local):
        return os.path.realpath(os.path.abspath(local_path or "."))
    return str(fs_local._strip_protocol(local_path or "")).rstrip("/")


def root_id(fs_local: Any, root: str) -> str:
    protocol = fs_local.protocol if isinstance(fs_local.protocol, str) else fs_local.protocol[0]
    return f"{protocol}://{root}"


def check_root(fs_local: Any, root: str, direction: str) -> None:
    """Refuse an upload from a local root that does not exist (a mistyped path: there is nothing to
    send, and ``delete`` would empty the datasets). A download creates its root, but not the folders
    above it (rsync's rule: a mistyped parent is an error, not a new tree somewhere unexpected)."""
    if is_local(fs_local):
        if os.path.lexists(root) and not os.path.isdir(root):
            raise UsageError(f"the local path {root} is not a folder; nothing was done")
        if direction == "upload" and not os.path.isdir(root):
            raise UsageError(f"the local folder {root} does not exist, so there is nothing to upload; nothing was done")
        parent = os.path.dirname(root)
        if not os.path.isdir(root) and not os.path.isdir(parent):
            raise UsageError(
                f"the folder {parent} does not exist, so the local folder {root} cannot be made in it; nothing was "
                "done (create the parent folder first)"
            )
    elif direction == "upload" and not fs_local.exists(root):
        raise UsageError(f"{fs_local.unstrip_protocol(root)} does not exist, so there is nothing to upload")


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
    poll: bool = False,
    dry_run: bool = False,
    delete: bool = False,
    max_delete: int | None = None,
    allow_delete_all: bool = False,
    backup_dir: str | None = None,
    checksum: bool = False,
    on_pass: OnPass | None = None,
    metrics: SyncMetrics | None = None,
    executor: Any = None,
) -> SyncReport:
    """Synchronise a local folder (or any fsspec filesystem) with datasets of a Fusion catalog.

    The official SDK's ``fsync`` with the same parameters and defaults, layout and log file: a
    distribution is the local file
    ``{local_path}{catalog}/{dataset}/{series}/{dataset}__{catalog}__{series}.{format}``, and the log
    goes to ``{log_path}/fusion_fsync.log``. The keyword-only parameters after ``log_path`` are added.
    Nothing changed on either side since the last sync is overwritten: see [Syncing][conflicts] for
    conflicts, backups and deletes.

    Without ``once=True``, passes repeat until Ctrl+C or SIGTERM: a download wakes up within a second
    of a change to a selected dataset (the catalog's change events), an upload within a second of a
    change under the selected dataset folders (file events), and a full pass runs every ``interval``
    seconds in any case (the only wake-up where the server has no change events, the local side is
    not a local folder, or with ``poll=True``). A pass that failed as a whole (the server unreachable)
    is retried with exponential backoff, up to 5 minutes apart.

    Args:
        fs_fusion: The catalog: a [`FusionFileSystem`][fusionsync.FusionFileSystem]; the SDK's own
            filesystem (``fusion.Fusion(...).get_fusion_filesystem()``), whose root URL, credentials
            and proxies then drive a `FusionFileSystem`; or any fsspec filesystem that serves the
            catalog's paths (read through fsspec's generic interface: digests are computed by reading,
            and a continuous sync polls it).
        fs_local: The fsspec filesystem of the local side, such as ``fsspec.filesystem("file")`` or
            an ``s3fs`` filesystem; not a Fusion filesystem.
        products: Products whose datasets to sync, looked up when the sync starts. Default: none.
            At least one product or dataset must be given.
        datasets: Datasets to sync (with those of ``products``). Default: none.
        catalog: The catalog. Default (``None``): ``"common"``.
        direction: ``"upload"`` (local files to the catalog, the default) or ``"download"``.
        flatten: Leave out the series folder: ``{local_path}{catalog}/{dataset}/{file}``.
            Default: ``False``.
        dataset_format: Only distributions of this format (``"csv"``, ``"parquet"``…). Default
            (``None``): every format.
        n_par: File transfers at once. Default (``None``): 8.
        show_progress: Show a progress display on stderr (bytes, speed, files; plain lines every
            5 s when stderr is not a terminal). Default: ``True``; a dry run shows none.
        local_path: The local root, prefixed to ``{catalog}/…``: a folder (relative to the current
            folder) or a path of ``fs_local`` (``"bucket/mirror/"``). Default: ``""``, the current
            folder. A download makes the root if it is missing, but not the folders above it; an
            upload needs it to exist.
        log_level: Level of the log file. Default: ``logging.ERROR``.
        log_path: Folder of the log file ``fusion_fsync.log``. Default: ``"."``.
        once: Run one pass and return. Default: ``False`` (passes until Ctrl+C or SIGTERM).
        interval: Seconds between full passes in continuous mode (the safety net; changes wake a
            pass sooner). Default: ``10.0``, the SDK's pause.
        poll: Continuous mode without change events or file watching: a pass every ``interval``
            only (for debugging). Default: ``False``.
        dry_run: Plan only, transfer nothing: the report's ``plan_lines`` list what would be done.
            Default: ``False``.
        delete: Mirror: delete at the destination what the source no longer has, after every
            transfer of the pass succeeded. Default: ``False``.
        max_delete: With ``delete``, refuse (``DeleteRefused``, nothing done) a pass that would
            delete more files than this. Default (``None``): no limit, but see ``allow_delete_all``.
        allow_delete_all: With ``delete``, allow a pass to delete every distribution of a dataset
            (refused otherwise, unless ``max_delete`` covers it: an empty or mistyped source).
            Default: ``False``.
        backup_dir: A folder into which a download moves local files changed since the last sync
            before replacing or deleting them (never over an earlier backup: ``name.1``,
            ``name.2``…). Default (``None``): such files are kept and reported as conflicts.
        checksum: Hash every local file again instead of trusting its size and modification time
            (finds content that changed while those did not). Default: ``False``.
        on_pass: Called as ``on_pass(report, news)`` after each pass that did something
            (transferred, deleted, failed, backed up, was interrupted, or found a new conflict or
            warning): its report, and in ``news.conflicts`` and ``news.warnings`` those that no
            earlier pass reported. Default: ``None``.
        metrics: A [`SyncMetrics`][fusionsync.sync.metrics.SyncMetrics] that every pass updates: passes by
            outcome, files and bytes moved, failed files, conflicts, pass durations and the time of the last
            successful pass (``fusionsync sync --metrics-port`` serves them). Default: ``None``.
        executor: Where the transfers run. Default (``None``): in this process. A
            ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, a Dask cluster's
            ``distributed.Client(...).get_executor()``) or a ``distributed.Client``: the plan is made
            here and its transfers run in batches (by dataset and bytes) on the executor's workers,
            each with its own client from the pickled settings of ``fs_fusion`` and ``fs_local``, with
            the same verified, atomic transfers; one report, the hash cache and the progress gather
            every worker's results. Every worker must reach the server and the local side (on other
            machines: an ``s3://`` bucket or a shared folder). A batch whose worker dies runs again
            once, then its files are reported failed; Ctrl+C stops every worker's transfers. See
            [Beyond one process][beyond-one-process].

    Returns:
        The report of the pass (in continuous mode, of the last one), marked ``interrupted`` when a
            signal stopped it (an empty one when the signal came between passes).

    Raises:
        UsageError: A bad argument, a local path that cannot be used, or an unsafe identifier;
            nothing was done.
        CredentialsError: The credentials are malformed or refused.
        AuthError: The server refused the token.
        LockedError: Another sync is running on the same local root.
        DeleteRefused: A pass would delete more than ``max_delete`` or ``allow_delete_all`` allow;
            nothing was done.
        FusionSyncError: In one-pass mode, the pass failed as a whole (the server unreachable, for
            example); a failed file is not an error but an entry of the report's ``failed``.
    """
    if direction not in ("upload", "download"):
        raise UsageError(f"direction must be 'upload' or 'download', not {direction!r}")
    if not products and not datasets:
        raise UsageError("give at least one dataset or product to sync")
    if n_par is not None and n_par < 1:
        raise UsageError(f"n_par must be at least 1, not {n_par}")
    if interval <= 0:
        raise UsageError(f"interval must be a positive number of seconds, not {interval}")
    if not isinstance(fs_local, AbstractFileSystem) or is_fusion_filesystem(fs_local):
        raise UsageError(
            f"fs_local must be the fsspec filesystem of the local side (such as fsspec.filesystem('file')), "
            f"not {type(fs_local).__name__}"
        )
    configure_logging(log_level, log_path)
    catalog = catalog or "common"
    check_names(catalog, list(datasets or []))
    with open_remote(fs_fusion) as remote:
        opts = Options(
            catalog=catalog,
            datasets=[],
            direction=direction,  # type: ignore[arg-type]
            flatten=flatten,
            dataset_format=dataset_format,
            n_par=n_par or DEFAULT_N_PAR,
            dry_run=dry_run,
            delete=delete,
            max_delete=max_delete,
            allow_delete_all=allow_delete_all,
            backup_dir=os.path.abspath(backup_dir) if backup_dir and is_local(fs_local) else backup_dir,
            rehash=checksum,
            spread=None if executor is None else spread_over(executor, remote, fs_local),
        )
        from fusionsync.sync.progress import ProgressDisplay

        with Runner(remote.loop, opts.stop) as runner, ProgressDisplay(opts.stats, show_progress and not dry_run):
            wanted = list(datasets or [])
            for product in products or []:
                wanted.extend(runner.run(remote.list_product_datasets(catalog, product)))
                if runner.stopping:
                    return runner.mark(SyncReport(direction))
            if not wanted:
                raise UsageError("the given products hold no datasets")
            opts.datasets = list(dict.fromkeys(wanted))
            check_names(catalog, opts.datasets)
            root = local_root_of(fs_local, local_path)
            return _sync(
                remote, fs_local, opts, root, runner, on_pass, once=once, interval=interval, poll=poll, metrics=metrics
            )


def _sync(
    remote: Remote,
    fs_local: Any,
    opts: Options,
    root: str,
    runner: Runner,
    on_pass: OnPass | None,
    *,
    once: bool,
    interval: float,
    poll: bool,
    metrics: SyncMetrics | None,
) -> SyncReport:
    """Lock the local root, then run one pass or the watch loop (woken by changes unless ``poll``)."""
    check_root(fs_local, root, opts.direction)
    cache = HashCache.for_root(root_id(fs_local, root))
    lock = RootLock(cache.path)
    lock.acquire(root)
    announce = Announcer(on_pass)

    async def one_pass() -> SyncReport:
        if metrics is None:
            return await run_pass(remote, fs_local, root, cache, opts)
        start = time.monotonic()
        try:
            report = await run_pass(remote, fs_local, root, cache, opts)
        except Exception:
            metrics.observe(None, time.monotonic() - start)
            raise
        metrics.observe(report, time.monotonic() - start)
        return report

    try:
        if once:
            return run_once(runner, one_pass, announce)
        if poll:
            log.info("polling: a pass runs every %g s", interval)
            sources: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        else:
            own_files = str(cache.path.with_suffix(""))
            sources = change_sources(remote, fs_local, root, opts, own_files, runner, interval)
        with sources:
            return watch(runner, one_pass, interval, announce, opts.direction)
    finally:
        cache.close()
        lock.release()
