"""The Fusion digests, computed in one streaming pass.

Fusion describes a file by two SHA-256 based digests, both base64 encoded:

* the **fsync digest**: the file is cut into 5 MiB parts; a file of one part (or an empty
  file) has the SHA-256 of its bytes, a larger one the SHA-256 of the concatenated raw
  SHA-256 digests of its parts. The change listing reports it and uploads send it.
* the **checksum**: the plain SHA-256 of the whole content, sent in ``x-jpmc-checksum``
  on downloads.

:class:`FusionHasher` accepts bytes in chunks of any size and yields both, plus each
part's own digest (what a multipart upload sends per part).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

PART_SIZE = 5 * 2**20
"""Size of one part of a multipart upload and of one unit of the fsync digest."""


def b64(raw: bytes) -> str:
    """Base64-encode a raw digest the way Fusion headers carry it."""
    return base64.b64encode(raw).decode("ascii")


class FusionHasher:
    """Streaming computation of the fsync digest, the whole-file checksum and part digests."""

    __slots__ = ("_outer", "_part", "_part_fill", "_part_size", "_whole", "part_digests", "size")

    def __init__(self, part_size: int = PART_SIZE, whole: bool = True) -> None:
        self._part_size = part_size
        self._outer = hashlib.sha256()
        self._whole = hashlib.sha256() if whole else None
        self._part = hashlib.sha256()
        self._part_fill = 0
        self.part_digests: list[bytes] = []
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file."""
        view = memoryview(data)
        if self._whole is not None:
            self._whole.update(view)
        self.size += len(view)
        while view:
            room = self._part_size - self._part_fill
            piece = view[:room]
            self._part.update(piece)
            self._part_fill += len(piece)
            view = view[len(piece) :]
            if self._part_fill == self._part_size:
                self._close_part()

    def _close_part(self) -> None:
        raw = self._part.digest()
        self.part_digests.append(raw)
        self._outer.update(raw)
        self._part = hashlib.sha256()
        self._part_fill = 0

    def _parts(self) -> list[bytes]:
        if self._part_fill or not self.part_digests:
            return [*self.part_digests, self._part.digest()]
        return self.part_digests

    def fsync_digest(self) -> str:
        """The fsync digest (base64) of everything fed so far."""
        parts = self._parts()
        if len(parts) == 1:
            return b64(parts[0])
        outer = self._outer.copy()
        for raw in parts[len(self.part_digests) :]:
            outer.update(raw)
        return b64(outer.digest())

    def checksum(self) -> str:
        """The plain SHA-256 (base64) of everything fed so far (needs ``whole=True``)."""
        if self._whole is None:
            raise ValueError("this hasher was created with whole=False")
        return b64(self._whole.digest())

    def part_digests_b64(self) -> list[str]:
        """Each part's own SHA-256 (base64), in order; one part for an empty file."""
        return [b64(raw) for raw in self._parts()]


def fsync_digest_of(chunks: Iterable[bytes], part_size: int = PART_SIZE) -> str:
    """The fsync digest of the bytes yielded by ``chunks``."""
    hasher = FusionHasher(part_size)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.fsync_digest()


def file_digests(path: str, block: int = 2**20, whole: bool = True) -> FusionHasher:
    """Hash a local file in one streaming read; the result holds every digest."""
    hasher = FusionHasher(whole=whole)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            hasher.update(chunk)
    return hasher


def parse_digest_header(value: str | None) -> str | None:
    """Extract the base64 SHA-256 from a ``Digest: SHA-256=<b64>`` header, or None."""
    if not value:
        return None
    for item in value.split(","):
        algo, _, digest = item.strip().partition("=")
        if algo.strip().lower() == "sha-256" and digest:
            return digest.strip()
    return None
