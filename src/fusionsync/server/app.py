"""The catalog server's aiohttp application: middleware, authentication, start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from fusionsync import __version__
from fusionsync.catalog.names import identifier_problem
from fusionsync.server import events, models, routes_attrs, routes_data, routes_datasets, routes_meta, routes_upload
from fusionsync.server.auth import API, FUSION, TokenAuthority, bearer, ensure_client, load_key
from fusionsync.server.blobs import BlobStore
from fusionsync.server.common import (
    MAX_JSON_BODY,
    STATE,
    ApiError,
    ServerConfig,
    State,
    error_response,
    json_response,
)
from fusionsync.server.eventlog import EventHub
from fusionsync.server.meta import MetaStore
from fusionsync.server.spec import FORM, Answer, Api, Op, document

log = logging.getLogger("fusionsync.server")
API_PREFIX = "/api/v1/"
TOKEN_PATH = "/oauth2/token"
OPEN_PATHS = {API_PREFIX + "openapi.json", TOKEN_PATH}
DISK_THREADS = 32
MAX_HEADER_LINE = 8190
"""Longest request line or header line, in bytes; longer ones are answered 400 before any routing."""
MAX_HEADERS = 128

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
api = Api()
DESCRIPTION = (
    "A Fusion-compatible catalog API: catalogs, products, datasets, series members and distributions, with the "
    "change listing, ranged downloads, verified multipart uploads, attributes, lineage and change events. Paths "
    "are relative to the server root. Collections are paged: an answer with an x-jpmc-next-token header has more "
    "pages, asked for by sending that header back. Every error is JSON with a `message`."
)
_SERIES_ID_SLASH = re.compile(r"(/datasetseries/[^/?]+)//+")
"""A series member's ``@id`` ends with ``/`` (as Fusion's does); a URL built by appending to it has ``//``."""


def _path_problem(raw_path: str) -> str | None:
    """Why a raw request path holds an unsafe segment (checked before any routing)."""
    segments = raw_path.split("?", 1)[0].split("/")[1:]
    for i, segment in enumerate(segments):
        if segment == "" and i == len(segments) - 1:
            continue
        value = unquote(segment, errors="strict")
        problem = identifier_problem(value)
        if problem is not None:
            return f"path segment {value!r} {problem}"
    return None


def _check_auth(request: web.Request, st: State) -> None:
    claims = st.tokens.verify(bearer(request.headers.get("Authorization")) or "", API)
    if claims is None:
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)")
    request["client"] = claims.subject
    parts = request.path[len(API_PREFIX) :].split("/")
    if "distributions" in parts and len(parts) > 4 and parts[0] == "catalogs" and parts[2] == "datasets":
        scope = f"{parts[1]}/{parts[3]}"
        token = bearer(request.headers.get("Fusion-Authorization")) or ""
        if st.tokens.verify(token, FUSION, scope) is None:
            raise ApiError(401, f"a valid fusion token for dataset {parts[3]!r} is required (Fusion-Authorization)")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject unsafe paths and unauthenticated calls; turn every error into JSON."""
    st = request.app[STATE]
    try:
        if request.path.startswith(API_PREFIX):
            merged = _SERIES_ID_SLASH.sub(r"\1/", request.raw_path)
            if merged != request.raw_path:  # read as the one slash it means
                raise web.HTTPPermanentRedirect(merged)
            try:
                problem = _path_problem(request.raw_path)
            except UnicodeDecodeError:
                problem = "path is not valid UTF-8"
            if problem is not None:
                raise ApiError(400, problem)
            if st.config.auth and request.path not in OPEN_PATHS:
                _check_auth(request, st)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = error_response(exc.status, exc.reason)
        if hdrs.ALLOW in exc.headers:  # a 405 names the methods the resource has
            answer.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
        return answer
    except web.RequestPayloadError as exc:  # a body that cannot be decoded (bad Content-Encoding or chunking)
        cause = exc.__cause__
        detail = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
        return error_response(400, f"unreadable request body: {detail}")
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(500, "internal server error")


@api.op(
    "POST",
    TOKEN_PATH,
    "OAuth2 client-credentials grant: an API token",
    {
        200: Answer("A token", models.Token),
        400: Answer("Not a client-credentials grant", models.Error),
        401: Answer("Unknown client or wrong secret", models.Error),
    },
    bodies={FORM: models.TokenRequest},
    body_required=True,
)
async def token_endpoint(request: web.Request) -> web.Response:
    """OAuth2 client-credentials grant: form ``grant_type, client_id, client_secret[, aud]``."""
    st = request.app[STATE]
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError) as exc:  # malformed multipart, not text, unknown charset
        return json_response({"error": "invalid_request", "message": f"unreadable form: {exc}"}, 400)
    grant = form.get("grant_type")
    if grant != "client_credentials":
        return json_response({"error": "unsupported_grant_type", "message": f"grant_type {grant!r}"}, 400)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        return json_response({"error": "invalid_request", "message": "client_id and client_secret required"}, 400)
    if st.config.auth and not st.tokens.check_client(client_id, secret):
        return json_response({"error": "invalid_client", "message": "unknown client or wrong secret"}, 401)
    token = st.tokens.issue(client_id, API)
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": st.tokens.ttl})


assert routes_upload.FLUSH_BYTES  # its operations are declared on routes_data's table (with their sample twins)
ROUTES = [api, routes_data.api, routes_meta.api, routes_datasets.api, routes_attrs.api, events.api]
"""Every operation of the server. Under /api/v1/catalogs/{catalog} routes are tried in order: the data routes
(one request per file) first."""


def operations() -> list[Op]:
    return [op for table in ROUTES for op in table.ops]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI description of this server, generated from its declared operations and models."""
    return document(operations(), DESCRIPTION, __version__)


