"""The change-event log, in the metadata store (``meta.SqlMetaStore``); free of aiohttp.

An event is appended in the transaction that makes the change, numbered from one counter row whose lock
makes the numbers follow the order of commits (a reader that has seen number N never finds a smaller one
later). Subscribers of this process are woken at once after a commit here; those of other processes by the
database (PostgreSQL: LISTEN/NOTIFY; SQLite: its ``data_version``, polled while someone waits).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from fusionsync.server.db import Database, Tx
from fusionsync.server.store import Distribution, now_iso

KEEP = 10_000
"""Events kept for subscribers that reconnect (older ones are trimmed by the janitor)."""
WATCH_SECONDS = 1.0


class EventLog:
    """Appends events and lets subscribers wait for them."""

    db: Database
    log_id: str

    def __init__(self) -> None:
        self._news = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self.closing = False

    async def _append_events(self, tx: Tx, events: list[tuple[str, Distribution]]) -> None:
        if not events:
            return
        (last,) = await tx.one("UPDATE counters SET value = value + ? WHERE name='events' RETURNING value", len(events))
        stamp = now_iso()
        rows = []
        for seq, (kind, dist) in enumerate(events, start=int(last) - len(events) + 1):
            meta: dict[str, Any] = {
                "catalog": dist.catalog,
                "dataset": dist.dataset,
                "series": dist.series,
                "format": dist.format,
            }
            if kind != "DistributionDeleted":
                meta |= {"size": dist.size, "digest": dist.digest}
            body = {"id": f"{self.log_id}-{seq}", "type": kind, "timestamp": stamp, "catalog": dist.catalog}
            rows.append((seq, dist.catalog, msgspec.json.encode({**body, "metaData": meta}).decode()))
        await tx.many("INSERT INTO events(seq, catalog, body) VALUES (?, ?, ?)", rows)
        if announce := self.db.announce():
            await tx.one(announce)

    def _published(self) -> None:
        """Wake this process's subscribers (after a commit that logged events, or to end their streams)."""
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def events_after(self, catalog: str, seq: int) -> list[tuple[int, bytes]]:
        sql = "SELECT seq, body FROM events WHERE catalog=? AND seq > ? ORDER BY seq"
        return [(int(s), sse(f"{self.log_id}-{s}", body)) for s, body in await self.db.all(sql, catalog, seq)]

    async def last_event(self) -> tuple[int, int]:
        (newest,) = await self.db.one("SELECT value FROM counters WHERE name='events'")
        (oldest,) = await self.db.one("SELECT MIN(seq) FROM events")
        return (int(newest) + 1 if oldest is None else int(oldest)), int(newest)

    def news(self) -> asyncio.Event:
        """Set once events newer than what a read made after this call saw may exist (from any process)."""
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
        return self._news

    async def _watch(self) -> None:
        """Wake this process's subscribers when another process may have logged events."""
        while not self.closing:
            await self.db.changed(WATCH_SECONDS)
            self._published()

    async def trim_events(self, keep: int = KEEP) -> None:
        await self.db.run("DELETE FROM events WHERE seq <= (SELECT value FROM counters WHERE name='events') - ?", keep)

    async def close_subscriptions(self) -> None:
        """End every subscription (the server is shutting down: open streams must not hold it up)."""
        self.closing = True
        self._published()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher


def sse(event_id: str | None, body: str | bytes) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    data = body.encode() if isinstance(body, str) else body
    return head.encode() + b"data: " + data + b"\n\n"


def notice(kind: str, catalog: str) -> bytes:
    return sse(None, msgspec.json.encode({"id": "", "type": kind, "timestamp": now_iso(), "catalog": catalog}))
