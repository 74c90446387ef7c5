"""PostgreSQL behind the metadata store, through asyncpg (chosen by ``bench/pg_driver.py``): a connection pool,
statements prepared once per connection, and LISTEN/NOTIFY to tell every worker process of new events."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg

POOL_SIZE = 16
CHANNEL = "fusionsync_events"
_PLACEHOLDER = re.compile(r"\?")
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7215061013)"


def numbered(sql: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006  (a cache on purpose)
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    done = _cache.get(sql)
    if done is None:
        count = iter(range(1, 1000))
        done = _cache[sql] = _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)
    return done


def _count(status: str) -> int:
    """Rows changed, from a command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Conn:
    """Statements on one connection (a transaction's)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def one(self, sql: str, *args: Any) -> Any:
        row = await self._conn.fetchrow(numbered(sql), *args)
        return None if row is None else tuple(row)

    async def all(self, sql: str, *args: Any) -> list[Any]:
        return [tuple(r) for r in await self._conn.fetch(numbered(sql), *args)]

    async def run(self, sql: str, *args: Any) -> int:
        return _count(await self._conn.execute(numbered(sql), *args))

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(numbered(sql), list(rows))


class PostgresDatabase:
    """A pool of connections to one database."""

    migration_lock = MIGRATION_LOCK

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self._url = url
        self._listener: Any = None
        self._heard = asyncio.Event()

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, command_timeout=60)
        return cls(pool, url)

    def json_field(self, column: str, key: str) -> str:
        return f"(({column})::jsonb ->> '{key}')"

    async def one(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as conn:
            return await _Conn(conn).one(sql, *args)

    async def all(self, sql: str, *args: Any) -> list[Any]:
        async with self._pool.acquire() as conn:
            return await _Conn(conn).all(sql, *args)

    async def run(self, sql: str, *args: Any) -> int:
        async with self._pool.acquire() as conn:
            return await _Conn(conn).run(sql, *args)

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._pool.acquire() as conn:
            await _Conn(conn).many(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _Conn(conn)

    async def close(self) -> None:
        if self._listener is not None:
            with suppress(Exception):
                await self._listener.close()
        await self._pool.close()

    async def changed(self, within: float) -> None:
        if self._listener is None:  # one connection per process listens, from the first subscriber on
            self._listener = await asyncpg.connect(self._url)
            await self._listener.add_listener(CHANNEL, lambda *_: self._heard.set())
        with suppress(TimeoutError):
            await asyncio.wait_for(self._heard.wait(), within)
        self._heard.clear()  # what was heard until now, the caller reads next

    def announce(self) -> str:
        return f"SELECT pg_notify('{CHANNEL}', '')"
