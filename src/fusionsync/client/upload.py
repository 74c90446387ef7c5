"""Uploads of distributions: one request up to 5 MiB, else parts, resumable, bounded in memory.

A multipart upload of a local file reads each 5 MiB part twice, 1 MiB at a time: once to hash it
(its Digest header goes before its bytes), then again as it is sent (from the page cache), so a
part in flight holds one slice, not 5 MiB. A part of a remote file (S3…) is read once and held
while it is sent. The whole-file fsync digest is derived from the part digests.
Parts in flight are bounded across every upload of a client (``Http.parts_gate``), so memory
stays bounded however many files are sent at once.

Resuming: given an :class:`UploadJournal` (the sync engine keeps one per local file, keyed by its
path, size, modification time and digest), the operation id is recorded when the upload starts.
An upload interrupted before its completion is continued by the next one: the server lists the
parts it holds (``GET …/operations/upload?operationId=ID``), each held part whose size and digest
match the local bytes is not sent again, and the rest are. A server that cannot list the parts
(or has forgotten the operation) gets a new upload from the start.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.client.http import Http, parse_json
from fusionsync.client.transfer import CHUNK, SMALL_FILE, Progress, gather_or_cancel
from fusionsync.errors import APIError, AuthError, FusionSyncError, NotFoundError, TransferError

log = logging.getLogger("fusionsync")


class UploadJournal(Protocol):
    """Where the operation id of one file's multipart upload is remembered between passes."""

    def operation(self) -> str | None:
        """The operation started for this very file content, if any."""

    def begin(self, operation_id: str) -> None:
        """Remember the operation just started."""

    def end(self) -> None:
        """Forget it (the upload completed)."""


