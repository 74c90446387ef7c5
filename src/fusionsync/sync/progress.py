"""Showing a pass's progress: a rich display on a terminal, plain lines otherwise, or nothing.

The display pulls from :class:`~fusionsync.sync.report.Stats` on its own thread; the engine
never prints.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

from fusionsync.sync.report import Stats

PLAIN_EVERY = 5.0


class ProgressDisplay:
    """``with ProgressDisplay(stats, enabled):`` shows the transfers of the passes run inside."""

    def __init__(self, stats: Stats, enabled: bool = True, stream: TextIO | None = None) -> None:
        self._stats = stats
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressDisplay:
        if self._enabled:
            target = self._rich if self._stream.isatty() else self._plain
            self._thread = threading.Thread(target=target, name="fusionsync-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _rich(self) -> None:
        # Imported here: rich costs ~30 ms to import, and a sync without a terminal never draws with it.
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.text import Text

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
        )
        task = progress.add_task("sync", total=None, files="")
        console = Console(file=self._stream)
        with Live(Group(progress, Text("")), console=console, refresh_per_second=8, transient=False) as live:
            while True:
                stopping = self._done.wait(0.125)
                s = self._stats
                files = f"{s.files_done}/{s.files_total} files" + (
                    f", {s.files_failed} failed" if s.files_failed else ""
                )
                progress.update(task, total=s.bytes_total or None, completed=s.bytes_done, files=files)
                active = sorted(s.active.items())[:6]
                lines = "\n".join(f"  {name}  {done * 100 // max(size, 1)}%" for name, (done, size) in active)
                live.update(Group(progress, Text(lines)))
                if stopping:
                    return

    def _plain(self) -> None:
        while not self._done.wait(PLAIN_EVERY):
            self._line()
        if self._stats.files_total:
            self._line()

    def _line(self) -> None:
        s = self._stats
        if not s.files_total:
            return
        mib = 2**20
        self._stream.write(
            f"fusionsync: {s.files_done}/{s.files_total} files, "
            f"{s.bytes_done / mib:.1f}/{s.bytes_total / mib:.1f} MiB, {s.speed / mib:.1f} MiB/s\n"
        )
        self._stream.flush()
