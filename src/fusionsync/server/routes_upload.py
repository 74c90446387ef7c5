"""Upload routes: a distribution in one request, or in parts. What they do is in ``uploads`` (free of HTTP);
here are the requests' headers, bodies and answers."""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from fusionsync.catalog.digest import parse_digest_header
from fusionsync.server import models as m
from fusionsync.server import uploads
from fusionsync.server.access import CLIENT
from fusionsync.server.common import (
    MAX_JSON_BODY,
    check_body_identifier,
    decoded,
    ident,
    json_body,
    json_response,
    require_dataset,
    state,
    whole_number,
)
from fusionsync.server.errors import ApiError
from fusionsync.server.routes_data import both, dist_meta
from fusionsync.server.spec import BINARY, JSON, Answer, Param
from fusionsync.server.store import Chunks
from fusionsync.server.streams import FLUSH_BYTES

DATE_HEADERS = {
    "from": ("x-jpmc-distribution-from-date", "First date the data covers (YYYY-MM-DD)."),
    "to": ("x-jpmc-distribution-to-date", "Last date the data covers (YYYY-MM-DD)."),
    "created": ("x-jpmc-distribution-created-date", "When the data was made (YYYY-MM-DD)."),
}
DIGEST = Param(
    "Digest",
    "header",
    m.DigestHeader,
    required=True,
    description="SHA-256=<base64>: the part's own SHA-256 for a part; for a whole file (a single request or "
    "the completion) the fsync digest, or the SHA-256 of the concatenated SHA-256s of the parts as sent.",
)
UPLOAD_HEADERS = (
    *(Param(name, "header", m.Printable, description=text) for name, text in DATE_HEADERS.values()),
    Param(
        "File-Name",
        "header",
        m.Identifier,
        description="The file's name, as downloads will name it: a safe identifier without \" or ;.",
    ),
)
OPERATION_ID = Param("operationId", "query", str, required=True)


async def _upload_target(
    request: web.Request,
) -> tuple[tuple[str, str, str, str], tuple[dict[str, str | None], str | None], str]:
    """The distribution of the URL, the dates and file name the request declares (checked first), and the
    dataset's incarnation."""
    catalog, dataset = ident(request, "catalog"), ident(request, "dataset")
    incarnation = await state(request).meta.incarnation(catalog, dataset)  # one query (every upload)
    if incarnation is None:
        await require_dataset(request)  # the 404 of the level that is missing
    name = request.headers.get("File-Name")
    if name is not None:  # the name clients will save the file under: a safe file name or none
        check_body_identifier(name, "File-Name")
        if '"' in name or ";" in name:  # it is quoted in Content-Disposition on every download
            raise ApiError(400, f"File-Name {name!r} must not contain '\"' or ';'")
    dates = {key: request.headers.get(header) for key, (header, _) in DATE_HEADERS.items()}
    for key, value in dates.items():
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ApiError(400, f"header {DATE_HEADERS[key][0]} {value!r} must be printable ASCII")
    target = catalog, dataset, ident(request, "series", "series member"), ident(request, "format")
    return target, (dates, name), incarnation or ""


def _expected_digest(request: web.Request) -> str:
    digest = parse_digest_header(request.headers.get("Digest"))
    if digest is None:
        raise ApiError(400, "header 'Digest: SHA-256=<base64>' is required")
    return digest


STORED = {200: Answer("Stored", m.Distribution)}
SINGLE = {
    "params": (DIGEST, *UPLOAD_HEADERS),
    "bodies": {BINARY: bytes},
    "body_required": True,
    "errors": frozenset({404}),
}
SINGLE_SUMMARY = (
    "Upload a distribution in one request (creates the series member when new; replaces the bytes otherwise)"
)


@both("PUT", "/{format}", SINGLE_SUMMARY, STORED, **SINGLE)
@both("POST", "/{format}", SINGLE_SUMMARY, STORED, **SINGLE)
async def upload(request: web.Request) -> web.Response:
    """Single-request upload; the body must match the ``Digest`` header (fsync digest or plain SHA-256)."""
    target, extra, incarnation = await _upload_target(request)
    expected = _expected_digest(request)
    st = state(request)
    limit = st.config.max_upload_bytes
    if (request.content_length or 0) > limit:  # refused before a byte is written
        raise ApiError(413, f"request body is larger than {limit} bytes")
    length = request.content_length
    body: bytes | Chunks = decoded(request, limit)
    if length is not None and length <= FLUSH_BYTES and hdrs.CONTENT_ENCODING not in request.headers:
        # A small body is received in memory and checked before it is stored (many-small-files uploads).
        # Not a compressed one: its Content-Length does not bound what it decodes to. aiohttp's parser stops
        # at the Content-Length, and raises if the body ends short.
        body = b"".join([chunk async for chunk in decoded(request, limit)])
    dist = await uploads.store_whole(st.meta, st.blobs, target, expected, body, limit, extra, incarnation)
    return json_response(dist_meta(dist))