OPENAPI = web.AppKey("openapi", bytes)


@api.op("GET", API_PREFIX + "openapi.json", "This description", {200: Answer("The OpenAPI document", dict[str, Any])})
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def make_app(config: ServerConfig) -> web.Application:
    """Build the application over the root folder of ``config`` (created when missing)."""
    config.root.mkdir(parents=True, exist_ok=True)
    meta = MetaStore(config.root / "catalog.sqlite")
    blobs = BlobStore(config.root)
    clients = config.clients if config.clients is not None else ensure_client(config.root)
    tokens = TokenAuthority(load_key(config.root), clients, config.token_ttl)
    for op_id in meta.operation_ids():
        if not blobs.operation_temp(op_id).exists():  # completed, but the crash came before it was forgotten
            meta.end_operation(op_id)
    swept = blobs.sweep(meta.all_blobs(), meta.operation_ids())
    if swept:
        log.info("removed %d orphaned blobs and temporaries", swept)
    app = web.Application(middlewares=[guard], client_max_size=MAX_JSON_BODY)
    hub = EventHub()
    app[STATE] = State(config, meta, blobs, tokens, hub)
    app[OPENAPI] = json.dumps(openapi_document()).encode()
    for table in ROUTES:
        table.register(app)

    async def disk_threads(app: web.Application) -> None:
        # Blob commits wait on fsync far more than they use a core: enough threads let many overlap.
        pool = ThreadPoolExecutor(max_workers=DISK_THREADS, thread_name_prefix="fusionsync-disk")
        asyncio.get_running_loop().set_default_executor(pool)

    async def close(app: web.Application) -> None:
        meta.close()

    async def end_subscriptions(app: web.Application) -> None:
        hub.close()

    app.on_startup.append(disk_threads)
    app.on_shutdown.append(end_subscriptions)
    app.on_cleanup.append(close)
    return app


def credentials_document(config: ServerConfig, client_id: str, secret: str) -> dict[str, object]:
    """A ``client_credentials.json`` (the SDK's format) for a client of this server."""
    base = f"{scheme(config)}://{config.host}:{config.port}"
    return {
        "client_id": client_id,
        "client_secret": secret,
        "resource": "fusionsync",
        "auth_url": base + TOKEN_PATH,
        "root_url": base + API_PREFIX,
        "proxies": {},
    }


def scheme(config: ServerConfig) -> str:
    return "https" if config.tls_cert else "http"


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate is configured (``--tls-cert`` and ``--tls-key``)."""
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def run_server(config: ServerConfig, ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; ``ready`` is called with the bound port."""
    app = make_app(config)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        max_line_size=MAX_HEADER_LINE,
        max_field_size=MAX_HEADER_LINE,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    site = web.TCPSite(
        runner, config.host, config.port, backlog=1024, reuse_address=True, ssl_context=tls_context(config)
    )
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        config.port = sockets[0].getsockname()[1]
    clients = app[STATE].tokens.clients
    if config.auth and clients:
        client_id, secret = next(iter(clients.items()))
        path = config.root / "client_credentials.json"
        path.write_text(json.dumps(credentials_document(config, client_id, secret), indent=2), encoding="utf-8")
        path.chmod(0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(config.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
