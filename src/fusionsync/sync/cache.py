"""The persistent hash cache: one SQLite file per local root, outside the synced tree.

A file is rehashed only when its size or modification time changed since it was last
hashed. The cache also remembers the digest each file had when a sync last wrote or
sent it, which is how a pass tells a local edit from a stale copy, and the multipart
upload operation each file is being sent in, so an interrupted upload resumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import IO, NamedTuple

from fusionsync.errors import LockedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL, digest TEXT NOT NULL,
    synced_digest TEXT);
CREATE TABLE IF NOT EXISTS uploads (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL, digest TEXT NOT NULL,
    remote TEXT NOT NULL, operation_id TEXT NOT NULL);
"""


def cache_dir() -> Path:
    """Where caches live: ``$FUSIONSYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/fusionsync``, else ``~/.cache``."""
    explicit = os.environ.get("FUSIONSYNC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fusionsync"


UploadRow = tuple[str, int, float, str, str, str]
"""A multipart upload in progress: path, size, mtime, digest (of the file as sent), remote path, operation."""


class CachedFile(NamedTuple):
    size: int
    mtime: float
    digest: str
    synced_digest: str | None


class HashCache:
    """Digests of the files under one local root, keyed by relative path, size and mtime."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Used from the engine's loop thread, one call at a time, after being opened on the caller's.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @classmethod
    def for_root(cls, root_id: str) -> HashCache:
        """The cache of the local root named ``root_id`` (protocol and absolute path)."""
        name = hashlib.sha256(root_id.encode()).hexdigest()[:24]
        return cls(cache_dir() / f"{name}.sqlite")

    @classmethod
    def in_memory(cls) -> HashCache:
        """A cache that lives as long as this object (a worker's, for the upload journals of one batch)."""
        return cls(Path(":memory:"))

    def close(self) -> None:
        self._db.close()

    def load(self) -> dict[str, CachedFile]:
        rows = self._db.execute("SELECT path, size, mtime, digest, synced_digest FROM files")
        return {p: CachedFile(s, m, d, sd) for p, s, m, d, sd in rows}

    def store(self, rows: Iterable[tuple[str, int, float, str]]) -> None:
        """Record freshly computed digests (keeping what was synced)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO files(path, size, mtime, digest) VALUES (?, ?, ?, ?) ON CONFLICT(path) "
                "DO UPDATE SET size=excluded.size, mtime=excluded.mtime, digest=excluded.digest",
                rows,
            )

    def mark_synced(self, rows: Iterable[tuple[str, int, float, str]]) -> None:
        """Record files that now hold what the other side has (path, size, mtime, digest)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO files(path, size, mtime, digest, synced_digest) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, "
                "digest=excluded.digest, synced_digest=excluded.synced_digest",
                ((p, s, m, d, d) for p, s, m, d in rows),
            )

    def forget(self, paths: Iterable[str]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            rows = [(p,) for p in paths]
            self._db.executemany("DELETE FROM files WHERE path=?", rows)
            self._db.executemany("DELETE FROM uploads WHERE path=?", rows)

    def uploads(self, paths: Iterable[str]) -> list[UploadRow]:
        """The multipart uploads recorded for these files (path, size, mtime, digest, remote, operation)."""
        wanted = list(paths)
        found: list[UploadRow] = []
        for start in range(0, len(wanted), 500):  # bounded by SQLite's number of parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.extend(self._db.execute(f"SELECT * FROM uploads WHERE path IN ({marks})", chunk))
        return found

    def set_uploads(self, paths: Iterable[str], rows: Iterable[UploadRow]) -> None:
        """Make the uploads recorded for ``paths`` exactly ``rows`` (what a worker's batch left)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM uploads WHERE path=?", ((p,) for p in paths))
            self._db.executemany("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)", rows)

    def journal(self, path: str, size: int, mtime: float, digest: str, remote: str) -> UploadJournal:
        """The upload journal of one local file as scanned (an operation recorded for other content,
        or for another distribution, is not continued)."""
        return UploadJournal(self._db, (path, size, mtime, digest, remote))


class UploadJournal:
    """Remembers the multipart operation a file's content is being uploaded in (see
    :class:`fusionsync.client.upload.UploadJournal`)."""

    def __init__(self, db: sqlite3.Connection, row: tuple[str, int, float, str, str]) -> None:
        self._db = db
        self._row = row

    def operation(self) -> str | None:
        found = self._db.execute(
            "SELECT operation_id FROM uploads WHERE path=? AND size=? AND mtime=? AND digest=? AND remote=?", self._row
        ).fetchone()
        return str(found[0]) if found else None

    def begin(self, operation_id: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO uploads(path, size, mtime, digest, remote, operation_id) VALUES (?, ?, ?, ?, ?, ?)",
            (*self._row, operation_id),
        )

    def end(self) -> None:
        self._db.execute("DELETE FROM uploads WHERE path=?", (self._row[0],))


class RootLock:
    """An exclusive lock per local root, so two syncs never interleave on one folder."""

    def __init__(self, cache_path: Path) -> None:
        self._path = cache_path.with_suffix(".lock")
        self._fh: IO[str] | None = None

    def acquire(self, what: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self._path, "a+")  # noqa: SIM115 (held open while locked)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise LockedError(f"another sync is already running on {what}") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
