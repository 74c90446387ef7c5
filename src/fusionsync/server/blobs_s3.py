"""The S3 blob store (``--blobs s3://BUCKET/PREFIX``), through aiobotocore: any S3-compatible service.

The endpoint, region and keys come from the standard AWS environment variables and files
(``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``~/.aws/config``, ...). A blob is the
object ``PREFIX/NAME``. Request bodies stream through to S3 (a single request of more than 8 MiB becomes an
S3 multipart upload of 8 MiB parts) while the server hashes them; a multipart upload of the API is one S3
multipart upload, part for part, and its completion reads the object back once to verify every part's
SHA-256 and to compute the whole file's digests. Downloads are ranged GETs streamed to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fusionsync.catalog.digest import FusionHasher, b64
from fusionsync.server.store import BlobMissing, Chunks, Content, Part, PartChanged, Written
from fusionsync.server.streams import FLUSH_BYTES, TooLarge, pieces

CHUNK = 8 * 2**20
"""Size of the S3 parts a large single-request upload is sent in (about: the most it buffers)."""
SMALL_READ = 2**16
UNKNOWN_LENGTH_LIMIT = 64 * 2**20
"""A part sent without a Content-Length is gathered in memory, up to this size."""
NOT_FOUND = ("NoSuchKey", "404", "NoSuchUpload")
_SESSION: Any = None


def parse_url(url: str) -> tuple[str, str]:
    """The bucket and key prefix (empty, or ending with ``/``) of ``s3://bucket/prefix``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"--blobs {url!r}: use a folder or s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _Body:
    """A request body streamed to S3 once, hashed on the way (botocore asks for ``tell``/``seek``). When the
    request's body fails or ends short, so does the S3 request, and ``failed`` says why."""

    def __init__(self, chunks: Chunks, length: int, hasher: Any) -> None:
        self._chunks = chunks.__aiter__()
        self._length = length
        self._hasher = hasher
        self._pos = 0
        self.failed: BaseException | None = None

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if (whence, pos) not in ((0, self._pos), (1, 0)):  # a retry cannot send the body again
            raise OSError("a streamed request body cannot be sent twice")
        return self._pos

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                self._pos += len(chunk)
                if self._pos > self._length:
                    raise TooLarge(self._length)
                self._hasher.update(chunk)
                yield chunk
            if self._pos < self._length:
                raise ConnectionResetError(f"the request body ended after {self._pos} of {self._length} bytes")
        except Exception as exc:
            self.failed = exc
            raise

    async def read(self, size: int = -1) -> bytes:
        try:
            return await self._stream().__anext__()
        except StopAsyncIteration:
            return b""


class _S3PartWriter:
    def __init__(self, store: S3Blobs, key: str, handle: str, number: int, length: int | None) -> None:
        self._store, self._key, self._handle, self._number, self._length = store, key, handle, number, length

    async def write(self, chunks: Chunks, limit: int) -> Part:
        hasher = hashlib.sha256()
        length = self._length
        if length is None:  # gathered first: S3 wants the length of a part
            data = await _gather(chunks, min(limit, UNKNOWN_LENGTH_LIMIT))
            body: Any = data
            hasher.update(data)
            length = len(data)
        elif length > limit:
            raise TooLarge(limit)
        else:
            body = _Body(chunks, length, hasher)
        args = {"UploadId": self._handle, "PartNumber": self._number, "ContentLength": length}
        try:
            answer = await self._store.client.upload_part(Bucket=self._store.bucket, Key=self._key, Body=body, **args)
        except Exception as exc:
            if isinstance(body, _Body) and body.failed is not None:  # the request's body, not S3
                raise body.failed from None
            if _code(exc) in NOT_FOUND:
                raise BlobMissing(self._handle) from exc
            raise
        return Part(self._number, str(answer["ETag"]), length, b64(hasher.digest()))

    async def release(self) -> None:
        pass


async def _gather(chunks: Chunks, limit: int) -> bytes:
    got: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise TooLarge(limit)
        got.append(chunk)
    return b"".join(got)


