"""A distribution opened as a file: ``fs.open(path)`` and ``fsspec.open("fusion://…")``.

Reading fetches blocks with ranged GETs (fsspec's read-ahead cache). Writing spools to a local
temporary file and uploads it on ``close()`` (multipart above 5 MiB, with its digests), so a
distribution appears whole or not at all, whatever the size written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING, Any

from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

from fusionsync.errors import UsageError

if TYPE_CHECKING:
    from fusionsync.client.filesystem import FusionFileSystem


class FusionFile(AbstractBufferedFile):  # type: ignore[misc]
    """Read (``rb``) or write (``wb``) one distribution."""

    DEFAULT_BLOCK_SIZE = 5 * 2**20

    def __init__(
        self, fs: FusionFileSystem, path: str, mode: str = "rb", block_size: Any = "default", **kw: Any
    ) -> None:
        if mode not in ("rb", "wb"):
            raise UsageError(f"{path}: mode {mode!r} is not supported (use 'rb' or 'wb')")
        if fs.loop is None:
            raise UsageError(f"{path}: files need a filesystem created with asynchronous=False")
        self._spool: Any = None
        kw.setdefault("cache_type", "readahead")
        super().__init__(fs, path, mode, block_size, autocommit=True, **kw)

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = sync(self.fs.loop, self.fs._cat_file, self.path, start=start, end=end)
        return data

    def _initiate_upload(self) -> None:
        self._spool = tempfile.NamedTemporaryFile(prefix="fusionsync-", delete=False)  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        if self._spool is None:  # everything fitted in one block: nothing spooled yet
            self._initiate_upload()
        self.buffer.seek(0)
        self._spool.write(self.buffer.read())
        if final:
            self._spool.close()
            try:
                sync(self.fs.loop, self.fs._put_file, self._spool.name, self.path)
            finally:
                self._discard()
        return True

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None and self.writable() and not getattr(self, "closed", True):
            self.discard()  # a block that raised uploads nothing, not a truncated distribution
            self.closed = True
            return
        self.close()

    def discard(self) -> None:
        """Drop what was written: nothing is uploaded."""
        self._discard()

    def _discard(self) -> None:
        if self._spool is not None:
            self._spool.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._spool.name)
            self._spool = None
