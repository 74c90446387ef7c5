"""Uploads, free of HTTP: a distribution in one request, or in parts (the multipart protocol), over the two
storage interfaces of ``store``. Failures are ``ApiError``s with the status and sentence to answer.

Multipart: parts may have any size from 5 MiB up to 5 GiB (S3's rule; the last part may be smaller). A part
is recorded as arriving (size -1) before its bytes are written and as received once they are verified, so a
part interrupted by anything (a dropped connection, a killed worker) must be sent again. The completion
claims the operation in the metadata store (one request at a time, in any worker), makes the blob, and
records the distribution together with the operation's result: a repeated completion (its answer was lost)
answers that result; one arriving while another is under way waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.server.errors import ApiError
from fusionsync.server.store import (
    DONE,
    OPEN,
    BlobMissing,
    BlobStore,
    Busy,
    Chunks,
    Commit,
    Distribution,
    MetaStore,
    Operation,
    Part,
    PartChanged,
    now_iso,
)
from fusionsync.server.streams import TooLarge

MAX_PARTS = 10_000
MAX_PART_BYTES = 5 * 2**30
MAX_OPEN_UPLOADS = 100
"""Unfinished multipart uploads one client may hold (idle ones expire)."""
SIDE = "side"
"""A part the folder store keeps in a file of its own (a part in its 5 MiB slot has ``""``)."""
CLAIM_STALE = 60.0
"""A completion whose holder has not renewed its claim for this long (its process died) may be taken over."""
RENEW_SECONDS = 10.0
WAIT_SECONDS = 60.0
"""How long a repeated completion waits for the one under way before answering 409."""
POLL_SECONDS = 0.2
Target = tuple[str, str, str, str]


class UploadProblem(ValueError):
    """Parts that cannot be completed into a distribution (a client error)."""


def check_parts(parts: list[Part], listed: Any) -> None:
    """Parts 1..N all received whole, every one but the last at least 5 MiB; ``listed`` (the completion
    body's ``parts``), when given, names them in order."""
    if not parts:
        raise UploadProblem("the upload has no parts")
    for i, part in enumerate(parts, start=1):
        if part.number != i:
            raise UploadProblem(f"part {i} is missing")
        if part.size < 0:
            raise UploadProblem(f"part {i} was not received whole (digest mismatch or interrupted); send it again")
        if i < len(parts) and part.size < PART_SIZE:
            raise UploadProblem(
                f"part {i} has {part.size} bytes; every part but the last must have at least {PART_SIZE}"
            )
    if listed is not None:
        if not isinstance(listed, list) or len(listed) != len(parts):
            raise UploadProblem(f"'parts' must list the {len(parts)} parts received")
        for i, item in enumerate(listed, start=1):
            if isinstance(item, dict) and item.get("partNumber", i) != i:
                raise UploadProblem(f"'parts' entry {i} names part {item.get('partNumber')!r}")


def parts_digest(parts: list[Part]) -> str:
    """What the client's completion ``Digest`` must say: the one part's SHA-256, or the SHA-256 of the
    concatenated SHA-256s of the parts as they were sent."""
    if len(parts) == 1:
        return parts[0].digest
    return b64(hashlib.sha256(b"".join(base64.b64decode(p.digest) for p in parts)).digest())


def in_place(parts: list[Part]) -> bool:
    """Whether the parts, in order, are the file's 5 MiB pieces (all but the last exactly 5 MiB, none kept
    apart): then the parts' digest is the fsync digest."""
    return all(p.ref != SIDE for p in parts) and all(p.size == PART_SIZE for p in parts[:-1])


def _too_large(exc: TooLarge) -> ApiError:
    return ApiError(413, str(exc))


# -- a distribution in one request ---------------------------------------------------------------


def check_whole(hasher: FusionHasher, expected: str) -> None:
    """The whole body against the Digest header: its fsync digest, or its plain SHA-256 (which the SDK
    sends for a single request of more than 5 MiB, read in larger chunks)."""
    if expected not in (hasher.fsync_digest(), hasher.checksum()):
        found = hasher.fsync_digest()
        raise ApiError(400, f"digest mismatch: the body hashes to {found}, the Digest header says {expected}")


async def store_whole(
    meta: MetaStore,
    blobs: BlobStore,
    target: Target,
    expected: str,
    body: bytes | Chunks,
    limit: int,
    extra: Any,
    incarnation: str,
) -> Distribution:
    """Store a distribution sent in one request (``extra``: the upload's dates and file name) in the dataset's
    ``incarnation`` (the one the request found)."""
    if isinstance(body, bytes):  # small: checked before a byte is stored
        hasher = FusionHasher()
        hasher.update(body)
        check_whole(hasher, expected)
        blob, size, digests = await blobs.put(body), len(body), (hasher.fsync_digest(), hasher.checksum())
    else:
        try:
            written = await blobs.write(body, limit)
        except TooLarge as exc:
            raise _too_large(exc) from exc
        blob, size, digests = written.blob, written.size, (written.digest, written.checksum)
        if expected not in digests:
            await blobs.delete(blob)
            raise ApiError(400, f"digest mismatch: the body hashes to {digests[0]}, the Digest header says {expected}")
    dist = Distribution(*target, blob, size, *digests, now_iso(), extra[1])
    return await _record(meta, blobs, dist, extra[0], None, incarnation)


async def _record(
    meta: MetaStore, blobs: BlobStore, dist: Distribution, dates: Any, op: str | None, incarnation: str
) -> Distribution:
    try:
        await meta.commit(Commit(dist, dates, op, incarnation))
    except LookupError as exc:  # the dataset was deleted while its bytes arrived
        await blobs.delete(dist.blob)
        raise ApiError(404, f"dataset {dist.dataset!r} not found in catalog {dist.catalog!r}") from exc
    return dist


# -- multipart -------------------------------------------------------------------------------------


async def begin(meta: MetaStore, blobs: BlobStore, target: Target, incarnation: str, client: str) -> str:
    """Open a multipart upload for ``client`` (429 when it holds ``MAX_OPEN_UPLOADS`` already)."""
    if await meta.open_operation_count(client) >= MAX_OPEN_UPLOADS:
        raise ApiError(
            429,
            f"{MAX_OPEN_UPLOADS} uploads are open already: complete some first (idle ones expire)",
            {"Retry-After": "60"},
        )
    op_id = uuid.uuid4().hex
    await meta.start_operation(op_id, target, await blobs.begin(op_id), incarnation, client)
    return op_id


async def find(meta: MetaStore, op_id: str, target: Target) -> Operation:
    """The operation of a request, which must be for the distribution of its URL."""
    op = await meta.operation(op_id) if op_id else None
    if op is None:
        raise ApiError(404, f"upload operation {op_id!r} not found")
    if op.target != target:
        raise ApiError(400, f"upload operation {op_id!r} belongs to another distribution")
    return op


def _not_open(op: Operation) -> ApiError:
    if op.state == DONE:
        return ApiError(409, f"upload operation {op.id!r} is completed")
    return ApiError(409, f"upload operation {op.id!r} is being completed")


async def part_limit(meta: MetaStore, op: Operation, number: int, limit: int) -> int:
    """The most bytes part ``number`` may have: ``MAX_PART_BYTES``, and no more than what ``limit`` (the largest
    upload) leaves beside the other parts received (413 when nothing is left)."""
    held = sum(p.size for p in await meta.parts(op.id) if p.size > 0 and p.number != number)
    if held >= limit:
        raise ApiError(413, f"the upload is larger than {limit} bytes")
    return min(MAX_PART_BYTES, limit - held)


async def receive_part(
    meta: MetaStore,
    blobs: BlobStore,
    op: Operation,
    number: int,
    chunks: Chunks,
    length: int | None,
    expected: str,
    limit: int = MAX_PART_BYTES,
) -> Part:
    """Receive, verify and record one part (of at most ``limit`` bytes)."""
    if op.state != OPEN:
        raise _not_open(op)
    if (length or 0) > limit:
        raise ApiError(413, f"request body is larger than {limit} bytes")
    try:
        writer = await blobs.part_writer(op.id, op.handle, number, length)
    except Busy as exc:
        raise ApiError(409, f"part {number} of upload operation {op.id!r} is already being received") from exc
    except BlobMissing as exc:
        raise ApiError(404, f"upload operation {op.id!r} not found") from exc
    try:
        # The part's bytes are being overwritten: it is not to be trusted until they are in and verified,
        # whatever happens meanwhile (a body too large, a dropped connection, a crash).
        if not await meta.part_arriving(op.id, number):
            raise _not_open(await find(meta, op.id, op.target))
        try:
            part = await writer.write(chunks, limit)
        except TooLarge as exc:
            raise _too_large(exc) from exc
        except BlobMissing as exc:
            raise ApiError(404, f"upload operation {op.id!r} not found") from exc
        if part.digest != expected:
            raise ApiError(
                400, f"digest mismatch in part {number}: the body hashes to {part.digest}, expected {expected}"
            )
        if not await meta.record_part(op.id, part):
            raise _not_open(await find(meta, op.id, op.target))
    finally:
        await writer.release()
    return part


async def held_parts(meta: MetaStore, op_id: str, target: Target, expiry: float) -> list[Part]:
    """The parts an open operation holds, received whole (404 when it is unknown, finished or expired)."""
    op = await find(meta, op_id, target)
    if op.state == DONE or op.touched < time.time() - expiry:
        raise ApiError(404, f"upload operation {op_id!r} not found")
    return [p for p in await meta.parts(op_id) if p.size >= 0]


async def complete(
    meta: MetaStore, blobs: BlobStore, op: Operation, expected: str, listed: Any, extra: Any, limit: int
) -> Distribution:
    """Complete an upload (``extra``: the dates and file name of the request), or answer how it was completed."""
    waited = 0.0
    while True:
        if op.state == DONE and op.result is not None:
            if op.digest != expected:
                raise ApiError(400, f"upload operation {op.id!r} was completed with Digest SHA-256={op.digest}")
            return op.result
        if await meta.claim_completion(op.id, expected, CLAIM_STALE) is not None:
            break
        if waited >= WAIT_SECONDS:
            raise ApiError(409, f"upload operation {op.id!r} is already being completed")
        await asyncio.sleep(POLL_SECONDS)  # another request is completing it: its result is the answer
        waited += POLL_SECONDS
        op = await find(meta, op.id, op.target)
    async with _renewing(meta, op.id):
        try:
            return await _complete(meta, blobs, op, expected, listed, extra, limit)
        except BaseException:
            with contextlib.suppress(Exception):
                await meta.release_completion(op.id, forget=False)  # it may be asked again
            raise


async def _complete(
    meta: MetaStore, blobs: BlobStore, op: Operation, expected: str, listed: Any, extra: Any, limit: int
) -> Distribution:
    async def checked() -> list[Part]:
        parts = await meta.parts(op.id)
        check_parts(parts, listed)
        if sum(p.size for p in parts) > limit:
            raise UploadProblem(f"the upload is larger than {limit} bytes")
        if parts_digest(parts) != expected:
            raise _Mismatch(parts_digest(parts))
        return parts

    try:
        written = await blobs.complete(op.id, op.handle, checked)
    except UploadProblem as exc:
        raise ApiError(400, str(exc)) from exc
    except _Mismatch as exc:
        await blobs.abort(op.id, op.handle, await meta.release_completion(op.id, forget=True))
        raise ApiError(400, f"digest mismatch: the parts hash to {exc}, the Digest header says {expected}") from exc
    except Busy as exc:
        raise ApiError(409, f"parts of upload operation {op.id!r} are still arriving") from exc
    except PartChanged as exc:
        await meta.release_completion(op.id, forget=False)
        await meta.part_arriving(op.id, exc.number)  # to be sent again
        raise ApiError(400, str(exc)) from exc
    except BlobMissing as exc:
        raise ApiError(404, f"upload operation {op.id!r} not found") from exc
    dist = Distribution(*op.target, written.blob, written.size, written.digest, written.checksum, now_iso(), extra[1])
    return await _record(meta, blobs, dist, extra[0], op.id, op.incarnation)


class _Mismatch(ValueError):
    """The parts' digest is not the one the completion names (the upload is dropped)."""


@contextlib.asynccontextmanager
async def _renewing(meta: MetaStore, op_id: str) -> AsyncIterator[None]:
    """Keep a completion's claim fresh while it runs (another worker may take over one that went quiet)."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            await meta.renew_claim(op_id)

    task = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        task.cancel()


async def tidy(meta: MetaStore, blobs: BlobStore, expiry: float) -> None:
    """Abort the uploads idle for ``expiry`` seconds, remove the blobs whose grace is over, trim the event log."""
    for op, parts in await meta.expire_operations(expiry):
        await blobs.abort(op.id, op.handle, parts)
    for blob in await meta.due_garbage():
        await blobs.delete(blob)
    await meta.trim_events()
