"""The plan of a sync pass: a pure function of the two states and the options.

Actions are tagged like rclone's check output: ``+`` missing at the destination,
``*`` differs, ``-`` missing at the source (deleted only when mirroring), ``=`` equal,
``!`` cannot be done safely (a local or remote change that would be lost, an ambiguous name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Literal, NamedTuple

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.catalog.listing import format_time, parse_time

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
    vanished: Mapping[DistKey, str] | None = None,
) -> Plan:
    """What a pass must do to make the destination match the source.

    Nothing changed on the destination since the last sync is lost: a local edit (download) or a
    remote change (upload) is a conflict, or with ``backup`` (download) moved away first. A file
    never synced here is judged by time (:func:`adopt`). ``vanished`` holds the digest each
    distribution had when its local file, since removed, was last synced (upload deletes).
    """
    if direction == "download":
        actions = _plan_download(local, remote, flatten, delete, backup)
    else:
        actions = _plan_upload(local, remote, delete, vanished or {})
    return Plan(direction, tuple(sorted(actions, key=attrgetter("path"))))


KEPT = "changed locally since the last sync; kept (give a backup folder to keep a copy and take the remote one)"
UNSYNCED_GONE = "never synced here, and not on the server; kept (give a backup folder to move it away)"
TO_KEEP_BOTH = "download it first, with a backup folder to keep this copy"


def adopt(have: LocalEntry, there: RemoteEntry) -> tuple[bool | None, str]:
    """Which of a never-synced local file and the server's different version is newer, and why.

    True: the local file is newer; False: the server's version is; None: it cannot be told
    (no modification time from the server, or both within the same second, the listing's precision).
    """
    modified = parse_time(there.modified)
    sizes = f"{have.size:,} bytes here, {there.size:,} on the server"
    if modified is None:
        return None, f"never synced here, and the server gives no modification time to compare with ({sizes})"
    local, remote = format_time(have.mtime), format_time(modified)
    if have.mtime < modified:
        return False, f"never synced here, and older ({local}) than the server's version ({remote}; {sizes})"
    if have.mtime >= modified + 1:
        return True, f"never synced here, and modified ({local}) after the server's version ({remote}; {sizes})"
    return None, f"never synced here, and modified in the same second as the server's version ({remote}; {sizes})"


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
        elif have.synced_digest is None:
            newer, why = adopt(have, entry)
            if newer is False:  # a stale copy (an SDK mirror, a copied folder): take the server's
                note = f"{why}: replaced by it"
                actions.append(Action(Op.CHANGED, key, path, entry.size, entry.digest, backup=backup, note=note))
            elif backup:
                note = f"{why}: moved to the backup folder and replaced"
                actions.append(Action(Op.CHANGED, key, path, entry.size, entry.digest, backup=True, note=note))
            else:
                note = f"{why}; kept (give a backup folder to keep a copy and take the server's)"
                actions.append(Action(Op.CONFLICT, key, path, entry.size, entry.digest, note=note))
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
                note = UNSYNCED_GONE if have.synced_digest is None else KEPT
                actions.append(Action(Op.CONFLICT, have.key, path, have.size, note=note))
    return actions


def _plan_upload(
    local: dict[str, LocalEntry], remote: dict[DistKey, RemoteEntry], delete: bool, vanished: Mapping[DistKey, str]
) -> list[Action]:
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
        elif have.synced_digest is None:
            newer, why = adopt(have, there)
            if newer:
                actions.append(Action(Op.CHANGED, key, have.path, have.size, have.digest, note=f"{why}: sent"))
            else:
                note = f"{why}; the server's version is kept ({TO_KEEP_BOTH})"
                actions.append(Action(Op.CONFLICT, key, have.path, have.size, note=note))
        elif there.digest != have.synced_digest:  # someone else's version: never overwritten silently
            changed = "both here and on the server" if have.changed_since_sync else "on the server, not here,"
            note = f"changed {changed} since the last sync; the server's version is kept ({TO_KEEP_BOTH})"
            actions.append(Action(Op.CONFLICT, key, have.path, have.size, note=note))
        else:
            actions.append(Action(Op.CHANGED, key, have.path, have.size, have.digest))
    if delete:
        for key, there in remote.items():
            if key in by_key:
                continue
            synced = vanished.get(key)
            if synced is not None and synced != there.digest:
                note = "deleted here, but changed on the server since the last sync; the server's version is kept"
                actions.append(Action(Op.CONFLICT, key, key.remote_path, there.size, note=note))
            else:
                actions.append(Action(Op.DELETE, key, key.remote_path, there.size, there.digest))
    return actions
