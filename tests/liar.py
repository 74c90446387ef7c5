"""A hostile or broken Fusion server on 127.0.0.1: it answers what a test tells it to."""

from __future__ import annotations

import base64
import hashlib

from aiohttp import web

from tests.background import BackgroundServer, Cleanup


class LiarServer(BackgroundServer):
    """Answers tokens, a dataset, its change listing (``changes``: raw bytes) and any download (``payload``)."""

    def __init__(self, changes: bytes, dataset_meta: bytes = b'{"isRawData": false}', payload: bytes = b"evil") -> None:
        self.changes = changes
        self.dataset_meta = dataset_meta
        self.payload = payload
        super().__init__()

    @property
    def credentials(self) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.port}"
        return {
            "client_id": "x",
            "client_secret": "y",
            "auth_url": base + "/oauth2/token",
            "root_url": base + "/api/v1/",
        }

    async def _serve(self) -> Cleanup:
        app = web.Application()
        raw = lambda body: web.Response(body=body, content_type="application/json")  # noqa: E731

        async def changes(request: web.Request) -> web.Response:
            return raw(self.changes)

        async def dataset(request: web.Request) -> web.Response:
            return raw(self.dataset_meta)

        async def download(request: web.Request) -> web.Response:
            checksum = base64.b64encode(hashlib.sha256(self.payload).digest()).decode()
            return web.Response(body=self.payload, headers={"x-jpmc-checksum": checksum})

        async def give_token(request: web.Request) -> web.Response:
            return web.json_response({"access_token": "t", "expires_in": 3600})

        app.router.add_post("/oauth2/token", give_token)
        app.router.add_get("/api/v1/catalogs/{c}/datasets/changes", changes)
        app.router.add_get("/api/v1/catalogs/{c}/datasets/{d}/authorize/token", give_token)
        app.router.add_get("/api/v1/catalogs/{c}/datasets/{d}", dataset)
        app.router.add_get("/api/v1/{tail:.*}/operationType/download", download)
        return await self._serve_app(app)
