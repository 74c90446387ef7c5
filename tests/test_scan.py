"""The local scan: digests of changed files, hashed many to a thread hand-off."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import fsspec

from fusionsync.catalog.digest import b64
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.cache import HashCache
from fusionsync.sync.naming import LocalNames
from fusionsync.sync.scan import HASH_BATCH_BYTES, HASH_BATCH_FILES, hash_batches, scan_local


def test_hash_batches_close_at_a_file_count_or_a_byte_total() -> None:
    small = [("s", 10)] * (2 * HASH_BATCH_FILES + 5)
    batches = hash_batches(small, lambda item: item[1])
    assert [len(b) for b in batches] == [HASH_BATCH_FILES, HASH_BATCH_FILES, 5]
    big = HASH_BATCH_BYTES // 2 + 1
    mixed = [("a", 10), ("b", big), ("c", big), ("d", 10), ("e", HASH_BATCH_BYTES), ("f", 10)]
    assert [[name for name, _ in b] for b in hash_batches(mixed, lambda item: item[1])] == [
        ["a", "b", "c"],
        ["d", "e"],
        ["f"],
    ]
    assert hash_batches([], lambda item: 0) == []


def test_every_file_of_a_scan_gets_its_own_digest(tmp_path: Path) -> None:
    """More files than one batch holds, each with distinct bytes: no digest lands on the wrong file."""
    root = tmp_path / "root"
    expected: dict[str, str] = {}
    for i in range(2 * HASH_BATCH_FILES + 7):
        key = DistKey("cat", f"D{i % 3}", f"2024{i:04}", "csv")
        rel = local_relative_path(key)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"file {i}\n".encode() * (i + 1)
        path.write_bytes(data)
        expected[rel] = b64(hashlib.sha256(data).digest())
    cache = HashCache(tmp_path / "cache.sqlite")
    try:
        scan = asyncio.run(
            scan_local(
                fsspec.filesystem("file"),
                str(root),
                [f"cat/D{d}" for d in range(3)],
                cache,
                LocalNames("cat", [f"D{d}" for d in range(3)]).key_of,
            )
        )
        assert {rel: entry.digest for rel, entry in scan.entries.items()} == expected
        assert scan.hashed == len(expected)
        assert {rel: hit.digest for rel, hit in cache.load().items()} == expected  # remembered for the next pass
    finally:
        cache.close()
