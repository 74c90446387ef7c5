"""asyncpg against psycopg 3 for the metadata store: the calls the server makes most, through a pool.

Run: ``.venv/bin/python -m bench.pg_driver [--count 20000] [--tasks 64]`` (needs ``psycopg[binary]`` and
``psycopg-pool`` besides the dev extra). Starts PostgreSQL 16 (tests/pg.py) and times, per driver: point
reads by primary key one after another and from ``--tasks`` tasks at once, and small write transactions
(an update and an insert, as recording a distribution does) from ``--tasks`` tasks at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.pg import new_database, postgres_server

SETUP = [
    "CREATE TABLE items (id TEXT PRIMARY KEY, meta TEXT NOT NULL, n BIGINT NOT NULL)",
    "CREATE TABLE log (seq BIGSERIAL PRIMARY KEY, item TEXT NOT NULL)",
]


async def timed(label: str, count: int, tasks: int, one: Callable[[int], Awaitable[None]]) -> float:
    start = time.perf_counter()
    if tasks == 1:
        for i in range(count):
            await one(i)
    else:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                await one(i)

        await asyncio.gather(*(worker() for _ in range(tasks)))
    rate = count / (time.perf_counter() - start)
    print(f"  {label:42} {rate:9.0f} /s")
    return rate


async def with_asyncpg(url: str, count: int, tasks: int) -> dict[str, float]:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=4, max_size=16)

    async def read(i: int) -> None:
        async with pool.acquire() as conn:
            await conn.fetchrow("SELECT meta, n FROM items WHERE id=$1", f"i{i % 1000}")

    async def write(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE items SET n = n + 1 WHERE id=$1", f"i{i % 1000}")
            await conn.execute("INSERT INTO log(item) VALUES ($1)", f"i{i}")

    out = {
        "read, one at a time": await timed("read, one at a time", count, 1, read),
        "read, concurrent": await timed(f"read, {tasks} at once", count, tasks, read),
        "write transaction, concurrent": await timed(f"write transaction, {tasks} at once", count // 4, tasks, write),
    }
    await pool.close()
    return out


async def with_psycopg(url: str, count: int, tasks: int) -> dict[str, float]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=4, max_size=16, open=False)
    await pool.open()

    async def read(i: int) -> None:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT meta, n FROM items WHERE id=%s", (f"i{i % 1000}",))
            await cur.fetchone()

    async def write(i: int) -> None:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE items SET n = n + 1 WHERE id=%s", (f"i{i % 1000}",))
            await conn.execute("INSERT INTO log(item) VALUES (%s)", (f"i{i}",))

    out = {
        "read, one at a time": await timed("read, one at a time", count, 1, read),
        "read, concurrent": await timed(f"read, {tasks} at once", count, tasks, read),
        "write transaction, concurrent": await timed(f"write transaction, {tasks} at once", count // 4, tasks, write),
    }
    await pool.close()
    return out


async def prepare(url: str) -> None:
    import asyncpg

    conn: Any = await asyncpg.connect(url)
    for sql in SETUP:
        await conn.execute(sql)
    await conn.executemany("INSERT INTO items VALUES ($1, $2, 0)", [(f"i{i}", "{}" * 40) for i in range(1000)])
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    with postgres_server(durable=True) as server:
        results = {}
        for name, run in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)):
            url = new_database(server)
            asyncio.run(prepare(url))
            print(name)
            results[name] = asyncio.run(run(url, args.count, args.tasks))
        for key in results["asyncpg"]:
            ratio = results["asyncpg"][key] / results["psycopg"][key]
            print(f"{key:32} asyncpg/psycopg {ratio:.2f}x")


if __name__ == "__main__":
    main()