class SlicedBody:
    """A request body of bytes sent in 1 MiB slices with a Content-Length (re-iterable for retries)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        view = memoryview(self.data)
        for start in range(0, len(view), CHUNK):
            yield view[start : start + CHUNK]


class RangeBody:
    """``length`` bytes of a local file from ``offset``, read 1 MiB at a time as they are sent (re-iterable
    for retries): a part in flight holds one slice, not the whole part. The reads run on the loop: the
    part was just hashed, so they come from the page cache, cheaper than a hand-off to a thread."""

    def __init__(self, reader: Callable[[int, int], bytes], offset: int, length: int) -> None:
        self.reader, self.offset, self.length = reader, offset, length

    def __len__(self) -> int:
        return self.length

    async def __aiter__(self) -> AsyncIterator[bytes]:
        end = self.offset + self.length
        for pos in range(self.offset, end, CHUNK):
            data = self.reader(pos, min(CHUNK, end - pos))
            if len(data) != min(CHUNK, end - pos):
                raise OSError(f"the file ended at {pos + len(data)} bytes while it was being sent (it shrank)")
            yield data


def _hash_range(reader: Callable[[int, int], bytes], offset: int, length: int) -> bytes:
    """The raw SHA-256 of ``length`` bytes from ``offset``, read 1 MiB at a time."""
    hasher = hashlib.sha256()
    end = offset + length
    for pos in range(offset, end, CHUNK):
        data = reader(pos, min(CHUNK, end - pos))
        if len(data) != min(CHUNK, end - pos):
            raise OSError(f"the file ended at {pos + len(data)} bytes while it was being read (it shrank)")
        hasher.update(data)
    return hasher.digest()


def _dates(from_date: str | None, to_date: str | None) -> dict[str, str]:
    today = dt.date.today().isoformat()
    return {
        "x-jpmc-distribution-from-date": from_date or today,
        "x-jpmc-distribution-to-date": to_date or "2199-12-31",
        "x-jpmc-distribution-created-date": today,
    }


async def upload(
    http: Http,
    path: str,
    reader: Callable[[int, int], bytes],
    size: int,
    callback: Progress,
    from_date: str | None = None,
    to_date: str | None = None,
    file_name: str | None = None,
    local_reader: bool = False,
    journal: UploadJournal | None = None,
) -> None:
    """Send ``size`` bytes read by ``reader(offset, length)`` to the distribution at ``path``.

    ``local_reader``: the reader reads a local file (a small read may then run on the event loop).
    ``journal``: where the operation of a multipart upload is remembered, so an interrupted one resumes.
    """
    headers = _dates(from_date, to_date)
    if file_name:
        headers["File-Name"] = file_name
    callback.set_size(size)
    loop = asyncio.get_running_loop()
    what = f"upload to {path}"
    if size <= PART_SIZE:
        # A small local read costs less than handing it to a thread (many-small-files uploads).
        inline = local_reader and size <= SMALL_FILE
        data = reader(0, size) if inline else await loop.run_in_executor(None, reader, 0, size)
        hasher = FusionHasher(whole=False)
        hasher.update(data)
        single = {
            **headers,
            "Digest": f"SHA-256={hasher.fsync_digest()}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        await http.call("PUT", path, what, headers=single, data=data if len(data) <= CHUNK else SlicedBody(data))
        callback.relative_update(size)
        return
    op_id, held = await _resume(http, path, what, journal)
    if op_id is None:
        body, _ = await http.call("POST", path + "/operationType/upload", what, headers=headers)
        op = parse_json(body, what)
        if not isinstance(op, dict) or not isinstance(op.get("operationId"), str):
            raise APIError(f"{what}: the server answered no operationId")
        op_id = op["operationId"]
        if journal is not None:
            journal.begin(op_id)
    count = (size + PART_SIZE - 1) // PART_SIZE
    answers: list[Any] = [None] * count
    digests: list[bytes] = [b""] * count
    gate = http.parts_gate()
    reused = 0

    async def part(i: int) -> None:
        nonlocal reused
        async with gate:
            offset = i * PART_SIZE
            length = min(PART_SIZE, size - offset)
            body: RangeBody | SlicedBody
            if local_reader:  # hashed first (its Digest header goes before it), then read again as it is sent
                raw = await loop.run_in_executor(None, _hash_range, reader, offset, length)
                body = RangeBody(reader, offset, length)
            else:  # a remote file (S3…) is read once: the part is held while it is sent
                data = await loop.run_in_executor(None, reader, offset, length)
                raw = await loop.run_in_executor(None, lambda: hashlib.sha256(data).digest())
                body = SlicedBody(data)
            digests[i] = raw
            if held.get(i + 1) == (length, raw):  # the server holds these very bytes already
                answers[i] = {"operationId": op_id, "partNumber": i + 1, "size": length, "digest": b64(raw)}
                reused += length
            else:
                url = f"{path}/operations/upload?operationId={op_id}&partNumber={i + 1}"
                part_headers = {
                    "Digest": f"SHA-256={b64(raw)}",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                }
                answer, _ = await http.call("PUT", url, what, headers=part_headers, data=body)
                answers[i] = parse_json(answer, what)
            callback.relative_update(length)

    await gather_or_cancel([part(i) for i in range(count)])
    if reused:
        log.info("%s: %d of %d bytes were already on the server (an interrupted upload)", what, reused, size)
    whole = b64(hashlib.sha256(b"".join(digests)).digest())
    await _complete(http, path, op_id, {**headers, "Digest": f"SHA-256={whole}"}, answers, whole)
    if journal is not None:
        journal.end()


async def _complete(http: Http, path: str, op_id: str, headers: dict[str, str], answers: list[Any], whole: str) -> None:
    """The completion (retried as every request is). When its answer is lost on the way (the connection broke
    after the server stored the file), the retry gets the same answer from a server that completes
    idempotently, or "not found" from one that forgot the finished upload: then the change listing tells
    whether the file is stored (``whole``, the fsync digest of 5 MiB parts, is what it reports)."""
    what = f"upload to {path}"
    try:
        await http.call(
            "POST",
            f"{path}/operations/upload?operationId={op_id}",
            what,
            headers=headers,
            json_body={"parts": answers},
        )
    except NotFoundError:
        if await _stored_digest(http, path) != f"SHA-256={whole}":
            raise


async def _stored_digest(http: Http, path: str) -> str | None:
    """The digest the change listing gives for the distribution at ``path`` (None when it lists none)."""
    parts = path.split("/")
    if len(parts) != 7:  # not catalog/datasets/D/datasetseries/S/distributions/F
        return None
    catalog, _, dataset, _, series, _, fmt = parts
    try:
        listing = await http.json(
            f"{catalog}/datasets/changes", f"change listing of {dataset}", params={"datasets": dataset}
        )
    except NotFoundError:
        return None
    for entry in listing.get("datasets", []) if isinstance(listing, dict) else []:
        for row in entry.get("distributions", []):
            values = row.get("values", [])
            if row.get("key") == f"{dataset}/{series}/distribution.{fmt}" and len(values) > 2:
                return str(values[2])
    return None


async def _resume(
    http: Http, path: str, what: str, journal: UploadJournal | None
) -> tuple[str | None, dict[int, tuple[int, bytes]]]:
    """The recorded operation and the parts the server holds of it (number → size, raw SHA-256); no
    operation when there is none to continue, or the server cannot say what it holds."""
    op_id = journal.operation() if journal is not None else None
    if op_id is None:
        return None, {}
    try:
        body, _ = await http.call("GET", f"{path}/operations/upload", what, params={"operationId": op_id})
        listed = parse_json(body, what).get("parts")
        held = {int(p["partNumber"]): (int(p["size"]), base64.b64decode(p["digest"], validate=True)) for p in listed}
    except (AuthError, TransferError):  # refused, or nothing answers: no point starting another
        raise
    except (FusionSyncError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # unknown, expired, or a server without the listing (or with another shape of it): start over
        log.info("%s: the interrupted upload %s cannot be continued (%s); starting again", what, op_id, exc)
        return None, {}
    log.info("%s: continuing upload %s, of which the server holds %d parts", what, op_id, len(held))
    return op_id, held
