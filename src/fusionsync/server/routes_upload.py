"""Upload routes: a distribution in one request, or in parts (the multipart protocol of ``uploads``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import hdrs, web
from aiohttp.streams import StreamReader

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, parse_digest_header
from fusionsync.server import models as m
from fusionsync.server import uploads
from fusionsync.server.blobs import BlobWriter
from fusionsync.server.common import (
    ApiError,
    State,
    check_body_identifier,
    ident,
    json_body,
    json_response,
    require_dataset,
    state,
    whole_number,
)
from fusionsync.server.meta import Distribution, Part, now_iso
from fusionsync.server.routes_data import both, dist_meta
from fusionsync.server.spec import BINARY, JSON, Answer, Param

FLUSH_BYTES = 2**20
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


def _upload_target(request: web.Request) -> tuple[str, str, str, str]:
    catalog, dataset = require_dataset(request)
    name = request.headers.get("File-Name")
    if name is not None:  # the name clients will save the file under: a safe file name or none
        check_body_identifier(name, "File-Name")
        if '"' in name or ";" in name:  # it is quoted in Content-Disposition on every download
            raise ApiError(400, f"File-Name {name!r} must not contain '\"' or ';'")
    _upload_dates(request)  # checked before anything is written
    return catalog, dataset, ident(request, "series", "series member"), ident(request, "format")


def _expected_digest(request: web.Request) -> str:
    digest = parse_digest_header(request.headers.get("Digest"))
    if digest is None:
        raise ApiError(400, "header 'Digest: SHA-256=<base64>' is required")
    return digest


async def _receive(content: StreamReader, writer: BlobWriter, limit: int) -> int:
    """Stream a request body into ``writer``; bulk writes and hashing run in a thread."""
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    buffered = total = 0
    while chunk := await content.readany():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= FLUSH_BYTES:
            await loop.run_in_executor(None, writer.write, b"".join(pending))
            pending.clear()
            buffered = 0
    if pending:
        writer.write(b"".join(pending))
    return total


def _upload_dates(request: web.Request) -> dict[str, str | None]:
    """The dates an upload carries (printable ASCII, as documented; 400 otherwise)."""
    dates = {key: request.headers.get(name) for key, (name, _) in DATE_HEADERS.items()}
    for key, value in dates.items():
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ApiError(400, f"header {DATE_HEADERS[key][0]} {value!r} must be printable ASCII")
    return dates


def _store(
    st: State,
    target: tuple[str, str, str, str],
    blob: str,
    size: int,
    digests: tuple[str, str],
    request: web.Request,
) -> dict[str, Any]:
    dist = Distribution(*target, blob, size, digests[0], digests[1], now_iso(), request.headers.get("File-Name"))
    replaced = st.meta.put_distribution(dist, _upload_dates(request))
    st.blobs.remove_later(replaced, st.config.blob_grace_seconds)
    st.events.distribution_stored(dist, replaced=replaced is not None)
    return dist_meta(dist)


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
    target = _upload_target(request)
    expected = _expected_digest(request)
    st = state(request)
    if (request.content_length or 0) > st.config.max_upload_bytes:  # refused before a byte is written
        raise ApiError(413, f"request body is larger than {st.config.max_upload_bytes} bytes")
    loop = asyncio.get_running_loop()
    length = request.content_length
    if length is not None and length <= FLUSH_BYTES and hdrs.CONTENT_ENCODING not in request.headers:
        # A small body is received in memory, then written, flushed and moved in by one thread hand-off
        # (many-small-files uploads: the file is created off the loop, and one hand-off instead of two).
        # Not a compressed one: its Content-Length does not bound what it decodes to.
        body = await _receive_small(request.content)
        hasher = FusionHasher()
        hasher.update(body)
        digests = hasher.fsync_digest(), hasher.checksum()
        _check_digest(digests, expected)
        blob = await loop.run_in_executor(None, st.blobs.store, body)
        return json_response(_store(st, target, blob, len(body), digests, request))
    temp = st.blobs.new_temp()
    writer = BlobWriter(temp)
    try:
        try:
            size = await _receive(request.content, writer, st.config.max_upload_bytes)
        finally:
            writer.close()
        digests = writer.hasher.fsync_digest(), writer.hasher.checksum()
        _check_digest(digests, expected)
        blob = await loop.run_in_executor(None, st.blobs.commit, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return json_response(_store(st, target, blob, size, digests, request))


async def _receive_small(content: StreamReader) -> bytes:
    """A body of at most FLUSH_BYTES, announced by its Content-Length (which aiohttp's parser enforces:
    it stops there, and raises if the body ends short)."""
    chunks: list[bytes] = []
    while chunk := await content.readany():
        chunks.append(chunk)
    return b"".join(chunks)


def _check_digest(digests: tuple[str, str], expected: str) -> None:
    """The whole body against the Digest header: its fsync digest, or its plain SHA-256 (which the SDK
    sends for a single request of more than 5 MiB, read in larger chunks)."""
    if expected not in digests:
        raise ApiError(400, f"digest mismatch: the body hashes to {digests[0]}, the Digest header says {expected}")


@both(
    "POST",
    "/{format}/operationType/upload",
    "Start a multipart upload",
    {200: Answer("The operation", m.Operation)},
    params=UPLOAD_HEADERS,
    errors=frozenset({404}),
)
async def start_multipart(request: web.Request) -> web.Response:
    catalog, dataset, series, fmt = _upload_target(request)
    st = state(request)
    op_id = uuid.uuid4().hex
    st.blobs.operation_temp(op_id).touch()
    st.meta.start_operation(op_id, catalog, dataset, series, fmt)
    return json_response({"operationId": op_id})


def _operation(request: web.Request, target: tuple[str, str, str, str]) -> str:
    op_id = request.query.get("operationId", "")
    found = state(request).meta.operation(op_id) if op_id else None
    if found is None:
        raise ApiError(404, f"upload operation {op_id!r} not found")
    if found != target:
        raise ApiError(400, f"upload operation {op_id!r} belongs to another distribution")
    return op_id


PART_OR_COMPLETION = {
    "params": (
        Param("operationId", "query", str, required=True),
        Param("partNumber", "query", m.PartNumber),
        DIGEST,
        *UPLOAD_HEADERS,
    ),
    "bodies": {BINARY: bytes, JSON: m.Completion},
    "body_required": True,
    "errors": frozenset({404, 409}),
}
PART_ANSWERS = {
    200: Answer("The part received, or the stored distribution", m.Received),
    409: Answer(
        "The part is already arriving in another request, or the upload is being completed (or parts are still "
        "arriving at completion)",
        m.Error,
    ),
}
PART_SUMMARY = (
    "With partNumber: send one part (its own Digest; from 5 MiB to 5 GiB, the last part may be smaller). "
    'Without: complete the upload (JSON {"parts": [the part answers in order]}, Digest of the whole file); '
    "the distribution appears only then."
)


@both(
    "GET",
    "/{format}/operations/upload",
    "The parts an open upload holds (received whole, with their size and SHA-256): what a client that was "
    "interrupted need not send again",
    {200: Answer("The parts held", m.HeldParts)},
    params=(Param("operationId", "query", str, required=True),),
    errors=frozenset({404}),
)
async def held_parts(request: web.Request) -> web.Response:
    catalog, dataset = require_dataset(request)
    op_id = _operation(request, (catalog, dataset, ident(request, "series", "series member"), ident(request, "format")))
    held = [p for p in state(request).meta.parts(op_id) if p.size >= 0]  # not one still arriving, or refused
    parts = [{"partNumber": p.number, "size": p.size, "digest": p.digest} for p in held]
    return json_response({"operationId": op_id, "parts": parts})


@both("PUT", "/{format}/operations/upload", PART_SUMMARY, PART_ANSWERS, **PART_OR_COMPLETION)
@both("POST", "/{format}/operations/upload", PART_SUMMARY, PART_ANSWERS, **PART_OR_COMPLETION)
async def multipart(request: web.Request) -> web.Response:
    """A part (with ``partNumber``) or the completion (without) of a multipart upload."""
    target = _upload_target(request)
    op_id = _operation(request, target)
    if "partNumber" in request.query:
        return await _upload_part(request, op_id)
    return await _complete(request, op_id, target)


async def _upload_part(request: web.Request, op_id: str) -> web.Response:
    problem = f"partNumber must be a whole number from 1 to {uploads.MAX_PARTS}"
    number = whole_number(request.query["partNumber"], problem, digits=len(str(uploads.MAX_PARTS)))
    if not 1 <= number <= uploads.MAX_PARTS:
        raise ApiError(400, problem)
    expected = _expected_digest(request)
    st = state(request)
    if op_id in st.completing:
        raise ApiError(409, f"upload operation {op_id!r} is being completed")
    if number in st.receiving.get(op_id, ()):
        raise ApiError(409, f"part {number} of upload operation {op_id!r} is already being received")
    if (request.content_length or 0) > uploads.MAX_PART_BYTES:
        raise ApiError(413, f"request body is larger than {uploads.MAX_PART_BYTES} bytes")
    in_slot = request.content_length is not None and request.content_length <= PART_SIZE
    side = st.blobs.part_temp(op_id, number)
    try:
        if in_slot:  # written into its 5 MiB slot of the operation's file
            writer = BlobWriter(st.blobs.operation_temp(op_id), offset=(number - 1) * PART_SIZE, create=False)
        else:  # larger, or of unknown length: a file of its own
            if not st.blobs.operation_temp(op_id).exists():
                raise FileNotFoundError(op_id)
            writer = BlobWriter(side)
    except FileNotFoundError as exc:
        raise ApiError(404, f"upload operation {op_id!r} not found") from exc
    receiving = st.receiving[op_id]
    receiving.add(number)
    where = "" if in_slot else uploads.SIDE
    try:
        # The part's bytes are being overwritten: it is not to be trusted until they are in and verified,
        # whatever happens meanwhile (a body too large, a dropped connection, a crash).
        st.meta.put_part(op_id, Part(number, where, -1, "incomplete"))
        try:
            size = await _receive(request.content, writer, PART_SIZE if in_slot else uploads.MAX_PART_BYTES)
        finally:
            writer.close()
        digest = writer.hasher.checksum()
        if digest != expected:
            raise ApiError(400, f"digest mismatch in part {number}: the body hashes to {digest}, expected {expected}")
        st.meta.put_part(op_id, Part(number, where, size, digest))
        if in_slot:
            side.unlink(missing_ok=True)  # an earlier try of this part may have been kept apart
    finally:
        receiving.discard(number)
        if not receiving:
            st.receiving.pop(op_id, None)
    return json_response({"operationId": op_id, "partNumber": number, "size": size, "digest": digest})


async def _complete(request: web.Request, op_id: str, target: tuple[str, str, str, str]) -> web.Response:
    body = await json_body(request, m.Completion)
    expected = _expected_digest(request)
    st = state(request)
    if op_id in st.completing:
        raise ApiError(409, f"upload operation {op_id!r} is already being completed")
    if st.receiving.get(op_id):
        raise ApiError(409, f"parts {sorted(st.receiving[op_id])} of upload operation {op_id!r} are still arriving")
    st.completing.add(op_id)  # from here on no part may change the bytes being committed
    try:
        meta = await _commit_operation(st, op_id, target, body, expected, request)
    finally:
        st.completing.discard(op_id)
    return json_response(meta)


async def _commit_operation(
    st: State, op_id: str, target: tuple[str, str, str, str], body: dict[str, Any], expected: str, request: web.Request
) -> dict[str, Any]:
    parts = st.meta.parts(op_id)
    try:
        uploads.check_parts(parts, body.get("parts"))
    except uploads.UploadProblem as exc:
        raise ApiError(400, str(exc)) from exc
    digest = uploads.parts_digest(parts)
    temp = st.blobs.operation_temp(op_id)
    loop = asyncio.get_running_loop()
    if digest != expected:
        _forget(st, op_id, parts)
        raise ApiError(400, f"digest mismatch: the parts hash to {digest}, the Digest header says {expected}")
    if uploads.in_place(parts):
        size = sum(p.size for p in parts)
        checksum = await loop.run_in_executor(None, uploads.sha256_file, temp, size)
        blob = await loop.run_in_executor(None, st.blobs.commit, temp, size)
    else:
        whole = st.blobs.new_temp("op")
        try:
            size, digest, checksum = await loop.run_in_executor(
                None, uploads.assemble, parts, temp, lambda n: st.blobs.part_temp(op_id, n), whole
            )
            blob = await loop.run_in_executor(None, st.blobs.commit, whole)
        except BaseException:
            whole.unlink(missing_ok=True)
            raise
    _forget(st, op_id, parts)
    return _store(st, target, blob, size, (digest, checksum), request)


def _forget(st: State, op_id: str, parts: list[Part]) -> None:
    """End an operation: its record, its file (when not committed) and its parts kept apart."""
    st.meta.end_operation(op_id)
    st.blobs.operation_temp(op_id).unlink(missing_ok=True)
    for part in parts:
        if part.blob == uploads.SIDE:
            st.blobs.part_temp(op_id, part.number).unlink(missing_ok=True)