class S3Blobs:
    """Blobs as objects of one bucket, under one prefix."""

    def __init__(self, client: Any, bucket: str, prefix: str, stack: contextlib.AsyncExitStack) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._stack = stack

    @classmethod
    async def open(cls, url: str) -> S3Blobs:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
        except ImportError as exc:
            raise ValueError("S3 blobs need aiobotocore: pip install 'fusionsync[s3]'") from exc

        bucket, prefix = parse_url(url)
        global _SESSION
        if _SESSION is None:
            _SESSION = get_session()
        config = AioConfig(
            request_checksum_calculation="when_required",  # we hash every byte ourselves, once
            response_checksum_validation="when_required",
            s3={"payload_signing_enabled": False},  # bodies stream through; their SHA-256 is checked by us
            max_pool_connections=64,
        )
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(_SESSION.create_client("s3", config=config))
        try:
            await client.head_bucket(Bucket=bucket)
        except Exception as exc:
            await stack.aclose()
            raise ValueError(f"--blobs {url!r}: bucket {bucket!r} cannot be reached ({_code(exc) or exc})") from exc
        return cls(client, bucket, prefix, stack)

    async def close(self) -> None:
        await self._stack.aclose()

    def _key(self, blob: str) -> str:
        return self.prefix + blob

    # -- whole blobs -----------------------------------------------------------------------
    async def put(self, data: bytes) -> str:
        blob = uuid.uuid4().hex
        await self.client.put_object(Bucket=self.bucket, Key=self._key(blob), Body=data)
        return blob

    async def write(self, chunks: Chunks, limit: int) -> Written:
        blob = uuid.uuid4().hex
        key = self._key(blob)
        hasher = FusionHasher()
        loop = asyncio.get_running_loop()
        upload: str | None = None
        etags: list[dict[str, Any]] = []
        held: bytes | None = None  # one piece is held back: the last one may be the only one (a plain PUT)
        try:
            async for piece in pieces(chunks, CHUNK, limit):
                await loop.run_in_executor(None, hasher.update, piece)
                if held is not None:
                    upload = (
                        upload or (await self.client.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
                    )
                    etags.append(await self._part(key, upload, len(etags) + 1, held))
                held = piece
            if upload is None:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=held or b"")
            else:
                etags.append(await self._part(key, upload, len(etags) + 1, held or b""))
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": etags}
                )
                upload = None
        finally:
            if upload is not None:
                with contextlib.suppress(Exception):
                    await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        return Written(blob, hasher.size, hasher.fsync_digest(), hasher.checksum())

    async def _part(self, key: str, upload: str, number: int, data: bytes) -> dict[str, Any]:
        answer = await self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def read(self, blob: str, start: int, count: int) -> Content:
        if count == 0:
            return b""
        try:
            answer = await self.client.get_object(
                Bucket=self.bucket, Key=self._key(blob), Range=f"bytes={start}-{start + count - 1}"
            )
        except Exception as exc:
            if _code(exc) in NOT_FOUND:
                raise BlobMissing(blob) from exc
            raise
        body = answer["Body"]
        if count <= SMALL_READ:
            async with body:
                return bytes(await body.read())
        return _stream(body)

    async def delete(self, blob: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self._key(blob))

    # -- multipart uploads -----------------------------------------------------------------
    async def begin(self, op_id: str) -> str:
        answer = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(op_id))
        return str(answer["UploadId"])

    async def part_writer(self, op_id: str, handle: str, number: int, length: int | None) -> _S3PartWriter:
        return _S3PartWriter(self, self._key(op_id), handle, number, length)

    async def complete(self, op_id: str, handle: str, checked: Callable[[], Awaitable[list[Part]]]) -> Written:
        parts = await checked()
        key = self._key(op_id)
        listing = {"Parts": [{"PartNumber": p.number, "ETag": p.ref} for p in parts]}
        try:
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=handle, MultipartUpload=listing
            )
        except Exception as exc:
            code = _code(exc)
            if code == "InvalidPart":  # S3 holds other bytes than the ones recorded for a part
                raise PartChanged(parts[0].number) from exc
            if code not in NOT_FOUND:
                raise
            # completed before, then interrupted before it was recorded: the object is there, or nothing is
        try:
            return await self._verify(op_id, parts)
        except PartChanged:
            await self.delete(op_id)  # the S3 upload is over: the whole file must come again
            raise

    async def _verify(self, op_id: str, parts: list[Part]) -> Written:
        """Read the object back: every part's SHA-256 must be the one recorded; its digests."""
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self._key(op_id))
        except Exception as exc:
            if _code(exc) in NOT_FOUND:
                raise BlobMissing(op_id) from exc
            raise
        hasher = FusionHasher()
        checker = _PartChecker(parts)
        loop = asyncio.get_running_loop()

        def take(data: bytes) -> None:
            hasher.update(data)
            checker.update(data)

        async with answer["Body"] as body:
            pending: list[bytes] = []
            buffered = 0
            async for chunk in body.iter_chunks(FLUSH_BYTES):
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= 4 * FLUSH_BYTES:
                    await loop.run_in_executor(None, take, b"".join(pending))
                    pending, buffered = [], 0
            take(b"".join(pending))
        checker.finish()
        return Written(op_id, hasher.size, hasher.fsync_digest(), hasher.checksum())

    async def abort(self, op_id: str, handle: str, parts: list[Part]) -> None:
        key = self._key(op_id)
        with contextlib.suppress(Exception):  # gone already, or completed by an interrupted completion
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=handle)
        await self.client.delete_object(Bucket=self.bucket, Key=key)

    async def sweep(self, live_blobs: set[str], live_operations: dict[str, str], min_age: float) -> int:
        """Delete objects nothing refers to and abort S3 uploads of no operation, older than ``min_age``."""
        old = time.time() - min_age
        removed = 0
        handles = set(live_operations.values())
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix) :]
                if name not in live_blobs and name not in live_operations and item["LastModified"].timestamp() < old:
                    await self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    removed += 1
        uploads = self.client.get_paginator("list_multipart_uploads")
        async for page in uploads.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Uploads", []):
                if item["UploadId"] not in handles and item["Initiated"].timestamp() < old:
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                    )
                    removed += 1
        return removed


class _PartChecker:
    """Each part's SHA-256 over its span of the content, against the one recorded."""

    def __init__(self, parts: list[Part]) -> None:
        self._parts = list(parts)
        self._index = 0
        self._left = parts[0].size if parts else 0
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._index >= len(self._parts):
                raise PartChanged(self._parts[-1].number)
            piece = view[: self._left]
            self._hash.update(piece)
            self._left -= len(piece)
            view = view[len(piece) :]
            if self._left == 0:
                self._close()

    def _close(self) -> None:
        part = self._parts[self._index]
        if b64(self._hash.digest()) != part.digest:
            raise PartChanged(part.number)
        self._index += 1
        self._hash = hashlib.sha256()
        self._left = self._parts[self._index].size if self._index < len(self._parts) else 0

    def finish(self) -> None:
        if self._index < len(self._parts) and self._left == 0:  # empty last parts
            self._close()
        if self._index < len(self._parts):
            raise PartChanged(self._parts[self._index].number)


async def _stream(body: Any) -> AsyncIterator[bytes]:
    """The chunks of an S3 answer; its connection is released however the reader stops."""
    async with body:
        async for chunk in body.iter_chunks(FLUSH_BYTES):
            yield chunk
