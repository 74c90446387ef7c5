"""Group work that many requests ask for at once (a group commit): while one batch runs, the next gathers.

Many small uploads arriving together each need their record committed (on PostgreSQL a commit waits for
its log to reach the disk); committing all of them in one transaction costs little more than one. A batch
is whatever is waiting when the previous one ends (and what arrives in the same turn of the event loop), so
a lone request waits for nothing, and the busier the server, the larger the batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``await batcher(item)``: ``run`` is called with lists of items, one list at a time, and answers one
    result (or exception) per item, in order."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]]) -> None:
        self._run = run
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Future[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # the items ready in this turn of the loop join the batch
                batch, self._pending = self._pending, []
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # the whole batch failed
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._task = None
