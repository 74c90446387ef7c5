"""What a pass did: live statistics (pulled by the progress display) and the final report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

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
    path: str
    reason: str


@dataclass
class SyncReport:
    """The outcome of one sync pass (``fsync(once=True)`` returns it; the CLI prints it)."""

    direction: str
    dry_run: bool = False
    planned: dict[str, int] = field(default_factory=dict)
    transferred: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: int = 0
    conflicts: list[Failure] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0
    hashed: int = 0
    duration: float = 0.0
    interrupted: bool = False
    plan_lines: list[str] = field(default_factory=list)

    @classmethod
    def from_plan(cls, plan: Plan, dry_run: bool) -> SyncReport:
        report = cls(plan.direction, dry_run=dry_run, planned=plan.counts())
        report.skipped = sum(1 for a in plan.actions if a.op is Op.EQUAL)
        report.conflicts = [Failure(a.path, a.note) for a in plan.conflicts]
        report.plan_lines = [f"{a.op.value} {a.path}" for a in plan.actions if a.op is not Op.EQUAL]
        return report

    @property
    def ok(self) -> bool:
        return not self.failed and not self.conflicts and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        """One line for people."""
        verb = "would transfer" if self.dry_run else "transferred"
        items = [f"{verb} {len(self.transferred)} files ({_size(self.bytes)})"]
        if self.deleted:
            items.append(f"deleted {len(self.deleted)}")
        items.append(f"{self.skipped} already in sync")
        if self.conflicts:
            items.append(f"{len(self.conflicts)} kept because changed locally")
        if self.failed:
            items.append(f"{len(self.failed)} failed")
        if self.interrupted:
            items.append("interrupted")
        return f"{self.direction}: " + ", ".join(items) + f" in {self.duration:.2f} s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
