"""HTTP for the Fusion client: one connection pool, authentication, retries, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from fusionsync.client.credentials import Credentials, TokenCache
from fusionsync.client.h1 import Answer, SmallGets, Unsupported
from fusionsync.client.net import NetPolicy
from fusionsync.client.wire import Retryable, status_error
from fusionsync.errors import APIError, AuthError, FusionSyncError, TransferError

__all__ = ["Http", "Retryable", "parse_json"]

log = logging.getLogger("fusionsync")
T = TypeVar("T")
NEXT_TOKEN = "x-jpmc-next-token"
FAST_PATH_VARIABLE = "FUSIONSYNC_FAST_PATH"
"""Set to 0 to send every request through aiohttp (no lean small-GET connections)."""


class Http:
    """Requests to ``{root_url}catalogs/…`` with tokens attached and bounded retries."""

    def __init__(
        self,
        creds: Credentials,
        root_url: str,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        retry_budget: float = 120.0,
        connect_timeout: float = 30.0,
        read_timeout: float = 120.0,
        ca_bundle: str | None = None,
        fast_path: bool | None = None,
        max_parts: int = 8,
    ) -> None:
        self.root_url = root_url if root_url.endswith("/") else root_url + "/"
        self.policy = NetPolicy(creds.proxies, ca_bundle)
        self.tokens = TokenCache(creds, self.policy)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_budget = retry_budget
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self.proxy, self.proxy_headers = self.policy.route(self.root_url)
        self.max_parts = max_parts
        self._parts: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if fast_path is None:
            fast_path = os.environ.get(FAST_PATH_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")
        # Small GETs go on lean connections, under the same proxy and TLS policy as aiohttp's.
        self.fast_path = fast_path
        self._small = SmallGets(self.root_url, connect_timeout, read_timeout, self.policy) if fast_path else None
        self._small_prefix = urlsplit(self.root_url).path + "catalogs/"

    def url(self, path: str) -> str:
        return f"{self.root_url}catalogs/{path}" if path else f"{self.root_url}catalogs/"

    async def session(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use in the running loop (again if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:  # e.g. asynchronous=True across asyncio.run()s
            if not self._session.closed and self._session.connector is not None:
                with contextlib.suppress(Exception):
                    self._session.connector._close()
            self._session = None
            self._parts = None
            self.tokens.rebind()
        if self._session is None or self._session.closed:
            ssl_context = self.policy.ssl_context()
            connector = aiohttp.TCPConnector(limit=128, limit_per_host=128, keepalive_timeout=60, ssl=ssl_context)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, headers={"Accept-Encoding": "identity"}
            )
            self._loop = loop
        return self._session

    def parts_gate(self) -> asyncio.Semaphore:
        """Bounds the upload parts in flight across every upload of this client (so memory stays bounded
        however many files are sent at once)."""
        if self._parts is None or self._loop is not asyncio.get_running_loop():
            self._parts = asyncio.Semaphore(self.max_parts)
        return self._parts

    async def close(self) -> None:
        if self._small is not None:
            self._small.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def close_now(self) -> None:
        """Close the sockets directly, from outside the loop (which is gone or not running)."""
        if self._small is not None:
            self._small.close()
        if self._session is not None and not self._session.closed and self._session.connector is not None:
            self._session.connector._close()

    @property
    def connected(self) -> bool:
        """Whether connections may be open."""
        small = self._small is not None and self._small.idle > 0
        return small or (self._session is not None and not self._session.closed)

    async def auth_headers(self, path: str) -> dict[str, str]:
        session = await self.session()
        headers = {"Authorization": f"Bearer {await self.tokens.api_token(session)}"}
        if self.tokens.creds.fusion_e2e:
            headers["fusion-e2e"] = self.tokens.creds.fusion_e2e
        parts = path.split("?")[0].split("/")
        if "distributions" in parts and len(parts) > 2 and parts[1] == "datasets":
            catalog, dataset = parts[0], parts[2]
            url = self.url(f"{catalog}/datasets/{dataset}/authorize/token")
            headers["Fusion-Authorization"] = f"Bearer {await self.tokens.fusion_token(session, url, catalog, dataset)}"
        return headers

    async def retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, retrying connection errors, 429 and 5xx with backoff."""
        started = time.monotonic()
        refreshed = False
        for tries in range(self.retries + 1):
            try:
                return await attempt()
            except AuthError:
                if refreshed:
                    raise
                refreshed = True  # a token may have expired or been revoked: fetch new ones, once
                self.tokens.invalidate()
                continue
            except FusionSyncError:
                raise
            except aiohttp.ClientConnectorCertificateError as exc:
                raise self.policy.untrusted(exc.host, exc.port, exc.certificate_error) from exc
            except (TimeoutError, Retryable, aiohttp.ClientError, ConnectionError) as exc:
                delay = min(self.max_backoff, self.backoff * 2**tries) * random.uniform(0.5, 1.0)
                if isinstance(exc, Retryable) and exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), self.max_backoff * 6)
                spent = time.monotonic() - started
                if tries == self.retries or spent + delay > self.retry_budget:
                    raise TransferError(f"{what}: gave up after {tries + 1} tries: {_describe(exc)}") from exc
                log.info("%s: %s; retrying in %.2f s", what, _describe(exc), delay)
                await asyncio.sleep(delay)
        raise TransferError(f"{what}: access refused even with fresh tokens")

    async def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[bytes, Any]:
        """One request, retried; returns the body and the response headers."""

        async def attempt() -> tuple[bytes, Any]:
            session = await self.session()
            all_headers = {**(await self.auth_headers(path)), **(headers or {})}
            async with session.request(
                method,
                self.url(path),
                headers=all_headers,
                data=data,
                json=json_body,
                params=params,
                proxy=self.proxy,
                proxy_headers=self.proxy_headers,
            ) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise status_error(resp.status, what, body, resp.headers)
                return body, resp.headers

        return await self.retrying(what, attempt)

    async def json(self, path: str, what: str, **kw: Any) -> Any:
        body, _ = await self.call("GET", path, what, **kw)
        return parse_json(body, what)

    async def collection(self, path: str, what: str) -> tuple[dict[str, Any], list[Any]]:
        """A resource and all its ``resources``, following ``x-jpmc-next-token`` pages."""
        first: dict[str, Any] | None = None
        items: list[Any] = []
        token: str | None = None
        while True:
            body, headers = await self.call("GET", path, what, headers={NEXT_TOKEN: token} if token else None)
            page = parse_json(body, what)
            if not isinstance(page, dict):
                raise APIError(f"{what}: the answer is not a JSON object")
            resources = page.get("resources", [])
            if not isinstance(resources, list):
                raise APIError(f"{what}: 'resources' is not a list")
            first = first or page
            items.extend(resources)
            token = headers.get(NEXT_TOKEN)
            if not token:
                return first, items

    async def get_small(self, path: str, what: str, max_body: int) -> Answer | None:
        """GET ``path`` whole on a lean connection (no retry here); None when that cannot be done.

        A status of 400 or more raises as ``stream`` does. None (the caller then uses ``stream``) when
        the fast path is off, the path needs encoding, the answer is a redirect or one the lean client
        leaves out.
        """
        if self._small is None:
            return None
        headers = await self.auth_headers(path)
        target = self._small_prefix + path
        try:
            answer = await self._small.get(target, headers, max_body)
        except Unsupported as exc:
            if exc.lasting:  # the server answers in a way the lean client leaves out: stop asking it
                log.info("%s: %s; small downloads go through the general client from now on", what, exc)
                self._small = None
            return None
        if 300 <= answer.status < 400:  # a redirect: aiohttp follows it
            return None
        if answer.status >= 400:
            raise status_error(answer.status, what, answer.body, answer.headers)
        return answer

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, what: str, *, headers: dict[str, str] | None = None, params: Any = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response whose body the caller streams (no retry here: the caller retries the whole read)."""
        session = await self.session()
        all_headers = {**(await self.auth_headers(path)), **(headers or {})}
        async with session.request(
            method,
            self.url(path),
            headers=all_headers,
            params=params,
            proxy=self.proxy,
            proxy_headers=self.proxy_headers,
        ) as resp:
            if resp.status >= 300:
                raise status_error(resp.status, what, await resp.read(), resp.headers)
            yield resp


def parse_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise APIError(f"{what}: the answer is not valid JSON") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
