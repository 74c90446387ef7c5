"""Downloads and uploads of distributions: parallel, streamed, verified, bounded in memory.

A download goes to a hidden temporary file next to its destination: ranges are fetched in
parallel and written at their offsets while a thread hashes the completed prefix, so the
bytes are read from the network once, hashed once, and memory holds only a few chunks.
Only a file that matches the server's ``x-jpmc-checksum`` is renamed into place.
An upload reads the file once: each 5 MiB part is hashed and sent (several at a time), and
the whole-file fsync digest is derived from the part digests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.catalog.layout import temp_name
from fusionsync.client.http import Http, Retryable, parse_json
from fusionsync.client.verify import Expected, Verifier
from fusionsync.errors import APIError, ChecksumError, NotFoundError

CHUNK = 2**20
HASH_BLOCK = 8 * 2**20
SMALL_FILE = 2**20
"""Downloads up to this size (when a listing gave their size) come in one GET, hashed as they arrive;
local files up to this size are read for upload on the event loop, in one read."""


class Progress(Protocol):
    """Where a transfer reports its bytes (an fsspec ``Callback`` is one)."""

    def set_size(self, size: int) -> None: ...

    def relative_update(self, inc: int = 1) -> None: ...

    def absolute_update(self, value: int) -> None: ...


@dataclass(frozen=True, slots=True)
class RemoteFile:
    size: int
    checksum: str | None
    algorithm: str | None


async def gather_or_cancel(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Their results; on the first failure (or cancellation) cancel the rest and wait for them to stop."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def temp_token() -> str:
    # Not a secret (a local temporary is created with O_EXCL), just unlikely to be taken: no system call for it.
    return f"{random.getrandbits(32):08x}"


def temp_path_for(dest: str) -> str:
    folder, name = os.path.split(os.path.abspath(dest))
    return os.path.join(folder, temp_name(name, temp_token()))


async def head(http: Http, path: str) -> RemoteFile:
    _, headers = await http.call("HEAD", path + "/operationType/download", f"distribution {path}")
    try:
        size = int(headers["Content-Length"])
    except (KeyError, ValueError) as exc:
        raise APIError(f"distribution {path}: the server gave no Content-Length") from exc
    return RemoteFile(size, headers.get("x-jpmc-checksum"), headers.get("x-jpmc-checksum-algorithm"))


class _PrefixHasher:
    """Hashes a file being written out of order, as its prefix becomes complete (in a thread)."""

    def __init__(self, fd: int, size: int, verifier: Verifier) -> None:
        self._fd = fd
        self._size = size
        self._verifier = verifier
        self._hashed = 0
        self._ready: list[tuple[int, int]] = []  # completed spans not yet hashed, (start, end)
        self._wake = asyncio.Event()

    def completed(self, start: int, end: int) -> None:
        self._ready.append((start, end))
        self._wake.set()

    def reset(self) -> None:
        self._ready.clear()

    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        while self._hashed < self._size:
            await self._wake.wait()
            self._wake.clear()
            self._ready.sort()
            upto = self._hashed
            while self._ready and self._ready[0][0] <= upto:
                upto = max(upto, self._ready.pop(0)[1])
            if upto > self._hashed:
                await loop.run_in_executor(None, self._hash, self._hashed, upto)
                self._hashed = upto
        return self._verifier.result()

    def _hash(self, start: int, end: int) -> None:
        pos = start
        while pos < end:
            block = os.pread(self._fd, min(HASH_BLOCK, end - pos), pos)
            if not block:
                raise OSError(f"short read at {pos} while verifying")
            self._verifier.update(block)
            pos += len(block)


async def download(
    http: Http, path: str, dest: str, callback: Progress, range_size: int, max_ranges: int, size_hint: int | None = None
) -> os.stat_result:
    """Fetch a distribution into ``dest`` atomically, verified against the server's checksum.

    ``size_hint`` (the size a listing gave) lets a small file come in one GET, without a HEAD first.
    Returns the stat of the file now at ``dest``.
    """
    if size_hint is not None and size_hint <= SMALL_FILE:
        return await _download_small(http, path, dest, callback)
    remote = await head(http, path)
    headers = {"x-jpmc-checksum": remote.checksum, "x-jpmc-checksum-algorithm": remote.algorithm}
    expected = Expected.from_headers(headers, f"distribution {path}")
    callback.set_size(remote.size)
    temp = temp_path_for(dest)
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        hasher = _PrefixHasher(fd, remote.size, expected.verifier())
        hashing = asyncio.ensure_future(hasher.run())
        try:
            spans = [(s, min(s + range_size, remote.size)) for s in range(0, remote.size, range_size)]
            gate = asyncio.Semaphore(max_ranges)

            async def one(start: int, end: int) -> None:
                async with gate:
                    await http.retrying(
                        f"download of {path}", lambda: _fetch(http, path, fd, start, end, callback, remote.size)
                    )
                hasher.completed(start, end)

            await gather_or_cancel([one(s, e) for s, e in spans])
            checksum = await hashing
        finally:
            hashing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await hashing
        _check(path, expected, checksum)
        return _commit(fd, temp, dest)
    except BaseException:
        _discard(fd, temp)
        raise


def _commit(fd: int, temp: str, dest: str) -> os.stat_result:
    """Close a verified temporary and rename it into place (its stat is the destination's)."""
    st = os.fstat(fd)
    os.close(fd)
    os.replace(temp, dest)
    return st


def _discard(fd: int, temp: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


async def _download_small(http: Http, path: str, dest: str, callback: Progress) -> os.stat_result:
    """One GET: the answer's headers carry the size and checksum, the body is hashed as it arrives."""
    what = f"download of {path}"
    temp = temp_path_for(dest)
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        written = [0]  # bytes a failed attempt left in the temporary

        async def attempt() -> tuple[Expected, str]:
            if written[0]:  # never truncate an empty file: ext4 then flushes it to disk on close
                os.ftruncate(fd, 0)
                written[0] = 0
            got = 0

            def begin(headers: Any, size: int) -> tuple[Expected, Verifier]:
                expected = Expected.from_headers(headers, f"distribution {path}")
                callback.set_size(size)
                return expected, expected.verifier()

            def take(chunk: bytes, verifier: Verifier) -> None:
                nonlocal got
                written[0] = got + len(chunk)
                _write_at(fd, chunk, got)
                verifier.update(chunk)
                got += len(chunk)
                callback.relative_update(len(chunk))

            try:
                answer = await http.get_small(path + "/operationType/download", what, SMALL_FILE)
                if answer is not None:  # the whole answer in one piece, on a lean connection
                    size: int | None = len(answer.body)
                    expected, verifier = begin(answer.headers, len(answer.body))
                    take(answer.body, verifier)
                else:
                    async with http.stream("GET", path + "/operationType/download", what) as resp:
                        size = resp.content_length
                        if size is None:
                            raise APIError(f"distribution {path}: the server gave no Content-Length")
                        expected, verifier = begin(resp.headers, size)
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            take(chunk, verifier)
                if got != size:
                    raise Retryable(f"{what}: the connection closed after {got} of {size} bytes")
                return expected, verifier.result()
            except BaseException:
                callback.relative_update(-got)
                raise

        expected, checksum = await http.retrying(what, attempt)
        _check(path, expected, checksum)
        return _commit(fd, temp, dest)
    except BaseException:
        _discard(fd, temp)
        raise


def _check(path: str, expected: Expected, checksum: str) -> None:
    if checksum != expected.value:
        raise ChecksumError(
            f"download of {path} does not match its checksum (got {expected.algorithm} {checksum}, "
            f"expected {expected.value}); nothing was written"
        )


async def download_stream(http: Http, path: str, write: Callable[[bytes], object], callback: Progress) -> None:
    """Fetch a distribution in order into ``write`` (any writer: an S3 object, an open file), verified.

    ``write`` runs in a thread, one chunk at a time, while the next chunk is read; progress counts
    what ``write`` took, so it is measured at the destination. A connection that breaks resumes at
    the first byte not yet written (a range request). Raises :class:`ChecksumError` when the whole
    does not match the server's checksum: the caller then discards what was written.
    """
    loop = asyncio.get_running_loop()
    what = f"download of {path}"
    written = 0
    size = 0
    expected: Expected | None = None
    verifier: Verifier | None = None
    pending: tuple[asyncio.Future[None], int] | None = None  # the chunk being written, and its length

    def write_and_hash(chunk: bytes) -> None:
        assert verifier is not None
        write(chunk)
        verifier.update(chunk)

    async def settle() -> None:
        nonlocal pending, written
        if pending is not None:
            future, length = pending
            pending = None
            await future
            written += length
            callback.relative_update(length)

    async def attempt() -> None:
        nonlocal size, expected, verifier, pending
        if expected is not None and written == size:
            return  # everything was written before the connection broke
        params = {"downloadRange": f"bytes={written}-{size - 1}"} if written else None
        async with http.stream("GET", path + "/operationType/download", what, params=params) as resp:
            if expected is None:
                if resp.content_length is None:
                    raise APIError(f"distribution {path}: the server gave no Content-Length")
                expected = Expected.from_headers(resp.headers, f"distribution {path}")
                verifier = expected.verifier()
                size = resp.content_length
                callback.set_size(size)
            elif resp.content_length != size - written:
                raise APIError(f"{what}: the server ignores downloadRange, so a broken download cannot resume")
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    await settle()
                    pending = loop.run_in_executor(None, write_and_hash, chunk), len(chunk)
            finally:
                await settle()  # a chunk handed to the thread is written anyway: wait for it, count it
        if written > size:
            raise APIError(f"{what}: the server sent {written} bytes, more than the {size} it announced")
        if written != size:
            raise Retryable(f"{what}: the connection closed after {written} of {size} bytes")

    await http.retrying(what, attempt)
    assert expected is not None and verifier is not None
    _check(path, expected, verifier.result())


async def _fetch(http: Http, path: str, fd: int, start: int, end: int, callback: Progress, size: int) -> None:
    """One range (the whole file when it is small) written at its offset."""
    params = None if (start, end) == (0, size) else {"downloadRange": f"bytes={start}-{end - 1}"}
    pos = start
    try:
        async with http.stream("GET", path + "/operationType/download", f"download of {path}", params=params) as resp:
            if params and resp.status == 200 and resp.content_length == size != end - start:
                raise APIError(f"download of {path}: the server ignores downloadRange (it sent the whole file)")
            async for chunk in resp.content.iter_chunked(CHUNK):
                if pos + len(chunk) > end:
                    raise Retryable(f"download of {path}: the server sent more bytes than asked for")
                _write_at(fd, chunk, pos)
                pos += len(chunk)
                callback.relative_update(len(chunk))
        if pos != end:
            raise Retryable(f"download of {path}: the connection closed after {pos - start} of {end - start} bytes")
    except BaseException:
        callback.relative_update(start - pos)  # this range starts again from zero
        raise


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``: a write may stop short (a nearly full disk, a file size limit),
    and the next one then raises the reason (ENOSPC, EFBIG) instead of leaving a hole."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


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
    max_parts: int,
    from_date: str | None = None,
    to_date: str | None = None,
    file_name: str | None = None,
    local_reader: bool = False,
) -> None:
    """Send ``size`` bytes read by ``reader(offset, length)`` to the distribution at ``path``.

    ``local_reader``: the reader reads a local file (a small read may then run on the event loop).
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
    body, _ = await http.call("POST", path + "/operationType/upload", what, headers=headers)
    op = parse_json(body, what)
    if not isinstance(op, dict) or not isinstance(op.get("operationId"), str):
        raise APIError(f"{what}: the server answered no operationId")
    op_id = op["operationId"]
    count = (size + PART_SIZE - 1) // PART_SIZE
    answers: list[Any] = [None] * count
    digests: list[bytes] = [b""] * count
    gate = asyncio.Semaphore(max_parts)

    async def part(i: int) -> None:
        async with gate:
            offset = i * PART_SIZE
            data = await loop.run_in_executor(None, reader, offset, min(PART_SIZE, size - offset))
            raw = await loop.run_in_executor(None, lambda: hashlib.sha256(data).digest())
            digests[i] = raw
            url = f"{path}/operations/upload?operationId={op_id}&partNumber={i + 1}"
            part_headers = {
                "Digest": f"SHA-256={b64(raw)}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
            }
            answer, _ = await http.call("PUT", url, what, headers=part_headers, data=SlicedBody(data))
            answers[i] = parse_json(answer, what)
            callback.relative_update(len(data))

    await gather_or_cancel([part(i) for i in range(count)])
    whole = b64(hashlib.sha256(b"".join(digests)).digest())
    await _complete(http, path, op_id, {**headers, "Digest": f"SHA-256={whole}"}, answers, whole)


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
