"""Writing a verified file into any fsspec filesystem (S3, memory, …) without a scratch file.

The bytes go straight into the destination's own writer, under a hidden temporary name beside
the destination (see :func:`~fusionsync.catalog.layout.temp_name`); only a committed file is moved
into place. An interrupted write leaves at most that temporary, which the next sync pass removes.
Every method blocks: call them from a thread, never from the event loop of an async filesystem.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fusionsync.catalog.digest import PART_SIZE
from fusionsync.catalog.layout import temp_name

BLOCK = PART_SIZE
"""Bytes a writer buffers before it sends them (s3fs would hold 50 MiB, and progress would run ahead)."""


class FsspecSink:
    """``open()``, ``write()`` chunks in order, then ``commit()`` or ``discard()``."""

    def __init__(self, fs: Any, path: str, token: str) -> None:
        self.fs = fs
        self.path = path
        parent, _, name = path.rpartition("/")
        self.parent = parent
        self.temp = f"{parent}/{temp_name(name, token)}" if parent else temp_name(name, token)
        self._file: Any = None

    def open(self) -> None:
        if self.parent:
            with contextlib.suppress(FileExistsError):
                self.fs.makedirs(self.parent, exist_ok=True)
        self._file = self.fs.open(self.temp, "wb", block_size=BLOCK)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        """Finish the temporary and move it to the destination path."""
        self._file.close()
        self.fs.mv(self.temp, self.path)

    def discard(self) -> None:
        """Remove the temporary (whatever state it is in); never raises."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        with contextlib.suppress(Exception):
            if self.fs.exists(self.temp):
                self.fs.rm_file(self.temp)
