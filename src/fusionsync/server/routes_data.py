"""Distribution routes: listing, download (whole or ranged), single and multipart upload."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.streams import StreamReader

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64, parse_digest_header
from fusionsync.server.blobs import BlobWriter
from fusionsync.server.common import (
    ApiError,
    State,
    check_body_identifier,
    ident,
    json_body,
    json_response,
    paged,
    require_dataset,
    require_series,
    state,
    whole_number,
)
from fusionsync.server.meta import Distribution, Part, now_iso

routes = web.RouteTableDef()
DIST = "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions"
FLUSH_BYTES = 2**20
SMALL_FILE = 2**16
"""Blobs up to this size are answered from one read on the event loop (a page-cache read of 64 KiB)."""
MAX_PARTS = 10_000
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "parquet": "application/parquet"}
_RANGE = re.compile(r"bytes=[0-9]*-[0-9]*")


def distribution_file_name(dist: Distribution) -> str:
    """The file name a distribution is known by (the SDK's naming when none was uploaded)."""
    return dist.file_name or f"{dist.dataset}__{dist.catalog}__{dist.series}.{dist.format}"


def distribution_file_id(dist: Distribution) -> str:
    """The identifier of a distribution's one file: the uploaded name's stem, else the format."""
    if dist.file_name:
        return dist.file_name.rsplit(".", 1)[0] or dist.format
    return dist.format


def _dist_meta(dist: Distribution) -> dict[str, Any]:
    return {
        "identifier": dist.format,
        "title": dist.format,
        "fileExtension": f".{dist.format}",
        "mediaType": MEDIA_TYPES.get(dist.format, "application/octet-stream"),
        "size": dist.size,
        "checksum": f"SHA-256={dist.checksum}",
        "digest": f"SHA-256={dist.digest}",
        "lastModified": dist.modified,
        "@id": f"{dist.format}/",
    }


@routes.get(DIST)
async def list_distributions(request: web.Request) -> web.Response:
    catalog, dataset, series = require_series(request)
    return paged(request, [_dist_meta(d) for d in state(request).meta.distributions(catalog, dataset, series)])


def _require_distribution(request: web.Request) -> Distribution:
    catalog, dataset = ident(request, "catalog"), ident(request, "dataset")
    series, fmt = ident(request, "series", "series member"), ident(request, "format")
    dist = state(request).meta.distribution(catalog, dataset, series, fmt)  # one query when it exists (every download)
    if dist is None:
        catalog, dataset, series = require_series(request)  # which level is missing
        raise ApiError(404, f"distribution {fmt!r} not found in series member {series!r} of dataset {dataset!r}")
    return dist


# -- download --------------------------------------------------------------------------


@routes.get(DIST + "/{format}")
@routes.get(DIST + "/{format}/operationType/download")
async def download(request: web.Request) -> web.StreamResponse:
    """The bytes of a distribution; ``downloadRange=bytes=a-b`` or a ``Range`` header for a part."""
    return _file_response(request, _require_distribution(request))


@routes.delete(DIST + "/{format}")
async def delete_distribution(request: web.Request) -> web.Response:
    dist = _require_distribution(request)
    st = state(request)
    blob = st.meta.delete_distribution(dist.catalog, dist.dataset, dist.series, dist.format)
    st.blobs.remove_later(blob, st.config.blob_grace_seconds)
    return json_response({"identifier": dist.format, "deleted": True})


@routes.get(DIST + "/{format}/files")
async def list_files(request: web.Request) -> web.Response:
    dist = _require_distribution(request)
    file_id = distribution_file_id(dist)
    entry = {
        "identifier": file_id,
        "title": distribution_file_name(dist),
        "size": dist.size,
        "checksum": f"SHA-256={dist.checksum}",
        "@id": f"{file_id}/",
    }
    return paged(request, [entry])


@routes.get(DIST + "/{format}/files/operationType/download")
async def download_file(request: web.Request) -> web.StreamResponse:
    dist = _require_distribution(request)
    name = request.query.get("file")
    if name is not None and name not in (distribution_file_id(dist), distribution_file_name(dist)):
        raise ApiError(404, f"file {name!r} not found in distribution {dist.format!r}")
    return _file_response(request, dist)


def _file_response(request: web.Request, dist: Distribution) -> web.StreamResponse:
    path = state(request).blobs.path(dist.blob)
    headers = {
        "x-jpmc-checksum": dist.checksum,
        "x-jpmc-checksum-algorithm": "SHA-256",
        hdrs.CONTENT_TYPE: "application/octet-stream",
        hdrs.CONTENT_DISPOSITION: f'attachment; filename="{distribution_file_name(dist)}"',
    }
    wanted = request.query.get("downloadRange")
    if wanted is None and 0 < dist.size <= SMALL_FILE and hdrs.RANGE not in request.headers:
        return _small_file_response(path, dist.size, headers)
    if wanted is None:
        return web.FileResponse(path, headers=headers)
    if not _RANGE.fullmatch(wanted):
        raise ApiError(400, f"downloadRange {wanted!r} is not of the form bytes=first-last")
    return _RangedFileResponse(path, wanted, headers)


def _small_file_response(path: str, size: int, headers: dict[str, str]) -> web.Response:
    """A small blob answered from one read: no thread hand-off, no sendfile set-up (many-small-files syncs)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:  # replaced and collected after its grace period
        raise ApiError(404, "the distribution's file is gone; list the distribution again") from exc
    try:
        body = os.read(fd, size)  # blobs are immutable: a buffer of the recorded size, not of SMALL_FILE
    finally:
        os.close(fd)
    return web.Response(body=body, headers={**headers, hdrs.ACCEPT_RANGES: "bytes"})


class _RangedFileResponse(web.FileResponse):
    """A file response for a range given as a query parameter: answered as a Range header is."""

    def __init__(self, path: str, byte_range: str, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self._byte_range = byte_range

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return None
        return await super().prepare(request.clone(headers={**request.headers, hdrs.RANGE: self._byte_range}))


# -- upload ----------------------------------------------------------------------------


def _upload_target(request: web.Request) -> tuple[str, str, str, str]:
    catalog, dataset = require_dataset(request)
    name = request.headers.get("File-Name")
    if name is not None:  # the name clients will save the file under: a safe file name or none
        check_body_identifier(name, "File-Name")
        if '"' in name or ";" in name:  # it is quoted in Content-Disposition on every download
            raise ApiError(400, f"File-Name {name!r} must not contain '\"' or ';'")
    _upload_headers(request)  # checked before anything is written
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


DATE_HEADERS = {
    "from": "x-jpmc-distribution-from-date",
    "to": "x-jpmc-distribution-to-date",
    "created": "x-jpmc-distribution-created-date",
}


def _upload_headers(request: web.Request) -> dict[str, str | None]:
    """The dates an upload carries (printable ASCII, as documented; 400 otherwise)."""
    dates = {key: request.headers.get(name) for key, name in DATE_HEADERS.items()}
    for key, value in dates.items():
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ApiError(400, f"header {DATE_HEADERS[key]} {value!r} must be printable ASCII")
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
    replaced = st.meta.put_distribution(dist, _upload_headers(request))
    st.blobs.remove_later(replaced, st.config.blob_grace_seconds)
    return _dist_meta(dist)


@routes.put(DIST + "/{format}")
@routes.post(DIST + "/{format}")
async def upload(request: web.Request) -> web.Response:
    """Single-request upload; the body must match the ``Digest`` header (fsync digest)."""
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
        digest = hasher.fsync_digest()
        _check_digest(digest, expected)
        blob = await loop.run_in_executor(None, st.blobs.store, body)
        return json_response(_store(st, target, blob, len(body), (digest, hasher.checksum()), request))
    temp = st.blobs.new_temp()
    writer = BlobWriter(temp)
    try:
        try:
            size = await _receive(request.content, writer, st.config.max_upload_bytes)
        finally:
            writer.close()
        digest = writer.hasher.fsync_digest()
        _check_digest(digest, expected)
        blob = await loop.run_in_executor(None, st.blobs.commit, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return json_response(_store(st, target, blob, size, (digest, writer.hasher.checksum()), request))


async def _receive_small(content: StreamReader) -> bytes:
    """A body of at most FLUSH_BYTES, announced by its Content-Length (which aiohttp's parser enforces:
    it stops there, and raises if the body ends short)."""
    chunks: list[bytes] = []
    while chunk := await content.readany():
        chunks.append(chunk)
    return b"".join(chunks)


def _check_digest(digest: str, expected: str) -> None:
    if digest != expected:
        raise ApiError(400, f"digest mismatch: the body hashes to {digest}, the Digest header says {expected}")


@routes.post(DIST + "/{format}/operationType/upload")
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


@routes.put(DIST + "/{format}/operations/upload")
@routes.post(DIST + "/{format}/operations/upload")
async def multipart(request: web.Request) -> web.Response:
    """A part (with ``partNumber``) or the completion (without) of a multipart upload."""
    target = _upload_target(request)
    op_id = _operation(request, target)
    if "partNumber" in request.query:
        return await _upload_part(request, op_id)
    return await _complete(request, op_id, target)


async def _upload_part(request: web.Request, op_id: str) -> web.Response:
    problem = f"partNumber must be a whole number from 1 to {MAX_PARTS}"
    number = whole_number(request.query["partNumber"], problem, digits=len(str(MAX_PARTS)))
    if not 1 <= number <= MAX_PARTS:
        raise ApiError(400, problem)
    expected = _expected_digest(request)
    st = state(request)
    if op_id in st.completing:
        raise ApiError(409, f"upload operation {op_id!r} is being completed")
    if number in st.receiving.get(op_id, ()):
        raise ApiError(409, f"part {number} of upload operation {op_id!r} is already being received")
    try:
        writer = BlobWriter(st.blobs.operation_temp(op_id), offset=(number - 1) * PART_SIZE, create=False)
    except FileNotFoundError as exc:
        raise ApiError(404, f"upload operation {op_id!r} not found") from exc
    receiving = st.receiving[op_id]
    receiving.add(number)
    try:
        # The part's bytes are being overwritten: it is not to be trusted until they are in and verified,
        # whatever happens meanwhile (a body too large, a dropped connection, a crash).
        st.meta.put_part(op_id, Part(number, "", -1, "incomplete"))
        try:
            size = await _receive(request.content, writer, PART_SIZE)
        finally:
            writer.close()
        digest = writer.hasher.checksum()
        if digest != expected:
            raise ApiError(400, f"digest mismatch in part {number}: the body hashes to {digest}, expected {expected}")
        st.meta.put_part(op_id, Part(number, "", size, digest))
    finally:
        receiving.discard(number)
        if not receiving:
            st.receiving.pop(op_id, None)
    return json_response({"operationId": op_id, "partNumber": number, "size": size, "digest": digest})


async def _complete(request: web.Request, op_id: str, target: tuple[str, str, str, str]) -> web.Response:
    body = await json_body(request)
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
    _check_parts(parts, body)
    raw = [base64.b64decode(p.digest) for p in parts]
    digest = parts[0].digest if len(parts) == 1 else b64(hashlib.sha256(b"".join(raw)).digest())
    temp = st.blobs.operation_temp(op_id)
    if digest != expected:
        st.meta.end_operation(op_id)
        temp.unlink(missing_ok=True)
        raise ApiError(400, f"digest mismatch: the parts hash to {digest}, the Digest header says {expected}")
    size = sum(p.size for p in parts)
    loop = asyncio.get_running_loop()
    checksum = await loop.run_in_executor(None, _sha256_file, temp, size)
    blob = await loop.run_in_executor(None, st.blobs.commit, temp, size)
    st.meta.end_operation(op_id)
    return _store(st, target, blob, size, (digest, checksum), request)


def _check_parts(parts: list[Part], body: dict[str, Any]) -> None:
    if not parts:
        raise ApiError(400, "the upload has no parts")
    for i, part in enumerate(parts, start=1):
        if part.number != i:
            raise ApiError(400, f"part {i} is missing")
        if part.size < 0:
            raise ApiError(400, f"part {i} was not received whole (digest mismatch or interrupted); send it again")
        if i < len(parts) and part.size != PART_SIZE:
            raise ApiError(400, f"part {i} has {part.size} bytes; every part but the last must have {PART_SIZE}")
    listed = body.get("parts")
    if listed is not None:
        if not isinstance(listed, list) or len(listed) != len(parts):
            raise ApiError(400, f"'parts' must list the {len(parts)} parts received")
        for i, item in enumerate(listed, start=1):
            if isinstance(item, dict) and item.get("partNumber", i) != i:
                raise ApiError(400, f"'parts' entry {i} names part {item.get('partNumber')!r}")


def _sha256_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        left = size
        while left > 0 and (chunk := fh.read(min(left, 4 * 2**20))):
            hasher.update(chunk)
            left -= len(chunk)
    return b64(hasher.digest())
