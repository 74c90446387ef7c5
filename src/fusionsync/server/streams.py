"""Request bodies streamed into a store: chunks gathered into writes of about 1 MiB, handed to a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from fusionsync.server.store import Chunks

FLUSH_BYTES = 2**20


class TooLarge(ValueError):
    """A body longer than it may be."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...


async def receive(chunks: Chunks, write: Callable[[bytes], None], limit: int) -> int:
    """Stream ``chunks`` into ``write`` (a blocking call: bulk writes run in a thread); the byte count."""
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    buffered = total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise TooLarge(limit)
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= FLUSH_BYTES:
            await loop.run_in_executor(None, write, b"".join(pending))
            pending.clear()
            buffered = 0
    if pending:
        write(b"".join(pending))
    return total
