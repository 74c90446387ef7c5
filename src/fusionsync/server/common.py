"""What every route of the catalog server shares: state, errors, JSON answers, paging."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import hdrs, web

from fusionsync.catalog.names import catalog_identifier_problem
from fusionsync.server.audit import AuditLog
from fusionsync.server.auth import Backoff, TokenAuthority
from fusionsync.server.errors import ApiError
from fusionsync.server.store import BlobStore, MetaStore
from fusionsync.server.streams import TooLarge

NEXT_TOKEN = "x-jpmc-next-token"
MAX_JSON_BODY = 2 * 2**20
"""Largest JSON (or form) body: the biggest is a multipart completion that lists 10,000 parts of ~140 bytes
each, or a dataset's attributes. File bytes are streamed to disk instead, under their own limits."""
MAX_METADATA_BYTES = 64 * 2**10
"""Largest metadata of a catalog, product or dataset (the JSON body that sets it): a listing page holds many."""
MAX_DEPTH = 32
"""Deepest nesting of a JSON body (a deeper one would be refused by whoever reads it back)."""
MAX_ITEMS = 1000
"""Longest list in a JSON body (a multipart completion may list every part)."""
ENCODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 47}
"""Content-Encodings a body may have (zlib's window bits: a zlib or gzip header, detected)."""
INFLATE_STEP = 2**20


@dataclass
class ServerConfig:
    """How a catalog server runs; every field has a command-line option."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8765
    auth: bool = True
    page_size: int = 1000
    token_ttl: int = 3600
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

    max_connections: int = 1000
    """Open connections per process (fewer when the process may not open that many files)."""
    header_timeout: float = 10.0
    """Seconds a request's head (request line and headers) may take to arrive."""
    read_timeout: float = 30.0
    """Seconds within which a request body being read must bring at least 1 KiB."""

    def metadata_url(self) -> str:
        return self.metadata or f"sqlite:///{self.root.resolve() / 'catalog.sqlite'}"


@dataclass
class State:
    """The live parts of a running server."""

    config: ServerConfig
    meta: MetaStore
    blobs: BlobStore
    tokens: TokenAuthority
    audit: AuditLog
    backoff: Backoff = field(default_factory=Backoff)


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
    problem = catalog_identifier_problem(value)
    if problem is not None:
        raise ApiError(400, f"{kind or name} {value!r} {problem}")
    return value


def check_body_identifier(value: Any, kind: str) -> str:
    problem = catalog_identifier_problem(value)
    if problem is not None:
        raise ApiError(400, f"{kind} {value!r} {problem}")
    assert isinstance(value, str)
    return value


async def decoded(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, decoded by its Content-Encoding (gzip or deflate) a bounded step at a
    time: ``TooLarge`` once more than ``limit`` bytes came out. Routes call this after the token was checked."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding in ("identity", ""):
        total = 0
        while chunk := await request.content.readany():
            total += len(chunk)
            if total > limit:
                raise TooLarge(limit)
            yield chunk
        return
    bits = ENCODINGS.get(encoding)
    if bits is None:
        raise ApiError(415, f"Content-Encoding {encoding!r} is not accepted (gzip, deflate or none)")
    inflater = zlib.decompressobj(bits)
    total = 0
    try:
        while chunk := await request.content.readany():
            while chunk:
                out = inflater.decompress(chunk, INFLATE_STEP)
                chunk = inflater.unconsumed_tail
                total += len(out)
                if total > limit:
                    raise TooLarge(limit)
                if out:
                    yield out
        out = inflater.flush()
    except zlib.error as exc:
        raise ApiError(400, f"unreadable request body: it does not decode as its content-encoding {encoding}") from exc
    if not inflater.eof:
        raise ApiError(400, f"unreadable request body: it ends before its content-encoding {encoding} does")
    total += len(out)
    if total > limit:
        raise TooLarge(limit)
    if out:
        yield out


async def json_body(request: web.Request, model: Any, limit: int = MAX_METADATA_BYTES, items: int = MAX_ITEMS) -> Any:
    """The request body as plain JSON, checked against ``model`` (a type of ``server.models``): 400 when it
    is not JSON, does not fit, nests deeper than ``MAX_DEPTH`` or has a list longer than ``items``; 413 when
    larger than ``limit`` bytes (once decoded). No body reads as ``{}``."""
    too_large = f"request body is larger than {limit} bytes"
    if not request.can_read_body:
        raw = b""
    else:
        if (request.content_length or 0) > limit:  # refused before a byte of it is read
            raise ApiError(413, too_large)
        try:
            raw = b"".join([chunk async for chunk in decoded(request, limit)])
        except TooLarge as exc:  # chunked or compressed: counted as it is read
            raise ApiError(413, too_large) from exc
    try:
        data = msgspec.json.decode(raw) if raw.strip() else {}
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc or 'nested too deeply'}") from exc
    problem = shape_problem(data, items)
    if problem is not None:
        raise ApiError(400, f"request body {problem}")
    try:
        msgspec.convert(data, model, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"request body does not fit: {exc}") from exc
    return data


def shape_problem(data: Any, items: int = MAX_ITEMS) -> str | None:
    """Why decoded JSON is too deep or too long (None when it is neither); without recursion."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"nests deeper than {MAX_DEPTH} levels"
            if isinstance(value, list) and len(value) > items:
                return f"holds a list of more than {items} items"
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def unique(names: list[str], what: str, items: int = MAX_ITEMS) -> list[str]:
    """``names`` without repeats (in their order): 400 when more than ``items`` remain."""
    once = list(dict.fromkeys(names))
    if len(once) > items:
        raise ApiError(400, f"at most {items} {what} per request")
    return once


def page_of(request: web.Request) -> tuple[int, int]:
    """Where the page asked for starts (its ``x-jpmc-next-token``) and how many items it may hold."""
    token = request.headers.get(NEXT_TOKEN)
    start = 0 if token is None else whole_number(token, f"invalid {NEXT_TOKEN} {token!r}")
    return start, state(request).config.page_size


def paged(request: web.Request, items: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> web.Response:
    """Answer one page of a whole collection held in memory (a short one)."""
    first, size = page_of(request)
    return page_answer(request, items[first : first + size], first + size < len(items), extra)


def page_answer(
    request: web.Request, items: list[dict[str, Any]], more: bool, extra: dict[str, Any] | None = None
) -> web.Response:
    """Answer the page the store read (``items``), with ``x-jpmc-next-token`` when ``more`` follow."""
    first, _ = page_of(request)
    # A start past the end (the collection shrank between two pages) is an empty last page.
    body: dict[str, Any] = dict(extra or {})
    body["resources"] = items
    return json_response(body, headers={NEXT_TOKEN: str(first + len(items))} if more else None)


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
