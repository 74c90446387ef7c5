"""The change events of one server process, kept in order for subscribers (see ``events``); free of aiohttp."""

from __future__ import annotations

import asyncio
import collections
import uuid
from typing import Any

import msgspec

from fusionsync.server.meta import Distribution, now_iso

KEEP = 10_000
CREATED, REPLACED, DELETED = "DistributionCreated", "DistributionReplaced", "DistributionDeleted"


class EventHub:
    """The events of this server process, in order; subscribers wait on it."""

    def __init__(self, keep: int = KEEP) -> None:
        self.boot = uuid.uuid4().hex[:8]
        self._seq = 0
        self._recent: collections.deque[tuple[int, str, bytes]] = collections.deque(maxlen=keep)
        self._waiters: set[asyncio.Queue[bool]] = set()

    def distribution_stored(self, dist: Distribution, replaced: bool) -> None:
        self._publish(REPLACED if replaced else CREATED, dist, size=dist.size, digest=dist.digest)

    def distribution_deleted(self, dist: Distribution) -> None:
        self._publish(DELETED, dist)

    def _publish(self, kind: str, dist: Distribution, **extra: Any) -> None:
        self._seq += 1
        event_id = f"{self.boot}-{self._seq}"
        meta = {"catalog": dist.catalog, "dataset": dist.dataset, "series": dist.series, "format": dist.format}
        body = {"id": event_id, "type": kind, "timestamp": now_iso(), "catalog": dist.catalog, "metaData": meta | extra}
        self._recent.append((self._seq, dist.catalog, sse(event_id, body)))
        for waiter in self._waiters:
            waiter.put_nowait(True)

    def since(self, catalog: str, last_id: str | None) -> tuple[list[bytes], bool, int]:
        """The messages after ``last_id`` for ``catalog``; whether they cover the gap; the last sequence number."""
        start, covered = self._seq, True
        if last_id:
            boot, _, seq = last_id.partition("-")
            oldest = self._recent[0][0] if self._recent else self._seq + 1
            if boot != self.boot or not seq.isdigit() or int(seq) > self._seq:
                start, covered = 0, False
            else:
                start = int(seq)
                covered = start + 1 >= oldest
        messages = [msg for seq_, cat, msg in self._recent if seq_ > start and cat == catalog]
        return messages, covered, self._seq

    def after(self, catalog: str, seq: int) -> tuple[list[bytes], int]:
        return [msg for s, cat, msg in self._recent if s > seq and cat == catalog], self._seq

    def waiter(self) -> asyncio.Queue[bool]:
        """A queue that gets True on every new event, False when the server shuts down."""
        queue: asyncio.Queue[bool] = asyncio.Queue()
        self._waiters.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[bool]) -> None:
        self._waiters.discard(queue)

    def close(self) -> None:
        """End every subscription (the server is shutting down: open streams must not hold it up)."""
        for waiter in self._waiters:
            waiter.put_nowait(False)


def sse(event_id: str | None, body: dict[str, Any]) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return head.encode() + b"data: " + msgspec.json.encode(body) + b"\n\n"


def notice(kind: str, catalog: str) -> bytes:
    return sse(None, {"id": "", "type": kind, "timestamp": now_iso(), "catalog": catalog})
