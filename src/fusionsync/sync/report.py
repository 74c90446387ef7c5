"""What a pass did: live statistics (pulled by the progress display) and the final report."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fusionsync.errors import EXIT_FAILED, EXIT_OK, signal_exit_code
from fusionsync.sync.plan import Op, Plan


@dataclass
class Stats:
    """Counters the executor updates and a display reads; nothing here prints."""

    files_total: int = 0
    files_done: int = 0
    files_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    active: dict[str, list[int]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0

    def begin(self, files: int, size: int) -> None:
        self.files_total, self.bytes_total = files, size
        self.files_done = self.files_failed = self.bytes_done = 0
        self.active.clear()
        self.started = self.clock()

    def open(self, name: str, size: int) -> None:
        self.active[name] = [0, size]

    def advance(self, name: str, nbytes: int) -> None:
        self.bytes_done += nbytes
        slot = self.active.get(name)
        if slot is not None:
            slot[0] += nbytes

    def close(self, name: str, ok: bool) -> None:
        slot = self.active.pop(name, None)
        if ok:
            self.files_done += 1
            if slot is not None and slot[0] < slot[1]:  # a transfer the callback did not count in full
                self.bytes_done += slot[1] - slot[0]
        else:
            self.files_failed += 1
            if slot is not None:
                self.bytes_done -= slot[0]

    @property
    def elapsed(self) -> float:
        return max(self.clock() - self.started, 1e-9)

    @property
    def speed(self) -> float:
        return self.bytes_done / self.elapsed


@dataclass
class Failure:
    """A file that failed or was kept as a conflict, and why (one sentence)."""

    path: str
    reason: str


@dataclass
class Backup:
    """A local file moved into the backup folder before it was replaced or deleted."""

    path: str
    backup: str


@dataclass
class SyncReport:
    """The outcome of one sync pass: [`fsync`][fusionsync.fsync] returns it, the command prints it.

    Paths are relative to the local root, as ``{catalog}/{dataset}/{series}/{file}``.

    Attributes:
        direction: ``"upload"`` or ``"download"``.
        dry_run: The pass only planned: ``transferred``, ``deleted`` and ``bytes`` say what it
            would have done.
        planned: How many files the plan holds of each tag: ``+`` missing at the destination,
            ``*`` different, ``-`` to delete, ``=`` equal, ``!`` a conflict.
        transferred: The files downloaded or uploaded.
        deleted: The files deleted at the destination (``delete=True``).
        skipped: How many files were in sync already.
        conflicts: The files kept because they changed on the destination since the last sync
            (each with the reason); reported again by each pass while they last.
        failed: The files whose transfer or delete failed (each with the reason).
        backups: The local files moved into ``backup_dir`` (``path`` and ``backup``).
        warnings: Things skipped and why: a file not named for its dataset, a symbolic link…
        bytes: Bytes transferred.
        hashed: How many local files were hashed (the others' digests came from the hash cache).
        duration: Seconds the pass took.
        interrupted: A signal stopped the pass: transfers in flight were cancelled, their
            temporaries removed, and no delete ran.
        interrupted_by: ``"SIGINT"`` or ``"SIGTERM"`` when ``interrupted``.
        plan_lines: The plan as lines of a tag and a path (``+ common/FX/…``), ``=`` left out:
            what ``fusionsync check`` prints.
    """

    direction: str
    dry_run: bool = False
    planned: dict[str, int] = field(default_factory=dict)
    transferred: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: int = 0
    conflicts: list[Failure] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    backups: list[Backup] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0
    hashed: int = 0
    duration: float = 0.0
    interrupted: bool = False
    interrupted_by: str | None = None
    plan_lines: list[str] = field(default_factory=list)

    @classmethod
    def from_plan(cls, plan: Plan, dry_run: bool) -> SyncReport:
        """The report of a pass about to carry out ``plan`` (its counts, conflicts and lines)."""
        report = cls(plan.direction, dry_run=dry_run, planned=plan.counts())
        report.skipped = sum(1 for a in plan.actions if a.op is Op.EQUAL)
        report.conflicts = [Failure(a.path, a.note) for a in plan.conflicts]
        report.plan_lines = [
            f"{a.op.value} {a.path}" + (f"  ({a.note})" if a.note and a.op is not Op.CONFLICT else "")
            for a in plan.actions
            if a.op is not Op.EQUAL
        ]
        return report

    @property
    def ok(self) -> bool:
        """Nothing failed, no conflict was kept, and no signal stopped the pass."""
        return not self.failed and not self.conflicts and not self.interrupted

    @property
    def exit_code(self) -> int:
        """The command's exit status for this report: 0 in sync, 1 failed or conflicts, 130/143 stopped."""
        if self.interrupted and self.interrupted_by:
            return signal_exit_code(getattr(signal, self.interrupted_by))
        return EXIT_OK if self.ok else EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``--json`` prints), with ``ok``."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        """One line for people: ``download: transferred 2 files (1.2 MiB), 5 already in sync in 0.31 s``."""
        verb = "would transfer" if self.dry_run else "transferred"
        items = [f"{verb} {len(self.transferred)} files ({_size(self.bytes)})"]
        if self.deleted:
            items.append(f"deleted {len(self.deleted)}")
        if self.backups:
            items.append(f"{len(self.backups)} backed up")
        items.append(f"{self.skipped} already in sync")
        if self.conflicts:
            items.append(f"{len(self.conflicts)} conflicts kept")
        if self.failed:
            items.append(f"{len(self.failed)} failed")
        if self.interrupted:
            items.append(f"interrupted by {self.interrupted_by}" if self.interrupted_by else "interrupted")
        return f"{self.direction}: " + ", ".join(items) + f" in {self.duration:.2f} s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
