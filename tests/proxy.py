"""A real HTTP proxy on 127.0.0.1 between a client and `fusionsync serve`, for observing and delaying traffic."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.background import BackgroundServer, Cleanup

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Observed:
    """What the proxy saw: requests per path kind and the most that were in flight at once."""

    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)


class Proxy(BackgroundServer):
    """Forwards every request to ``upstream``; requests for which ``watch(method, path)`` holds are
    counted as in flight, delayed by ``delay`` seconds, and the first ``refuse`` of them refused
    (or, ``silent``, never answered: held until the proxy stops)."""

    def __init__(
        self,
        upstream: str,
        watch: Callable[[str, str], bool],
        delay: float = 0.0,
        refuse: int = 0,
        status: int = 503,
        silent: bool = False,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.watch = watch
        self.delay = delay
        self.refuse = refuse  # answer the first `refuse` watched requests with `status` and Retry-After
        self.status = status
        self.silent = silent
        self.seen = Observed()
        super().__init__()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> Cleanup:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        stop_serving = await self._serve_app(app)

        async def cleanup() -> None:
            self._closing.set()
            await self._session.close()
            await stop_serving()

        return cleanup

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
            if watched and self.silent:
                await self._closing.wait()
                return web.Response(status=503)
            if watched and self.delay:
                await asyncio.sleep(self.delay)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
            body = await request.read()
            data = io.BytesIO(body) if len(body) > 2**20 else body or None  # aiohttp warns of large bytes bodies
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=data
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
