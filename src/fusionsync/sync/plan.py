"""The plan of a sync pass: a pure function of the two states and the options.

Actions are tagged like rclone's check output: ``+`` missing at the destination,
``*`` differs, ``-`` missing at the source (deleted only when mirroring), ``=`` equal,
``!`` cannot be done safely (a local change that would be lost, an ambiguous name).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Literal, NamedTuple

from fusionsync.catalog.layout import DistKey, local_relative_path

Direction = Literal["upload", "download"]


class Op(StrEnum):
    NEW = "+"
    CHANGED = "*"
    DELETE = "-"
    EQUAL = "="
    CONFLICT = "!"


class RemoteEntry(NamedTuple):
    """A distribution as the change listing reports it."""

    key: DistKey
    size: int
    digest: str
    modified: str = ""


class LocalEntry(NamedTuple):
    """A local file: where it is, what it hashes to, and what it hashed to when last synced."""

    path: str
    size: int
    digest: str
    key: DistKey | None = None
    synced_digest: str | None = None
    mtime: float = 0.0

    @property
    def changed_since_sync(self) -> bool:
        """True when the file is not the one a previous sync wrote or sent (or was never synced)."""
        return self.synced_digest != self.digest


class Action(NamedTuple):
    """One thing to do (or, for ``=`` and ``!``, not to do) about one distribution."""

    op: Op
    key: DistKey
    path: str
    size: int
    digest: str = ""
    backup: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    direction: Direction
    actions: tuple[Action, ...]

    @property
    def transfers(self) -> list[Action]:
        return [a for a in self.actions if a.op in (Op.NEW, Op.CHANGED)]

    @property
    def deletes(self) -> list[Action]:
        return [a for a in self.actions if a.op is Op.DELETE]

    @property
    def conflicts(self) -> list[Action]:
        return [a for a in self.actions if a.op is Op.CONFLICT]

    def counts(self) -> dict[str, int]:
        return dict(Counter(a.op.value for a in self.actions))


def plan(
    direction: Direction,
    local: dict[str, LocalEntry],
    remote: dict[DistKey, RemoteEntry],
    *,
    flatten: bool = False,
    delete: bool = False,
    backup: bool = False,
) -> Plan:
    """What a pass must do to make the destination match the source."""
    if direction == "download":
        actions = _plan_download(local, remote, flatten, delete, backup)
    else:
        actions = _plan_upload(local, remote, delete)
    return Plan(direction, tuple(sorted(actions, key=attrgetter("path"))))


KEPT = "changed locally since the last sync; kept (give a backup folder to keep a copy and take the remote one)"


def _plan_download(
    local: dict[str, LocalEntry], remote: dict[DistKey, RemoteEntry], flatten: bool, delete: bool, backup: bool
) -> list[Action]:
    actions: list[Action] = []
    targets: set[str] = set()
    for key, entry in remote.items():
        path = local_relative_path(key, flatten)
        targets.add(path)
        have = local.get(path)
        if have is None:
            actions.append(Action(Op.NEW, key, path, entry.size, entry.digest))
        elif have.digest == entry.digest:
            actions.append(Action(Op.EQUAL, key, path, entry.size, entry.digest))
        elif not have.changed_since_sync:
            actions.append(Action(Op.CHANGED, key, path, entry.size, entry.digest))
        elif backup:
            actions.append(Action(Op.CHANGED, key, path, entry.size, entry.digest, backup=True))
        else:
            actions.append(Action(Op.CONFLICT, key, path, entry.size, entry.digest, note=KEPT))
    if delete:
        for path, have in local.items():
            if path in targets or have.key is None:
                continue
            if not have.changed_since_sync or backup:
                actions.append(
                    Action(Op.DELETE, have.key, path, have.size, have.digest, backup=have.changed_since_sync)
                )
            else:
                actions.append(Action(Op.CONFLICT, have.key, path, have.size, note=KEPT))
    return actions


def _plan_upload(local: dict[str, LocalEntry], remote: dict[DistKey, RemoteEntry], delete: bool) -> list[Action]:
    actions: list[Action] = []
    by_key: dict[DistKey, LocalEntry] = {}
    several: dict[DistKey, list[LocalEntry]] = {}
    for entry in local.values():
        if entry.key is not None:
            first = by_key.setdefault(entry.key, entry)
            if first is not entry:
                several.setdefault(entry.key, [first]).append(entry)
    for key, entries in several.items():
        others = ", ".join(sorted(e.path for e in entries))
        note = f"several local files are the same distribution ({others}); rename all but one"
        actions.extend(Action(Op.CONFLICT, key, e.path, e.size, note=note) for e in entries)
    for key, have in by_key.items():
        if key in several:
            continue
        there = remote.get(key)
        if there is None:
            actions.append(Action(Op.NEW, key, have.path, have.size, have.digest))
        elif there.digest == have.digest:
            actions.append(Action(Op.EQUAL, key, have.path, have.size, have.digest))
        else:
            actions.append(Action(Op.CHANGED, key, have.path, have.size, have.digest))
    if delete:
        for key, there in remote.items():
            if key not in by_key:
                actions.append(Action(Op.DELETE, key, key.remote_path, there.size, there.digest))
    return actions
