"""SQL databases behind the metadata store: one small async interface, SQLite here, PostgreSQL in ``db_postgres``.

Statements are written once, with ``?`` placeholders and SQL both databases speak (``ON CONFLICT``,
``RETURNING``); the PostgreSQL side numbers the placeholders. The schema is created and migrated by the
server itself: ``schema_version`` holds how many of ``schema.MIGRATIONS`` have been applied.

SQLite calls are short and run on the event loop thread (a thread hand-off would cost more than the call);
several worker processes share the file (WAL mode; a writer waits for the lock up to ``BUSY_MS``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

BUSY_MS = 10_000
POLL_SECONDS = 0.1
"""How often a SQLite subscriber looks for a commit by another process."""


class Tx(Protocol):
    """Statements, inside a transaction or each on its own."""

    async def one(self, sql: str, *args: Any) -> Any: ...
    async def all(self, sql: str, *args: Any) -> list[Any]: ...
    async def run(self, sql: str, *args: Any) -> int:
        """Execute; the number of rows changed."""
        ...

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Database(Tx, Protocol):
    migration_lock: str
    """A statement that makes servers starting together migrate one at a time ("" when not needed)."""

    def json_field(self, column: str, key: str) -> str:
        """SQL for the text of field ``key`` of the JSON object in ``column`` (a trusted identifier)."""
        ...

    def transaction(self) -> Any:
        """``async with db.transaction() as tx:`` — committed at the end, rolled back on an exception."""
        ...

    async def close(self) -> None: ...

    async def changed(self, within: float) -> None:
        """Return when another process may have committed, or after ``within`` seconds."""
        ...

    def announce(self) -> str:
        """A statement to run in a transaction that other processes must hear about (``changed``)."""
        ...


class SqliteDatabase:
    """One SQLite connection, used from the event loop."""

    migration_lock = ""  # BEGIN IMMEDIATE already admits one writer at a time

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = asyncio.Lock()
        self._version: int | None = None

    def json_field(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    async def one(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()

    async def all(self, sql: str, *args: Any) -> list[Any]:
        return self._db.execute(sql, args).fetchall()

    async def run(self, sql: str, *args: Any) -> int:
        return self._db.execute(sql, args).rowcount

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteDatabase]:
        async with self._lock:  # a transaction whose body awaits something must not interleave with another
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def close(self) -> None:
        self._db.close()

    async def changed(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]  # moves when another connection commits
            if version != self._version or loop.time() >= deadline:
                self._version = version
                return
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))

    def announce(self) -> str:
        return ""


async def migrate(db: Database, migrations: list[list[str]]) -> None:
    """Apply the migrations the database has not had yet, each in a transaction of its own."""
    for number, statements in enumerate(migrations, start=1):
        async with db.transaction() as tx:
            if db.migration_lock:
                await tx.one(db.migration_lock)
            await tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await tx.one("SELECT version FROM schema_version")
            version = 0 if row is None else int(row[0])
            if version >= number:
                continue
            for statement in statements:
                await tx.run(statement)
            if row is None:
                await tx.run("INSERT INTO schema_version(version) VALUES (?)", number)
            else:
                await tx.run("UPDATE schema_version SET version=?", number)


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL (``sqlite:////abs/path`` or ``sqlite:///rel/path``)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ValueError(f"{url!r} is not a sqlite:///PATH URL")
    return Path(unquote(parts.path[1:]))


async def open_database(url: str) -> Database:
    """The database a ``--metadata`` URL names (schema not yet migrated)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(path)
    if scheme in ("postgresql", "postgres"):
        try:
            from fusionsync.server.db_postgres import PostgresDatabase
        except ImportError as exc:
            raise ValueError("PostgreSQL metadata needs asyncpg: pip install 'fusionsync[postgresql]'") from exc

        return await PostgresDatabase.connect(url)
    raise ValueError(f"--metadata {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
