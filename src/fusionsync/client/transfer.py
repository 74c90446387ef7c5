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
import logging
import os
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from fusionsync.catalog.layout import temp_name
from fusionsync.client.http import Http, Retryable
from fusionsync.client.partial import Partial
from fusionsync.client.verify import Expected, Verifier
from fusionsync.errors import APIError, ChecksumError, TransferError

log = logging.getLogger("fusionsync")

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
    """Hashes a file being written out of order, as its prefix becomes complete (in a thread);
    ``reached(extent)`` is called (in that thread) each time the hashed prefix grows."""

    def __init__(self, fd: int, size: int, verifier: Verifier, reached: Callable[[int], None]) -> None:
        self._fd = fd
        self._size = size
        self._verifier = verifier
        self._reached = reached
        self.hashed = 0
        self._ready: list[tuple[int, int]] = []  # completed spans not yet hashed, (start, end)
        self._wake = asyncio.Event()

    def completed(self, start: int, end: int) -> None:
        self._ready.append((start, end))
        self._wake.set()

    def reset(self) -> None:
        self._ready.clear()

    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        while self.hashed < self._size:
            await self._wake.wait()
            self._wake.clear()
            self._ready.sort()
            upto = self.hashed
            while self._ready and self._ready[0][0] <= upto:
                upto = max(upto, self._ready.pop(0)[1])
            if upto > self.hashed:
                await loop.run_in_executor(None, self._hash, self.hashed, upto)
                self.hashed = upto
        return self._verifier.result()

    def _hash(self, start: int, end: int) -> None:
        pos = start
        while pos < end:
            block = os.pread(self._fd, min(HASH_BLOCK, end - pos), pos)
            if not block:
                raise OSError(f"short read at {pos} while verifying")
            self._verifier.update(block)
            pos += len(block)
        if end < self._size:
            self._reached(end)


async def download(
    http: Http, path: str, dest: str, callback: Progress, range_size: int, max_ranges: int, size_hint: int | None = None
) -> os.stat_result:
    """Fetch a distribution into ``dest`` atomically, verified against the server's checksum.

    ``size_hint`` (the size a listing gave) lets a small file come in one GET, without a HEAD first.
    A larger one goes to a resumable partial (:mod:`~fusionsync.client.partial`): interrupted (the
    connection lost for good, the pass stopped or killed), it is kept with the record of its extent,
    and the next download of the same version continues from there. Returns the stat of the file now
    at ``dest``.
    """
    if size_hint is not None and size_hint <= SMALL_FILE:
        return await _download_small(http, path, dest, callback)
    remote = await head(http, path)
    headers = {"x-jpmc-checksum": remote.checksum, "x-jpmc-checksum-algorithm": remote.algorithm}
    expected = Expected.from_headers(headers, f"distribution {path}")
    callback.set_size(remote.size)
    source = {"path": path, "size": remote.size, "checksum": remote.checksum, "algorithm": remote.algorithm}
    partial, fd, extent = Partial.open(dest, source)
    if extent:
        log.info("download of %s: continuing after the %d bytes of an interrupted download", path, extent)
        callback.relative_update(extent)
    hasher = _PrefixHasher(fd, remote.size, expected.verifier(), partial.save)
    try:
        hashing = asyncio.ensure_future(hasher.run())
        hasher.completed(0, extent)
        try:
            spans = [(s, min(s + range_size, remote.size)) for s in range(extent, remote.size, range_size)]
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
        st = _commit(fd, partial.temp, dest)
        partial.forget()
        return st
    except BaseException as exc:
        if hasher.hashed and _interrupted(exc):  # the next download of this version continues from here
            with contextlib.suppress(OSError):
                os.close(fd)
        else:
            _discard(fd, partial.temp)
            partial.forget()
        raise


def _interrupted(exc: BaseException) -> bool:
    """A download stopped by the network (retries spent) or by the user, not by what it received or by
    a local error: the partial is then worth continuing."""
    return isinstance(exc, TransferError | asyncio.CancelledError | KeyboardInterrupt) and not isinstance(
        exc, ChecksumError
    )


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
    """A file the listing says is small: streamed in order into a temporary (on the loop: a local write of
    a small file costs less than a hand-off to a thread), the whole answer in one piece when it can be."""
    temp = temp_path_for(dest)
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    position = 0

    def write(chunk: bytes) -> None:
        nonlocal position
        _write_at(fd, chunk, position)
        position += len(chunk)

    try:
        await download_stream(http, path, write, callback, small=True)
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


async def download_stream(
    http: Http, path: str, write: Callable[[bytes], object], callback: Progress, small: bool = False
) -> None:
    """Fetch a distribution in order into ``write`` (any writer: an S3 object, an open file), verified.

    ``write`` runs in a thread, one chunk at a time, while the next chunk is read; progress counts
    what ``write`` took, so it is measured at the destination. ``small`` (a file the listing says is
    small, ``write`` cheap enough for the loop): the whole answer is asked for on a lean connection
    first, and written on the loop. A connection that breaks resumes at the first byte not yet written
    (a range request). Raises :class:`ChecksumError` when the whole does not match the server's
    checksum: the caller then discards what was written.
    """
    loop = asyncio.get_running_loop()
    what = f"download of {path}"
    written = 0
    size = 0
    expected: Expected | None = None
    verifier: Verifier | None = None
    pending: tuple[asyncio.Future[None], int] | None = None  # the chunk being written, and its length

    def begin(headers: Any, length: int | None) -> None:
        nonlocal expected, verifier, size
        if length is None:
            raise APIError(f"distribution {path}: the server gave no Content-Length")
        expected = Expected.from_headers(headers, f"distribution {path}")
        verifier = expected.verifier()
        size = length
        callback.set_size(size)

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
        nonlocal pending, written
        if expected is not None and written == size:
            return  # everything was written before the connection broke
        if small and expected is None:
            answer = await http.get_small(path + "/operationType/download", what, SMALL_FILE)
            if answer is not None:  # the whole answer in one piece, on a lean connection
                begin(answer.headers, len(answer.body))
                write_and_hash(answer.body)
                written = len(answer.body)
                callback.relative_update(written)
                return
        params = {"downloadRange": f"bytes={written}-{size - 1}"} if written else None
        async with http.stream("GET", path + "/operationType/download", what, params=params) as resp:
            if expected is None:
                begin(resp.headers, resp.content_length)
            elif resp.content_length != size - written:
                raise APIError(f"{what}: the server ignores downloadRange, so a broken download cannot resume")
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    if small:
                        write_and_hash(chunk)
                        written += len(chunk)
                        callback.relative_update(len(chunk))
                        continue
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
