"""The catalog server's aiohttp application: middleware, authentication, start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from fusionsync import __version__
from fusionsync.catalog.names import catalog_identifier_problem
from fusionsync.server import (
    events,
    metrics,
    models,
    routes_attrs,
    routes_data,
    routes_datasets,
    routes_meta,
    routes_upload,
)
from fusionsync.server import web as web_pages
from fusionsync.server.access import CLIENT, audited, authorise, sign_in
from fusionsync.server.auth import API, FUSION, bearer
from fusionsync.server.common import (
    MAX_JSON_BODY,
    STATE,
    State,
    error_response,
    json_response,
)
from fusionsync.server.connections import guard_of
from fusionsync.server.errors import ApiError
from fusionsync.server.spec import FORM, Answer, Api, Op, document

log = logging.getLogger("fusionsync.server")
API_PREFIX = "/api/v1/"
TOKEN_PATH = "/oauth2/token"
OPEN_PATHS = {API_PREFIX + "openapi.json", TOKEN_PATH}
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
        problem = catalog_identifier_problem(value)
        if problem is not None:
            return f"path segment {value!r} {problem}"
    return None


def _check_auth(request: web.Request, st: State) -> None:
    claims = st.tokens.verify(bearer(request.headers.get("Authorization")) or "", API)
    client = st.tokens.client(claims.subject) if claims is not None else None
    if client is None:
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)")
    request[CLIENT] = client
    parts = request.path[len(API_PREFIX) :].split("/")
    authorise(request, client, parts)
    if "distributions" in parts and len(parts) > 4 and parts[0] == "catalogs" and parts[2] == "datasets":
        scope = f"{parts[1]}/{parts[3]}"
        token = bearer(request.headers.get("Fusion-Authorization")) or ""
        fusion = st.tokens.verify(token, FUSION, scope)
        if fusion is None or fusion.subject != client.id:
            raise ApiError(401, f"a valid fusion token for dataset {parts[3]!r} is required (Fusion-Authorization)")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Follow the request's course for the connection limits; answer it; audit it."""
    connection = guard_of(request)
    if connection is not None:
        connection.started(request)
    try:
        answer = await _answer(request, handler)
    finally:
        if connection is not None:
            connection.finished()
    st = request.app[STATE]
    if audited(request.method, answer.status) and request.path != TOKEN_PATH:
        client = request.get(CLIENT)
        who = client.id if client is not None else None
        if answer.status in (401, 403):
            st.audit.refused("refused", who, request.remote, answer.status, method=request.method, path=request.path)
        else:
            fields = {"method": request.method, "path": request.path, "status": answer.status}
            st.audit.record("change", client=who, address=request.remote, **fields)
    return answer


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject unsafe paths and unauthenticated or unauthorised calls; turn every error into JSON."""
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
        return error_response(exc.status, exc.message, exc.headers)
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
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        transport = request.transport
        if transport is None or transport.is_closing():  # the client left, or was cut off: nothing to log
            return error_response(400, "the connection was lost")
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
    if request.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity":
        return json_response({"error": "invalid_request", "message": "a token request has no Content-Encoding"}, 400)
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
    if not st.config.auth:
        token = st.tokens.issue(client_id, API)
        return json_response({"access_token": token, "token_type": "Bearer", "expires_in": st.tokens.ttl})
    client, wait = await sign_in(st, client_id, secret, request.remote)
    if wait > 0:
        message = f"too many failed token requests; try again in {math.ceil(wait)} s"
        headers = {"Retry-After": str(math.ceil(wait))}
        return json_response({"error": "slow_down", "message": message}, 429, headers=headers)
    if client is None:
        return json_response({"error": "invalid_client", "message": "unknown client or wrong secret"}, 401)
    token = st.tokens.issue(client.id, API)
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": st.tokens.ttl})


assert routes_upload.DIGEST  # its operations are declared on routes_data's table (with their sample twins)
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


def make_app(live: State | None = None, shared: metrics.Shared | None = None) -> web.Application:
    """The application: every route (the API, the web pages, ``/metrics``), over the stores of ``live`` (none:
    only its routes, to look at); ``shared`` holds the metrics of several worker processes."""
    stats = metrics.RequestStats()
    app = web.Application(
        middlewares=[metrics.measure(stats), guard, web_pages.html_errors], client_max_size=MAX_JSON_BODY
    )
    app[metrics.STATS] = stats
    if live is not None:
        app[STATE] = live
    app[OPENAPI] = json.dumps(openapi_document()).encode()
    for table in ROUTES:
        table.register(app)
    web_pages.register(app)
    metrics.install(app, shared)

    async def end_subscriptions(app: web.Application) -> None:
        if live is not None:
            await live.meta.close_subscriptions()

    app.on_shutdown.append(end_subscriptions)
    app.on_response_prepare.append(_common_headers)
    return app


async def _common_headers(request: web.Request, answer: web.StreamResponse) -> None:
    """No answer is kept by a cache (they are for one client's eyes), and none tells the server's versions."""
    answer.headers[hdrs.CACHE_CONTROL] = "no-store"
    answer.headers[hdrs.SERVER] = "fusionsync"
