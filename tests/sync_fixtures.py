"""Shared pieces of the sync tests: a seeded server, a client, local trees."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import fsspec

from fusionsync.catalog.layout import DistKey, file_name, local_relative_path
from tests.helpers import RunningServer


def payload(key: DistKey, size: int = 1000, version: int = 0) -> bytes:
    """Deterministic bytes for a distribution."""
    seed = hashlib.sha256(f"{key}{version}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def seed(
    server: RunningServer, catalog: str, layout: dict[str, dict[str, list[str]]], size: int = 1000
) -> list[DistKey]:
    """Create datasets {dataset: {series: [formats]}} with deterministic distributions."""
    keys = []
    for dataset, members in layout.items():
        server.create_dataset(catalog, dataset)
        for series, formats in members.items():
            for fmt in formats:
                key = DistKey(catalog, dataset, series, fmt)
                answer = server.upload(catalog, dataset, series, fmt, payload(key, size))
                assert answer.status == 200, answer.body
                keys.append(key)
    return keys


def local_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path → bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_local(root: Path, key: DistKey, data: bytes, flatten: bool = False) -> Path:
    path = root / local_relative_path(key, flatten)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def local_fs() -> Any:
    return fsspec.filesystem("file")


def remote_bytes(server: RunningServer, key: DistKey) -> bytes | None:
    path = (
        f"catalogs/{key.catalog}/datasets/{key.dataset}/datasetseries/{key.series}/distributions/{key.format}"
        "/operationType/download"
    )
    answer = server.api("GET", path)
    return answer.body if answer.status == 200 else None


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if ".fusionsync-tmp-" in p.name or p.name.startswith(".")]


__all__ = ["file_name", "local_files", "local_fs", "no_temporaries", "os", "payload", "remote_bytes", "seed"]


def sync_once(fs: Any, root: Path, log_path: Path, **kw: Any) -> Any:
    """One pass of ``fusionsync.fsync`` between ``fs`` and the local folder ``root`` (catalog ``cat`` unless given)."""
    from fusionsync import fsync

    kw.setdefault("catalog", "cat")
    kw.setdefault("show_progress", False)
    report = fsync(fs, local_fs(), local_path=str(root), log_path=str(log_path), once=True, **kw)
    assert report is not None
    return report
