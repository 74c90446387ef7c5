"""What every route of the catalog server shares: state, errors, JSON answers, paging."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from fusionsync.catalog.names import identifier_problem
from fusionsync.server.auth import TokenAuthority
from fusionsync.server.errors import ApiError
from fusionsync.server.store import BlobStore, MetaStore

NEXT_TOKEN = "x-jpmc-next-token"
MAX_JSON_BODY = 2 * 2**20
"""Largest JSON (or form) body: metadata is small; the biggest is a multipart completion that lists
10,000 parts of ~140 bytes each. File bytes are streamed to disk instead, under their own limits."""


@dataclass
class ServerConfig:
    """How a catalog server runs; every field has a command-line option."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8765
    auth: bool = True
    page_size: int = 1000
    token_ttl: int = 3600
    clients: dict[str, str] | None = None
    max_upload_bytes: int = 64 * 2**30
    blob_grace_seconds: float = 60.0
    heartbeat_seconds: float = 30.0
    metadata: str = ""
    """Where the metadata lives: ``sqlite:///PATH`` (default: ROOT/catalog.sqlite) or ``postgresql://...``."""
    blobs: str = ""
    """Where the bytes live: a folder (default: ROOT) or ``s3://BUCKET/PREFIX``."""
    workers: int = 1
    upload_expiry: float = 86400.0
    """Seconds after which an upload with no activity is dropped (its parts deleted, an S3 upload aborted)."""
    tls_cert: Path | None = None
    """PEM certificate chain: serve HTTPS instead of HTTP (with ``tls_key``)."""
    tls_key: Path | None = None

    def metadata_url(self) -> str:
        return self.metadata or f"sqlite:///{self.root.resolve() / 'catalog.sqlite'}"


@dataclass
class State:
    """The live parts of a running server."""

    config: ServerConfig
    meta: MetaStore
    blobs: BlobStore
    tokens: TokenAuthority


STATE = web.AppKey("state", State)


def state(request: web.Request) -> State:
    return request.app[STATE]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer. A successful one is sent chunked, without Content-Length, as Fusion does: generic
    fsspec HTTP clients (the SDK's filesystem among them) take an answer with a length for a file, and
    one without, typed JSON, for a directory."""
    answer = web.Response(body=msgspec.json.encode(data), status=status, headers=headers)
    answer.content_type = "application/json"
    if status < 300:
        answer.enable_chunked_encoding()
    return answer


def deleted(identifier: str, found: object = True, missing: str = "") -> web.Response:
    """The answer to a delete: 404 with ``missing`` when nothing was ``found``."""
    if found is None or found is False:
        raise ApiError(404, missing)
    return json_response({"identifier": identifier, "deleted": True})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"status": status, "message": message, "error": message}, status=status, headers=headers)


def ident(request: web.Request, name: str, kind: str | None = None) -> str:
    """A path parameter, checked to be a safe identifier (400 otherwise)."""
    value = request.match_info[name]
    problem = identifier_problem(value)
    if problem is not None:
        raise ApiError(400, f"{kind or name} {value!r} {problem}")
    return value


def check_body_identifier(value: Any, kind: str) -> str:
    problem = identifier_problem(value)
    if problem is not None:
        raise ApiError(400, f"{kind} {value!r} {problem}")
    assert isinstance(value, str)
    return value


async def json_body(request: web.Request, model: Any) -> Any:
    """The request body as plain JSON, checked against ``model`` (a type of ``server.models``): 400 when it
    is not JSON or does not fit, 413 when too large. No body reads as ``{}``."""
    if not request.can_read_body:
        raw = b""
    else:
        too_large = f"request body is larger than {MAX_JSON_BODY} bytes"
        if (request.content_length or 0) > MAX_JSON_BODY:  # refused before a byte of it is read
            raise ApiError(413, too_large)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:  # chunked or compressed: counted as it is read
            raise ApiError(413, too_large) from exc
    try:
        data = msgspec.json.decode(raw) if raw.strip() else {}
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc or 'nested too deeply'}") from exc
    try:
        msgspec.convert(data, model, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"request body does not fit: {exc}") from exc
    return data


def paged(request: web.Request, items: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> web.Response:
    """Answer one page of a collection, with ``x-jpmc-next-token`` when more follow."""
    size = state(request).config.page_size
    token = request.headers.get(NEXT_TOKEN)
    start = 0 if token is None else whole_number(token, f"invalid {NEXT_TOKEN} {token!r}")
    # A start past the end (the collection shrank between two pages) is an empty last page.
    body: dict[str, Any] = dict(extra or {})
    body["resources"] = items[start : start + size]
    headers = {NEXT_TOKEN: str(start + size)} if start + size < len(items) else None
    return json_response(body, headers=headers)


def whole_number(text: str, problem: str, digits: int = 18) -> int:
    """``text`` as a number written with ASCII digits only (400 with ``problem`` otherwise)."""
    if not (text.isascii() and text.isdigit() and len(text) <= digits):
        raise ApiError(400, problem)
    return int(text)


async def require_catalog(request: web.Request) -> str:
    catalog = ident(request, "catalog")
    if await state(request).meta.catalog(catalog) is None:
        raise ApiError(404, f"catalog {catalog!r} not found")
    return catalog


async def require_dataset(request: web.Request) -> tuple[str, str]:
    catalog, dataset = ident(request, "catalog"), ident(request, "dataset")
    if await state(request).meta.has_dataset(catalog, dataset):  # one query (every upload)
        return catalog, dataset
    await require_catalog(request)  # which level is missing
    raise ApiError(404, f"dataset {dataset!r} not found in catalog {catalog!r}")


async def require_series(request: web.Request) -> tuple[str, str, str]:
    catalog, dataset = await require_dataset(request)
    series = ident(request, "series", "series member")
    if await state(request).meta.series(catalog, dataset, series) is None:
        raise ApiError(404, f"series member {series!r} not found in dataset {dataset!r}")
    return catalog, dataset, series
