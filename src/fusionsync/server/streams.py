"""Request bodies streamed into a store: chunks gathered into writes of about 1 MiB, handed to a thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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


async def pieces(chunks: Chunks, size: int, limit: int) -> AsyncIterator[bytes]:
    """The bytes of ``chunks`` gathered into pieces of at least ``size`` (the last one may be shorter), joined
    once and never sliced (a copy less per byte); ``TooLarge`` past ``limit``."""
    pending: list[bytes] = []
    buffered = total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise TooLarge(limit)
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= size:
            yield b"".join(pending)
            pending, buffered = [], 0
    if buffered:
        yield b"".join(pending)


async def receive(chunks: Chunks, write: Callable[[bytes], None], limit: int) -> int:
    """Stream ``chunks`` into ``write`` (a blocking call: writes of a whole piece run in a thread); the count."""
    loop = asyncio.get_running_loop()
    total = 0
    async for piece in pieces(chunks, FLUSH_BYTES, limit):
        total += len(piece)
        if len(piece) >= FLUSH_BYTES:
            await loop.run_in_executor(None, write, piece)
        else:  # the last, short piece: written at once
            write(piece)
    return total
