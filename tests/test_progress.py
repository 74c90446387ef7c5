"""The progress display: bars on a terminal, a line every few seconds elsewhere, nothing when off."""

from __future__ import annotations

import io
import time

from fusionsync.sync.progress import ProgressDisplay
from fusionsync.sync.report import Stats


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as a console does."""

    def isatty(self) -> bool:
        return True


def busy_stats() -> Stats:
    stats = Stats()
    stats.begin(3, 3 * 2**20)
    stats.open("cat/A/20240101/A__cat__20240101.csv", 2**20)
    stats.advance("cat/A/20240101/A__cat__20240101.csv", 2**19)
    stats.open("cat/A/20240102/A__cat__20240102.csv", 2**20)
    stats.advance("cat/A/20240102/A__cat__20240102.csv", 2**20)
    stats.close("cat/A/20240102/A__cat__20240102.csv", ok=True)
    return stats


def test_a_terminal_gets_a_bar_with_files_bytes_and_the_transfers_in_flight() -> None:
    screen = Terminal()
    with ProgressDisplay(busy_stats(), enabled=True, stream=screen):
        time.sleep(0.3)  # a few refreshes
    shown = screen.getvalue()
    assert "1/3 files" in shown
    assert "1.5/3.0 MiB" in shown
    assert "A__cat__20240101.csv  50%" in shown
    assert "A__cat__20240102.csv" not in shown.rsplit("1/3 files", 1)[1], "a finished file leaves the list"


def test_a_log_or_pipe_gets_plain_lines() -> None:
    out = io.StringIO()
    with ProgressDisplay(busy_stats(), enabled=True, stream=out):
        pass
    assert out.getvalue().startswith("fusionsync: 1/3 files, 1.5/3.0 MiB, ")


def test_nothing_is_shown_when_progress_is_off_or_there_is_nothing_to_do() -> None:
    off, idle = Terminal(), io.StringIO()
    with ProgressDisplay(busy_stats(), enabled=False, stream=off):
        time.sleep(0.2)
    with ProgressDisplay(Stats(), enabled=True, stream=idle):
        pass
    assert off.getvalue() == "" and idle.getvalue() == ""
