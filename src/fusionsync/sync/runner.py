"""Running passes: on the remote's event loop, once or in a watch loop, stopped cleanly by signals.

SIGINT (Ctrl+C) or SIGTERM, at any moment, sets the stop event: the pass in progress cancels its
transfers (their temporaries are removed), runs no delete and returns its report marked
``interrupted``; between passes (waiting for a change or for the interval), the loop ends at once
with an empty interrupted report. A second signal exits at once. Signals are only caught when the
sync runs in the main thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

from fusionsync.errors import EXIT_FAILED, FusionSyncError, signal_exit_code
from fusionsync.sync.execute import describe
from fusionsync.sync.report import Failure, SyncReport
from fusionsync.sync.wakeup import Wakeup

log = logging.getLogger("fusionsync")
T = TypeVar("T")
PassMaker = Callable[[], Coroutine[Any, Any, SyncReport]]
MAX_BACKOFF = 300.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Runner:
    """Runs coroutines on ``loop`` from the calling thread; within ``with runner:``, signals stop them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self.loop = loop
        self.stop = stop
        self.signal: int | None = None
        self.wakeup = Wakeup()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Runner:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.wakeup.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # the second one: at once
            os._exit(signal_exit_code(signum))
        self.signal = signum
        self.wakeup.interrupt()
        self.loop.call_soon_threadsafe(self.stop.set)

    @property
    def stopping(self) -> bool:
        return self.signal is not None

    def mark(self, report: SyncReport) -> SyncReport:
        """``report``, marked interrupted by the signal received (if one was)."""
        if self.signal is not None:
            report.interrupted = True
            report.interrupted_by = signal.Signals(self.signal).name
        return report

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        told = False
        while True:
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                if self.signal is not None and not told:
                    told = True
                    log.warning("interrupted: finishing cleanly (send the signal again to stop at once)")

    def sleep(self, seconds: float, not_before: float = 0.0) -> None:
        """Wait ``seconds``, or less: when a signal arrives, or once a change announced to :attr:`wakeup`
        has settled (but not before ``not_before`` seconds)."""
        self.wakeup.wait(seconds, lambda: self.stopping, not_before)


@dataclass
class PassNews:
    """What a pass brought that was not reported before (the watch loop reports each thing once)."""

    conflicts: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


OnPass = Callable[[SyncReport, PassNews], None]


class Announcer:
    """Logs each pass's new conflicts and warnings once, and hands passes that did something to ``on_pass``."""

    def __init__(self, on_pass: OnPass | None) -> None:
        self.on_pass = on_pass
        self._conflicts: set[tuple[str, str]] = set()
        self._warnings: set[str] = set()

    def __call__(self, report: SyncReport) -> None:
        news = PassNews(
            [c for c in report.conflicts if (c.path, c.reason) not in self._conflicts],
            [w for w in report.warnings if w not in self._warnings],
        )
        if not report.interrupted:  # an interrupted pass saw only part of the state
            self._conflicts = {(c.path, c.reason) for c in report.conflicts}
            self._warnings = set(report.warnings)
        for warning in news.warnings:
            log.warning(warning)
        for conflict in news.conflicts:
            log.warning("%s: %s", conflict.path, conflict.reason)
        did = report.transferred or report.deleted or report.failed or report.backups or report.interrupted
        if self.on_pass is not None and (did or news.conflicts or news.warnings):
            self.on_pass(report, news)


def run_once(runner: Runner, one_pass: PassMaker, announce: Announcer) -> SyncReport:
    report = runner.mark(runner.run(one_pass()))
    announce(report)
    return report


def watch(
    runner: Runner,
    one_pass: PassMaker,
    interval: float,
    announce: Announcer,
    direction: str,
) -> SyncReport:
    """Passes until a signal: soon after each change announced to the runner's wakeup (change events,
    file events), and ``interval`` seconds after the last pass in any case. Failures back off
    exponentially (a change then starts a pass no sooner than ``interval`` after the failed one).

    Returns the report of the pass the signal stopped (an empty one when it came between passes).
    An error that no later pass can mend (usage, credentials, a refused delete) ends the loop.
    """
    failures = 0
    while not runner.stopping:
        runner.wakeup.take()
        try:
            report = runner.mark(runner.run(one_pass()))
            announce(report)
            if report.interrupted:
                return report
            failures = failures + 1 if report.failed else 0
        except FusionSyncError as exc:
            if exc.exit_code != EXIT_FAILED:
                raise
            failures += 1
            log.error("sync pass failed: %s", describe(exc))
        except OSError as exc:
            failures += 1
            log.error("sync pass failed: %s", describe(exc))
        delay = interval if failures == 0 else min(MAX_BACKOFF, interval * 2 ** min(failures, 10))
        # After a failure, a change is no reason to try sooner than a poll would (no storm of failing passes).
        runner.sleep(delay * (1 + random.uniform(0, 0.1) if failures else 1), not_before=interval if failures else 0)
    report = runner.mark(SyncReport(direction))
    announce(report)
    return report
