"""The folder blob store (the default): distribution bytes as files under ``ROOT/blobs``.

A blob is written under ``tmp/``, flushed to disk and renamed into ``blobs/``, so a crash leaves only a
temporary file, which the next start sweeps away (under the root's lock). Blobs are immutable once named.

A multipart upload assembles in one file, ``tmp/op-{id}``: a part of at most 5 MiB (every part of our client
and of the SDK's default) is written straight into its 5 MiB slot, so when every part but the last is
exactly 5 MiB the file becomes the blob by a rename. A larger part is kept in a file of its own and the
completion copies the parts in order. Writers of one upload may be in several worker processes: a part's
writer holds a lock on its part (an open-file-description lock, released by the kernel even when the
process is killed) and the completion a lock on the whole file: a part is written by one request at a time,
and never while the completion reads or moves the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import struct
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.server.store import BlobMissing, Busy, Chunks, Content, FileSpan, Part, Written
from fusionsync.server.streams import Hasher, receive
from fusionsync.server.uploads import SIDE, in_place, parts_digest

SMALL_READ = 2**16
"""Reads up to this size are answered from one read on the event loop (a page-cache read of 64 KiB)."""
COPY_CHUNK = 4 * 2**20
SLOTS_AHEAD = 16
"""How far past the end of an upload's file a part may be written in its slot (parts sent in parallel)."""
PART_LOCKS = 2**62
"""Where the locks of the parts sit in the operation file's lock space (the byte PART_LOCKS + number): past
any content, and inside the range the completion locks."""


