"""A test server run on its own event loop in a daemon thread, for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Self

from aiohttp import web

Cleanup = Callable[[], Awaitable[None]]


class BackgroundServer:
    """Subclasses implement ``_serve``: bind on 127.0.0.1, set ``port``, return how to clean up.

    Entering the block waits until the server is bound; leaving it stops the server and its loop.
    """

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        cleanup = await self._serve()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await cleanup()

    async def _serve(self) -> Cleanup:
        raise NotImplementedError

    async def _serve_app(self, app: web.Application) -> Cleanup:
        """Serve an aiohttp application on a free port."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner.cleanup
