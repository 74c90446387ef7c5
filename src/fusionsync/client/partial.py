"""The resumable partial of a download: a hidden temporary beside the destination and a record of it.

The record (a small JSON file, also hidden) names what the partial is of (the distribution's path,
size and checksum, as its HEAD announced them) and its extent: the bytes from the start that were
written and read back into the running checksum. A later download of the same version continues
from there with ranged requests; a different version (another size or checksum) discards the
partial. The final checksum over the whole file still decides: a partial damaged meanwhile fails
it, and is then discarded. Only a verified file is ever renamed to the destination path.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from fusionsync.catalog.layout import partial_names, temp_name

KEEP_SECONDS = 7 * 86400
"""How long a sync pass keeps a partial nobody continued (a download of it resets its age)."""


@dataclass
class Partial:
    temp: str
    record: str
    pending: str
    """Where a new record is written before it replaces the old one."""
    source: dict[str, Any]

    @classmethod
    def open(cls, dest: str, source: dict[str, Any]) -> tuple[Partial, int, int]:
        """The partial for ``dest`` (opened read-write) and the extent it can continue from (0: from scratch)."""
        folder, name = os.path.split(os.path.abspath(dest))
        temp, record = (os.path.join(folder, n) for n in partial_names(name))
        partial = cls(temp, record, os.path.join(folder, temp_name(name, "partial.new")), source)
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            extent = partial._saved_extent(os.fstat(fd).st_size)
            if extent == 0 and os.fstat(fd).st_size:  # another version's bytes, or no record of them
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return partial, fd, extent

    def _saved_extent(self, on_disk: int) -> int:
        try:
            with open(self.record, encoding="utf-8") as fh:
                saved = json.load(fh)
            extent = int(saved["extent"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        if saved.get("source") != self.source or not 0 <= extent <= min(on_disk, int(self.source["size"])):
            return 0
        return extent

    def save(self, extent: int) -> None:
        """Record that the first ``extent`` bytes are in (written whole, then replaced: never half a record)."""
        with open(self.pending, "w", encoding="utf-8") as fh:
            json.dump({"source": self.source, "extent": extent}, fh)
        os.replace(self.pending, self.record)

    def forget(self) -> None:
        """Remove the record (the partial became the destination, or is being discarded)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record)

    def discard(self) -> None:
        self.forget()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)