@both(
    "POST",
    "/{format}/operationType/upload",
    "Start a multipart upload",
    {200: Answer("The operation", m.Operation)},
    params=UPLOAD_HEADERS,
    errors=frozenset({404}),
)
async def start_multipart(request: web.Request) -> web.Response:
    target, _, incarnation = await _upload_target(request)
    st = state(request)
    client = request.get(CLIENT)
    op_id = await uploads.begin(st.meta, st.blobs, target, incarnation, client.id if client is not None else "")
    return json_response({"operationId": op_id})


PART_OR_COMPLETION = {
    "params": (OPERATION_ID, Param("partNumber", "query", m.PartNumber), DIGEST, *UPLOAD_HEADERS),
    "bodies": {BINARY: bytes, JSON: m.Completion},
    "body_required": True,
    "errors": frozenset({404, 409}),
}
PART_ANSWERS = {
    200: Answer("The part received, or the stored distribution (again, to a repeated completion)", m.Received),
    409: Answer(
        "The part is already arriving in another request, or the upload is being completed (or parts are still "
        "arriving at completion; a completion under way in another request is waited for, up to a minute)",
        m.Error,
    ),
}
PART_SUMMARY = (
    "With partNumber: send one part (its own Digest; from 5 MiB to 5 GiB, the last part may be smaller). "
    'Without: complete the upload (JSON {"parts": [the part answers in order]}, Digest of the whole file); '
    "the distribution appears only then. Completing is idempotent: asked again, it answers the same result."
)


@both("PUT", "/{format}/operations/upload", PART_SUMMARY, PART_ANSWERS, **PART_OR_COMPLETION)
@both("POST", "/{format}/operations/upload", PART_SUMMARY, PART_ANSWERS, **PART_OR_COMPLETION)
async def multipart(request: web.Request) -> web.Response:
    """A part (with ``partNumber``) or the completion (without) of a multipart upload."""
    target, extra, _ = await _upload_target(request)
    st = state(request)
    op = await uploads.find(st.meta, request.query.get("operationId", ""), target)
    most = st.config.max_upload_bytes
    if "partNumber" in request.query:
        problem = f"partNumber must be a whole number from 1 to {uploads.MAX_PARTS}"
        number = whole_number(request.query["partNumber"], problem, digits=len(str(uploads.MAX_PARTS)))
        if not 1 <= number <= uploads.MAX_PARTS:
            raise ApiError(400, problem)
        expected = _expected_digest(request)
        limit = await uploads.part_limit(st.meta, op, number, most)
        chunks = decoded(request, limit)
        part = await uploads.receive_part(
            st.meta, st.blobs, op, number, chunks, request.content_length, expected, limit
        )
        return json_response({"operationId": op.id, "partNumber": number, "size": part.size, "digest": part.digest})
    body = await json_body(request, m.Completion, MAX_JSON_BODY, uploads.MAX_PARTS)
    expected = _expected_digest(request)
    dist = await uploads.complete(st.meta, st.blobs, op, expected, body.get("parts"), extra, most)
    return json_response(dist_meta(dist))


@both(
    "GET",
    "/{format}/operations/upload",
    "The parts an open multipart upload holds, received whole (to resume an interrupted upload)",
    {200: Answer("The parts", m.HeldParts)},
    params=(OPERATION_ID,),
    errors=frozenset({404}),
)
async def held_parts(request: web.Request) -> web.Response:
    target, _, _ = await _upload_target(request)
    st = state(request)
    op_id = request.query.get("operationId", "")
    parts = await uploads.held_parts(st.meta, op_id, target, st.config.upload_expiry)
    answer: dict[str, Any] = {
        "operationId": op_id,
        "parts": [{"partNumber": p.number, "size": p.size, "digest": p.digest} for p in parts],
    }
    return json_response(answer)
