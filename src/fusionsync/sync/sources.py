"""What wakes a continuous sync: the catalog's change events (downloads) or local file events (uploads).

Each source announces changes to a :class:`~fusionsync.sync.wakeup.Wakeup`, which runs the next pass
once a burst has settled; a pass still comes every ``interval`` as a safety net. A source announces a
change too when it starts listening (and, for events, on every reconnection), so whatever happened
before it listened is seen by a pass. :func:`change_sources` starts the source a direction needs and
stops it before it returns: no thread, task or stream outlives the sync. Where there is no source (a
remote without change events, a server that refuses or does not answer them, a local side that is
not a local folder, a watcher that cannot start), one log line says so and passes come every
``interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from watchfiles._rust_notify import RustNotify  # watchfiles' documented Rust backend (see FolderWatcher)

from fusionsync.catalog.layout import TEMP_MARK
from fusionsync.sync.execute import describe
from fusionsync.sync.passes import Options
from fusionsync.sync.remote import Remote
from fusionsync.sync.runner import Runner
from fusionsync.sync.scan import is_local
from fusionsync.sync.wakeup import Wakeup

log = logging.getLogger("fusionsync")
READY_WAIT = 1.0  # the first pass waits this long at most for its source to listen
ANSWER_WAIT = 5.0  # a subscription unanswered this long is said (once) to be missing
LOG_NAME = "fusion_fsync.log"
RECHECK_MS = 1000  # how often the watcher looks for a selected folder that appeared, vanished or was replaced
STEP_MS = 50  # the watcher's grouping step (and how soon it sees that it should stop)


class Source(Protocol):
    ready: threading.Event

    def start(self) -> None: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def change_sources(
    remote: Remote, fs_local: Any, root: str, opts: Options, own_files: str, runner: Runner, interval: float
) -> Iterator[None]:
    """Within the block, changes to the selected datasets are announced to the runner's wakeup: the
    catalog's change events in the download direction; in the upload direction, file events under
    ``{root}/{catalog}/{dataset}/`` but for the sync's own files (temporaries, the log, and the hash
    cache's files, whose paths start with ``own_files``)."""
    wakeup = runner.wakeup
    source: Source
    if opts.direction == "download":
        source = EventFollower(remote, opts.catalog, set(opts.datasets), wakeup, interval)
    elif is_local(fs_local):
        wakeup.burst = math.inf  # files being written: wait until they pause (the interval still holds)
        folders = [f"{root.rstrip('/')}/{opts.catalog}/{d}" for d in opts.datasets]
        source = FolderWatcher(folders, lambda path: is_own(path, own_files), wakeup, interval)
    else:
        where = fs_local.unstrip_protocol(root)
        log.info("%s is not a local folder, so its files cannot be watched: a pass runs every %g s", where, interval)
        yield
        return
    source.start()
    try:
        # Whatever changes once the source listens is announced: the first pass starts after that, if it can.
        wakeup.wait(READY_WAIT, lambda: runner.stopping or source.ready.is_set(), not_before=READY_WAIT)
        yield
    finally:
        source.stop()


def is_own(path: str, own_files: str) -> bool:
    """Whether ``path`` is one of the sync's own files (a change to it is no reason for a pass)."""
    name = os.path.basename(path)
    return TEMP_MARK in name or name == LOG_NAME or path.startswith(own_files)


class EventFollower:
    """Follows the catalog's change events on the remote's loop: a change to a selected dataset, a
    ``reset`` (events were missed) or a (re)connection (what changed while the stream was down is not
    in it) announces a change."""

    def __init__(self, remote: Remote, catalog: str, datasets: set[str], wakeup: Wakeup, interval: float) -> None:
        self.remote = remote
        self.catalog = catalog
        self.datasets = datasets
        self.wakeup = wakeup
        self.interval = interval
        self.ready = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def begin() -> asyncio.Task[None]:
            return asyncio.get_running_loop().create_task(self._follow(), name="fusionsync-events")

        self._task = asyncio.run_coroutine_threadsafe(begin(), self.remote.loop).result()

    def stop(self) -> None:
        task = self._task
        if task is None:
            return

        async def end() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(end(), self.remote.loop).result()
        self._task = None

    def _connected(self) -> None:
        if self.ready.is_set():
            log.info("change events of catalog %r: connected again; a pass follows", self.catalog)
        self.ready.set()
        self.wakeup.changed()

    def _unanswered(self) -> None:
        if not self.ready.is_set():
            log.warning(
                "%s does not answer the subscription to change events of catalog %r: a pass runs every %g s "
                "until it does",
                self.remote.address,
                self.catalog,
                self.interval,
            )

    async def _follow(self) -> None:
        stream = self.remote.events(self.catalog, on_connect=self._connected)
        if stream is None:
            log.warning("%s offers no change events: a pass runs every %g s", self.remote.address, self.interval)
            self.ready.set()
            return
        timer = asyncio.get_running_loop().call_later(min(ANSWER_WAIT, self.interval), self._unanswered)
        try:
            async for event in stream:
                if event.kind == "reset" or event.dataset in self.datasets:
                    self.wakeup.changed()
        except Exception as exc:  # whatever ends the events, passes go on every interval
            where, what = self.remote.address, describe(exc)
            log.warning("no change events from %s (%s): a pass runs every %g s", where, what, self.interval)
        finally:
            timer.cancel()
            self.ready.set()


class FolderWatcher:
    """Watches the selected dataset folders, recursively, in a thread of its own (watchfiles' Rust
    watcher: inotify on Linux). A change under them that is not one of the sync's own files announces
    a change. A folder that appears, vanishes or is replaced is seen within ``RECHECK_MS`` and watched
    anew (announcing a change, since what happened in between was not watched).

    ``RustNotify`` is used rather than ``watchfiles.watch`` because it tells when the watcher listens.
    """

    def __init__(self, folders: list[str], ignored: Callable[[str], bool], wakeup: Wakeup, interval: float) -> None:
        self.folders = folders
        self.ignored = ignored
        self.wakeup = wakeup
        self.interval = interval
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fusionsync-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _present(self) -> list[tuple[str, int]]:
        """The selected folders that exist, with their inode numbers (a folder replaced is another one)."""
        present = []
        for folder in self.folders:
            with contextlib.suppress(OSError):
                st = os.stat(folder)
                if stat.S_ISDIR(st.st_mode):
                    present.append((folder, st.st_ino))
        return present

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                present = self._present()
                notify = RustNotify([f for f, _ in present], False, False, 300, True, True) if present else None
                try:
                    self.ready.set()
                    self.wakeup.changed()  # what changed before this watcher listened is for the next pass
                    self._follow(notify, present)
                finally:
                    if notify is not None:
                        notify.close()
        except Exception as exc:  # e.g. the system's limit of watches: passes go on every interval
            log.warning("local files cannot be watched (%s): a pass runs every %g s", describe(exc), self.interval)
        finally:
            self.ready.set()

    def _follow(self, notify: RustNotify | None, present: list[tuple[str, int]]) -> None:
        """Announce changes until the selected folders change or the watcher is stopped (with no folder to
        watch, only look for one every ``RECHECK_MS``)."""
        while True:
            if notify is None:
                if self._stop.wait(RECHECK_MS / 1000):
                    return
            else:
                got = notify.watch(STEP_MS * 4, STEP_MS, RECHECK_MS, self._stop)
                if got == "stop":
                    return
                if isinstance(got, set) and not all(self.ignored(path) for _, path in got):
                    self.wakeup.changed()
            if self._present() != present:
                return
