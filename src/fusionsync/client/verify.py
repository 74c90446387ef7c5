"""What a download is checked against: the ``x-jpmc-checksum`` the server announces.

Our server (and the SDK's usual case) sends the plain SHA-256 of the content, base64, with
``x-jpmc-checksum-algorithm: SHA-256``. The SDK also accepts SHA-1, MD5 and CRC32 (the CRC32C
and CRC64NVME it knows need a native library we do not depend on), and a checksum with a
``-N`` suffix, which marks an object uploaded in N parts: S3's composite checksum, the digest
of the concatenated digests of its 5 MiB parts (for one part, the digest of the digest).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fusionsync.catalog.digest import PART_SIZE, b64
from fusionsync.errors import APIError


class _Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC32 with hashlib's interface (the 4 bytes big-endian, as S3 encodes it)."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], _Digest]] = {
    "SHA-256": hashlib.sha256,
    "SHA-1": hashlib.sha1,
    "MD5": hashlib.md5,
    "CRC32": _Crc32,
}


@dataclass(frozen=True, slots=True)
class Expected:
    """The checksum a download must match."""

    algorithm: str
    value: str
    composite: bool

    @classmethod
    def from_headers(cls, headers: Any, what: str) -> Expected:
        """Read ``x-jpmc-checksum`` (and its algorithm); refuse what cannot be verified."""
        value = headers.get("x-jpmc-checksum")
        if not value:
            raise APIError(f"{what}: the server sent no x-jpmc-checksum, so the download cannot be verified")
        algorithm = (headers.get("x-jpmc-checksum-algorithm") or "SHA-256").strip().upper()
        if algorithm not in ALGORITHMS:
            raise APIError(f"{what}: checksum algorithm {algorithm!r} is not supported, so it cannot be verified")
        base, dash, count = value.rpartition("-")
        if dash and count.isdigit():
            return cls(algorithm, base, True)
        return cls(algorithm, value, False)

    def verifier(self) -> Verifier:
        return Verifier(self.algorithm, self.composite)


class Verifier:
    """Hashes a download fed in order (in chunks of any size) the way its checksum was made."""

    def __init__(self, algorithm: str, composite: bool = False, part_size: int = PART_SIZE) -> None:
        self._new = ALGORITHMS[algorithm]
        self._composite = composite
        self._part_size = part_size
        self._whole = self._new()
        self._part = self._new()
        self._part_fill = 0
        self._parts = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if not self._composite:
            self._whole.update(data)
            return
        view = memoryview(data)
        while view:
            piece = view[: self._part_size - self._part_fill]
            self._part.update(piece)
            self._part_fill += len(piece)
            view = view[len(piece) :]
            if self._part_fill == self._part_size:
                self._close_part()

    def _close_part(self) -> None:
        self._whole.update(self._part.digest())
        self._part = self._new()
        self._part_fill = 0
        self._parts += 1

    def result(self) -> str:
        """The base64 checksum of everything fed (call once, at the end)."""
        if self._composite and (self._part_fill or not self._parts):
            self._close_part()
        return b64(self._whole.digest())