def _unlink(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _lock(fd: int, start: int, length: int) -> bool:
    """An exclusive lock on a range of an open file (0 length: to the end), without waiting."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0))
    except (BlockingIOError, PermissionError):
        return False
    return True


class FolderBlobs:
    """Immutable blobs in ``root/blobs``, uploads in progress in ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{self.blobs}{os.sep}"

    async def close(self) -> None:
        pass

    def _path(self, blob: str) -> str:
        """Where a blob lives (a string: every download asks, and pathlib costs more)."""
        return f"{self._prefix}{blob[:2]}{os.sep}{blob}"

    def _temp(self, name: str) -> str:
        return f"{self.tmp}{os.sep}{name}"

    def _move_in(self, temp: str, blob: str | None = None) -> str:
        blob = blob or uuid.uuid4().hex
        dest = self._path(blob)
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.dirname(dest))
        os.replace(temp, dest)
        return blob

    # -- whole blobs -----------------------------------------------------------------------
    async def put(self, data: bytes) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._store, data)

    def _store(self, data: bytes) -> str:
        """Written, flushed to disk and moved in, in one thread hand-off (many-small-files uploads). Each
        flushed on its own, in threads of their own: one ``syncfs`` for many small blobs at once was ~10 %
        faster with small uploads only, and made them twice as slow when large uploads were under way too
        (it waits for every dirty page of the file system)."""
        temp = self._temp(f"put-{uuid.uuid4().hex}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            return self._move_in(temp)
        except BaseException:
            _unlink(temp)
            raise

    async def write(self, chunks: Chunks, limit: int) -> Written:
        temp = self._temp(f"put-{uuid.uuid4().hex}")
        loop = asyncio.get_running_loop()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                hasher = FusionHasher()
                await receive(chunks, _Writer(fd, 0, hasher), limit)
                await loop.run_in_executor(None, os.fsync, fd)
            finally:
                os.close(fd)
            blob = await loop.run_in_executor(None, self._move_in, temp)
        except BaseException:
            _unlink(temp)
            raise
        return Written(blob, hasher.size, hasher.fsync_digest(), hasher.checksum())

    async def read(self, blob: str, start: int, count: int) -> Content:
        try:
            if count <= SMALL_READ:  # no thread hand-off, no sendfile set-up (many-small-files syncs)
                fd = os.open(self._path(blob), os.O_RDONLY)
                try:
                    return os.pread(fd, count, start)
                finally:
                    os.close(fd)
            handle = await asyncio.get_running_loop().run_in_executor(None, open, self._path(blob), "rb")
        except FileNotFoundError as exc:  # replaced and collected after its grace period
            raise BlobMissing(blob) from exc
        return FileSpan(handle, start, count)

    async def delete(self, blob: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, _unlink, self._path(blob))

    # -- multipart uploads -----------------------------------------------------------------
    def _op(self, op_id: str) -> str:
        return self._temp(f"op-{op_id}")

    def _side(self, op_id: str, number: int) -> str:
        return self._temp(f"op-{op_id}.{number}")

    async def begin(self, op_id: str) -> str:
        os.close(os.open(self._op(op_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return ""

    def _open_op(self, op_id: str, start: int, length: int) -> int:
        """The operation's file, opened and locked over ``start, length`` (``Busy``, ``BlobMissing``)."""
        path = self._op(op_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError as exc:
            raise BlobMissing(op_id) from exc
        try:
            if not _lock(fd, start, length):
                raise Busy(op_id)
            try:  # still the operation's file, not one completed and moved into the store meanwhile
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise BlobMissing(op_id)
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def part_writer(self, op_id: str, handle: str, number: int, length: int | None) -> _PartWriter:
        fd = await asyncio.get_running_loop().run_in_executor(None, self._open_op, op_id, PART_LOCKS + number, 1)
        # In its slot when it fits and the slot is near the file's end: a lone part 10,000 must not make a
        # sparse file of 49 GiB (parts sent far ahead are kept apart, and copied at completion)
        near = (number - 1 - SLOTS_AHEAD) * PART_SIZE <= os.fstat(fd).st_size
        in_slot = length is not None and length <= PART_SIZE and near
        return _PartWriter(fd, number, in_slot, self._side(op_id, number))

    async def complete(self, op_id: str, handle: str, checked: Callable[[], Awaitable[list[Part]]]) -> Written:
        loop = asyncio.get_running_loop()
        try:
            fd = await loop.run_in_executor(None, self._open_op, op_id, 0, 0)
        except BlobMissing:  # completed before, then interrupted before it was recorded (or gone)
            await checked()
            return await loop.run_in_executor(None, _hash_blob, self._path(op_id), op_id)
        try:
            parts = await checked()
            if in_place(parts):
                size = sum(p.size for p in parts)
                checksum = await loop.run_in_executor(None, _sha256_prefix, fd, size)
                await loop.run_in_executor(None, _flush, fd, size)
                await loop.run_in_executor(None, self._move_in, self._op(op_id), op_id)
                written = Written(op_id, size, parts_digest(parts), checksum)
            else:
                whole = self._temp(f"op-{op_id}.whole")
                try:
                    size, digest, checksum = await loop.run_in_executor(None, self._assemble, op_id, parts, whole)
                    await loop.run_in_executor(None, self._move_in, whole, op_id)
                except BaseException:
                    _unlink(whole)
                    raise
                written = Written(op_id, size, digest, checksum)
        finally:
            os.close(fd)
        await self.abort(op_id, handle, parts, keep_blob=True)
        return written

    def _assemble(self, op_id: str, parts: list[Part], dest: str) -> tuple[int, str, str]:
        """Copy the parts in order into ``dest``; its size, fsync digest and SHA-256 (blocking)."""
        hasher = FusionHasher()
        with open(dest, "wb") as out:
            for part in parts:
                side = part.ref == SIDE
                with open(self._side(op_id, part.number) if side else self._op(op_id), "rb") as fh:
                    fh.seek(0 if side else (part.number - 1) * PART_SIZE)
                    left = part.size
                    while left > 0:
                        chunk = fh.read(min(left, COPY_CHUNK))
                        if not chunk:
                            raise BlobMissing(f"part {part.number} is shorter than recorded")
                        hasher.update(chunk)
                        out.write(chunk)
                        left -= len(chunk)
            out.flush()
            os.fsync(out.fileno())
        return hasher.size, hasher.fsync_digest(), hasher.checksum()

    async def abort(self, op_id: str, handle: str, parts: list[Part], keep_blob: bool = False) -> None:
        def remove() -> None:
            for part in parts:
                if part.ref == SIDE:
                    _unlink(self._side(op_id, part.number))
            _unlink(self._op(op_id))
            if not keep_blob:  # made by a completion that was interrupted before it was recorded
                _unlink(self._path(op_id))

        await asyncio.get_running_loop().run_in_executor(None, remove)

    async def sweep(self, live_blobs: set[str], live_operations: dict[str, str], min_age: float) -> int:
        """Remove temporaries of no open upload and blobs nothing refers to (run at start, under the root's lock)."""
        return await asyncio.get_running_loop().run_in_executor(None, self._sweep, live_blobs, live_operations, min_age)

    def _sweep(self, live_blobs: set[str], live_operations: dict[str, str], min_age: float) -> int:
        removed = 0  # no other server writes here (min_age is for stores shared between hosts)
        for entry in _entries(self.tmp):  # a link is removed as a name, never followed
            if not (entry.name.startswith("op-") and entry.name[3:].split(".")[0] in live_operations):
                removed += _remove(entry)
        for shard in _entries(self.blobs):
            if not shard.is_dir(follow_symlinks=False):
                removed += _remove(shard)
                continue
            for entry in _entries(Path(shard.path)):
                if entry.name not in live_blobs and entry.name not in live_operations:
                    removed += _remove(entry)
        return removed


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return list(entries)


def _remove(entry: os.DirEntry[str]) -> int:
    """Remove a swept entry: a file or link (not what it points to); a folder is left alone."""
    if entry.is_dir(follow_symlinks=False):
        return 0
    _unlink(entry.path)
    return 1


class _PartWriter:
    """A part written into its slot of the operation's file (whose lock it holds), or into a file of its own."""

    def __init__(self, fd: int, number: int, in_slot: bool, side: str) -> None:
        self._fd = fd
        self._number = number
        self._in_slot = in_slot
        self._side = side

    async def write(self, chunks: Chunks, limit: int) -> Part:
        hasher = hashlib.sha256()
        if self._in_slot:
            size = await receive(chunks, _Writer(self._fd, (self._number - 1) * PART_SIZE, hasher), PART_SIZE)
        else:
            fd = os.open(self._side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                size = await receive(chunks, _Writer(fd, 0, hasher), limit)
            finally:
                os.close(fd)
        return Part(self._number, "" if self._in_slot else SIDE, size, b64(hasher.digest()))

    async def release(self) -> None:
        os.close(self._fd)
        if self._in_slot:  # an earlier try of this part may have been kept apart
            _unlink(self._side)


class _Writer:
    """Writes chunks at an offset of an open file while hashing them (blocking calls)."""

    def __init__(self, fd: int, offset: int, hasher: Hasher) -> None:
        self._fd = fd
        self._offset = offset
        self.hasher = hasher

    def __call__(self, data: bytes) -> None:
        view = memoryview(data)
        self.hasher.update(view)
        while view:
            written = os.pwrite(self._fd, view, self._offset)
            self._offset += written
            view = view[written:]


def _sha256_prefix(fd: int, size: int) -> str:
    hasher = hashlib.sha256()
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(size - pos, COPY_CHUNK), pos)
        if not chunk:
            raise BlobMissing("the upload's file is shorter than its parts")
        hasher.update(chunk)
        pos += len(chunk)
    return b64(hasher.digest())


def _flush(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    os.fsync(fd)


def _hash_blob(path: str, blob: str) -> Written:
    hasher = FusionHasher()
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError as exc:
        raise BlobMissing(blob) from exc
    with fh:
        while chunk := fh.read(COPY_CHUNK):
            hasher.update(chunk)
    return Written(blob, hasher.size, hasher.fsync_digest(), hasher.checksum())
