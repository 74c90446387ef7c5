"""The multipart upload protocol, free of HTTP: which parts make a whole, what they hash to, and how they
become one blob.

Parts may have any size from 5 MiB up to 5 GiB (S3's rule; the last part may be smaller). A part of at
most 5 MiB (every part of our own client and of the SDK's default) is written straight into its 5 MiB
slot of the operation's file, so when every part but the last is exactly 5 MiB the file is the blob
as it stands. A larger part is kept in a file of its own, and completion then copies the parts in
order into a new file, hashing as it goes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.server.meta import Part

MAX_PARTS = 10_000
MAX_PART_BYTES = 5 * 2**30
SIDE = "side"
"""The ``blob`` of a part kept in a file of its own (a part in its slot has ``""``)."""
COPY_CHUNK = 4 * 2**20


class UploadProblem(ValueError):
    """Parts that cannot be completed into a distribution (a client error)."""


def check_parts(parts: list[Part], listed: Any) -> None:
    """Parts 1..N all received whole, every one but the last at least 5 MiB; ``listed`` (the completion
    body's ``parts``), when given, names them in order."""
    if not parts:
        raise UploadProblem("the upload has no parts")
    for i, part in enumerate(parts, start=1):
        if part.number != i:
            raise UploadProblem(f"part {i} is missing")
        if part.size < 0:
            raise UploadProblem(f"part {i} was not received whole (digest mismatch or interrupted); send it again")
        if i < len(parts) and part.size < PART_SIZE:
            raise UploadProblem(
                f"part {i} has {part.size} bytes; every part but the last must have at least {PART_SIZE}"
            )
    if listed is not None:
        if not isinstance(listed, list) or len(listed) != len(parts):
            raise UploadProblem(f"'parts' must list the {len(parts)} parts received")
        for i, item in enumerate(listed, start=1):
            if isinstance(item, dict) and item.get("partNumber", i) != i:
                raise UploadProblem(f"'parts' entry {i} names part {item.get('partNumber')!r}")


def parts_digest(parts: list[Part]) -> str:
    """What the client's completion ``Digest`` must say: the one part's SHA-256, or the SHA-256 of the
    concatenated SHA-256s of the parts as they were sent."""
    if len(parts) == 1:
        return parts[0].digest
    return b64(hashlib.sha256(b"".join(base64.b64decode(p.digest) for p in parts)).digest())


def in_place(parts: list[Part]) -> bool:
    """Whether the operation's file is already the whole content (every part in its slot, all but the last
    exactly 5 MiB): then the parts' digest is the fsync digest and nothing needs copying."""
    return all(p.blob != SIDE for p in parts) and all(p.size == PART_SIZE for p in parts[:-1])


def sha256_file(path: Path, size: int) -> str:
    """base64 SHA-256 of the first ``size`` bytes of a file."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        left = size
        while left > 0 and (chunk := fh.read(min(left, COPY_CHUNK))):
            hasher.update(chunk)
            left -= len(chunk)
    return b64(hasher.digest())


def assemble(parts: list[Part], slots: Path, side: Callable[[int], Path], dest: Path) -> tuple[int, str, str]:
    """Copy the parts in order into ``dest``; return its size, fsync digest and SHA-256 (blocking)."""
    hasher = FusionHasher()
    total = 0
    with open(dest, "wb") as out:
        for part in parts:
            source, offset = (side(part.number), 0) if part.blob == SIDE else (slots, (part.number - 1) * PART_SIZE)
            with open(source, "rb") as fh:
                fh.seek(offset)
                left = part.size
                while left > 0:
                    chunk = fh.read(min(left, COPY_CHUNK))
                    if not chunk:
                        raise UploadProblem(f"part {part.number} is shorter than recorded")
                    hasher.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            total += part.size
    return total, hasher.fsync_digest(), hasher.checksum()
