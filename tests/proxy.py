"""A real HTTP proxy on 127.0.0.1 between a client and `fusionsync serve`, for observing and delaying traffic."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Observed:
    """What the proxy saw: requests per path kind and the most that were in flight at once."""

    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)


class Proxy:
    """Forwards every request to ``upstream``; requests for which ``watch(method, path)`` holds are
    counted as in flight, delayed by ``delay`` seconds, and the first ``refuse`` of them refused."""

    def __init__(
        self, upstream: str, watch: Callable[[str, str], bool], delay: float = 0.0, refuse: int = 0, status: int = 503
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.watch = watch
        self.delay = delay
        self.refuse = refuse  # answer the first `refuse` watched requests with `status` and Retry-After
        self.status = status
        self.seen = Observed()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await self._session.close()
        await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        watched = self.watch(request.method, request.path)
        self.seen.requests.append((request.method, request.path_qs))
        if watched:
            self.seen.in_flight += 1
            self.seen.max_in_flight = max(self.seen.max_in_flight, self.seen.in_flight)
        try:
            if watched and self.refuse > 0:
                self.refuse -= 1
                await request.read()
                return web.json_response({"message": "try later"}, status=self.status, headers={"Retry-After": "0.1"})
            if watched and self.delay:
                await asyncio.sleep(self.delay)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
            body = await request.read()
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body or None
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        response.headers[key] = value
                if "Content-Length" in upstream.headers:
                    response.content_length = int(upstream.headers["Content-Length"])
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(2**16):
                    await response.write(chunk)
                await response.write_eof()
                return response
        finally:
            if watched:
                self.seen.in_flight -= 1
