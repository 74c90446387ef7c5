"""Blob store of the catalog server: distribution bytes as files in a folder.

A blob is written under ``tmp/``, flushed to disk and renamed into ``blobs/``, so a
reader never sees a partial blob and a crash leaves only a temporary file, which the
next start sweeps away. Blobs are immutable once committed; a replaced distribution
gets a new blob and the old one is removed after a grace period, so downloads that
are already streaming it finish undisturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

from fusionsync.catalog.digest import FusionHasher

GRACE_SECONDS = 60.0
"""How long a replaced or deleted blob stays readable for downloads in flight."""


class BlobStore:
    """Immutable blobs in ``root/blobs``, uploads in progress in ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{self.blobs}{os.sep}"

    def path(self, blob: str) -> str:
        """Where a committed blob lives (a string: every download asks, and pathlib costs more)."""
        return f"{self._prefix}{blob[:2]}{os.sep}{blob}"

    def new_temp(self, prefix: str = "put") -> Path:
        """A fresh temporary path for an upload."""
        return self.tmp / f"{prefix}-{uuid.uuid4().hex}"

    def operation_temp(self, op_id: str) -> Path:
        """The temporary file a multipart operation assembles its parts into."""
        return self.tmp / f"op-{op_id}"

    def part_temp(self, op_id: str, number: int) -> Path:
        """Where a part of a multipart operation that does not fit its 5 MiB slot is kept until completion."""
        return self.tmp / f"op-{op_id}.{number}"

    def commit(self, temp: Path, size: int | None = None) -> str:
        """Flush ``temp`` to disk (truncated to ``size``) and move it into the store."""
        with open(temp, "r+b") as fh:
            if size is not None:
                fh.truncate(size)
            os.fsync(fh.fileno())
        return self._move_in(temp)

    def store(self, data: bytes) -> str:
        """A whole blob from memory (a small upload): written, flushed to disk and moved in, in one call."""
        temp = self.new_temp()
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

    def _move_in(self, temp: Path) -> str:
        blob = uuid.uuid4().hex
        dest = self.path(blob)
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.dirname(dest))
        os.replace(temp, dest)
        return blob

    def remove_later(self, blob: str | None, delay: float = GRACE_SECONDS) -> None:
        """Remove a blob no longer referenced, after downloads in flight had time to finish."""
        if blob is None:
            return
        path = self.path(blob)
        try:
            asyncio.get_running_loop().call_later(delay, _unlink, path)
        except RuntimeError:
            _unlink(path)

    def sweep(self, live_blobs: set[str], live_operations: set[str]) -> int:
        """Remove blobs and temporaries nothing refers to (after a crash); return the count."""
        removed = 0
        for path in self.tmp.iterdir():
            if path.name.startswith("op-") and path.name[3:].split(".")[0] in live_operations:
                continue
            _unlink(path)
            removed += 1
        for shard in self.blobs.iterdir():
            for path in shard.iterdir():
                if path.name not in live_blobs:
                    _unlink(path)
                    removed += 1
        return removed


def _unlink(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class BlobWriter:
    """Writes a stream of chunks at an offset of a file while hashing it (blocking calls)."""

    def __init__(self, path: Path, offset: int = 0, create: bool = True) -> None:
        flags = os.O_WRONLY | (os.O_CREAT if create else 0)
        self._fd = os.open(path, flags, 0o600)
        self._offset = offset
        self.hasher = FusionHasher()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        self.hasher.update(view)
        while view:
            written = os.pwrite(self._fd, view, self._offset)
            self._offset += written
            view = view[written:]

    def close(self) -> None:
        os.close(self._fd)
