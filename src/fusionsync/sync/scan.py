"""Local state of a sync pass: a stat walk, digests from the cache, hashing only what changed."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from fusionsync.catalog.digest import FusionHasher
from fusionsync.catalog.layout import TEMP_MARK, DistKey, is_partial
from fusionsync.catalog.listing import parse_time
from fusionsync.client.partial import KEEP_SECONDS
from fusionsync.sync.cache import CachedFile, HashCache
from fusionsync.sync.plan import LocalEntry
from fusionsync.sync.problems import local_failure

T = TypeVar("T")
log = logging.getLogger("fusionsync")
HASH_BLOCK = 2**20


class LocalFile(NamedTuple):
    """A file found by the walk: path relative to the local root, size, modification time."""

    path: str
    size: int
    mtime: float


class Unreadable(NamedTuple):
    """A file (with its distribution) or a folder (``key`` None) the scan could not read."""

    path: str
    reason: str
    key: DistKey | None = None


@dataclass
class LocalScan:
    entries: dict[str, LocalEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    vanished: dict[DistKey, str] = field(default_factory=dict)
    """Distributions whose local file was synced (with this digest) and is gone now."""
    hashed: int = 0
    hashed_bytes: int = 0
    stale_temporaries: int = 0


def is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if root else rel


def walk(
    fs: Any,
    root: str,
    subdirs: list[str],
    unreadable: list[Unreadable] | None = None,
    skipped: list[str] | None = None,
) -> list[LocalFile]:
    """Every file under ``root/subdir`` for each subdir, with paths relative to ``root``.

    Local folders that cannot be listed are added to ``unreadable`` (or raise without it); symbolic
    links and other entries that are not regular files are named in ``skipped``.
    """
    found: list[LocalFile] = []
    for sub in subdirs:
        top = join(root, sub)
        if is_local(fs):
            _walk_os(top, sub, found, unreadable, skipped)
        elif fs.exists(top):
            for path, info in fs.find(top, detail=True).items():
                rel = sub + "/" + path[len(fs._strip_protocol(top)) :].lstrip("/")
                found.append(LocalFile(rel, int(info.get("size") or 0), info_mtime(info)))
    return found


def _walk_os(
    top: str, rel: str, out: list[LocalFile], unreadable: list[Unreadable] | None, skipped: list[str] | None
) -> None:
    try:
        it = os.scandir(top)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if unreadable is None:
            raise
        reason = local_failure(exc, top, "read the folder") + "; its files were left out of this pass"
        unreadable.append(Unreadable(rel, reason))
        return
    with it:
        for entry in it:
            sub = f"{rel}/{entry.name}"
            if entry.is_symlink():
                if skipped is not None:
                    skipped.append(f"{sub}: a symbolic link, which a sync does not follow, so it is skipped")
            elif entry.is_dir(follow_symlinks=False):
                _walk_os(entry.path, sub, out, unreadable, skipped)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                out.append(LocalFile(sub, st.st_size, st.st_mtime_ns / 1e9))
            elif skipped is not None:
                skipped.append(f"{sub}: not a regular file (a device, socket or pipe), so it is skipped")


def info_mtime(info: dict[str, Any]) -> float:
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        timestamp = getattr(value, "timestamp", None)
        if callable(timestamp):
            return float(timestamp())
        parsed = parse_time(str(value))
        if parsed is not None:
            return parsed
        return float(hash(str(value)))  # still tells a change apart
    return 0.0


def hash_file(fs: Any, path: str) -> str:
    """The fsync digest of a file, in one streaming read."""
    hasher = FusionHasher(whole=False)
    opener = open if is_local(fs) else fs.open
    with opener(path, "rb") as fh:
        while chunk := fh.read(HASH_BLOCK):
            hasher.update(chunk)
    return hasher.fsync_digest()


def _hash_or_error(fs: Any, path: str) -> str | OSError:
    try:
        return hash_file(fs, path)
    except OSError as exc:
        return exc


def _hash_batch(fs: Any, paths: list[str]) -> list[str | OSError]:
    return [_hash_or_error(fs, path) for path in paths]


HASH_BATCH_FILES = 64
HASH_BATCH_BYTES = 16 * 2**20


def hash_batches(items: list[T], size_of: Callable[[T], int]) -> list[list[T]]:
    """Files to hash grouped so that one hand-off to a thread covers many small files (a hand-off
    costs more than hashing 4 KiB), while large files still go to threads side by side."""
    batches: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item in items:
        current.append(item)
        size += size_of(item)
        if len(current) >= HASH_BATCH_FILES or size >= HASH_BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


async def scan_local(
    fs: Any,
    root: str,
    subdirs: list[str],
    cache: HashCache,
    key_of: Callable[[str], DistKey | str | None],
    pool: Executor | None = None,
    before_keys: Callable[[list[LocalFile]], Awaitable[None]] | None = None,
    rehash: bool = False,
    note_vanished: bool = False,
) -> LocalScan:
    """Walk the dataset folders, reuse cached digests, hash changed files in threads.

    ``key_of`` maps a relative path to its distribution (a sentence: the file is skipped with that
    warning; None: left out silently), once ``before_keys`` (when given) has seen the files the
    walk found. Stale temporaries of an interrupted transfer are removed, but not the partial of an
    interrupted download (and its record) younger than a week: the next download of it continues
    from there (:mod:`fusionsync.client.partial`). A file or folder that
    cannot be read is listed in ``unreadable`` (the pass reports it failed and leaves its
    distribution alone); a file that vanished since the walk is left out. ``rehash`` hashes every
    file again (finding content that changed while its size and modification time did not).
    ``note_vanished`` fills ``vanished`` (what an upload with deletes needs).
    """
    loop = asyncio.get_running_loop()
    scan = LocalScan()
    files = await loop.run_in_executor(pool, walk, fs, root, subdirs, scan.unreadable, scan.warnings)
    if before_keys is not None:  # what key_of needs to know about the files found
        await before_keys(files)
    cached = cache.load()
    todo: list[tuple[LocalFile, DistKey]] = []
    keep_since = time.time() - KEEP_SECONDS
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if TEMP_MARK in name:
            if is_partial(name) and f.mtime > keep_since:
                continue
            try:
                await loop.run_in_executor(pool, fs.rm_file, join(root, f.path))
            except FileNotFoundError:
                pass
            except OSError as exc:
                scan.warnings.append(local_failure(exc, join(root, f.path), "remove the stale temporary"))
                continue
            scan.stale_temporaries += 1
            continue
        key = key_of(f.path)
        if not isinstance(key, DistKey):
            if key is not None:
                scan.warnings.append(f"{f.path}: {key}")
            continue
        hit = cached.get(f.path)
        if not rehash and hit is not None and hit.size == f.size and hit.mtime == f.mtime:
            scan.entries[f.path] = LocalEntry(f.path, f.size, hit.digest, key, hit.synced_digest, f.mtime)
        else:
            todo.append((f, key))
    if note_vanished:
        _note_vanished(scan, cached, {f.path for f in files}, subdirs, key_of)
    if todo:
        await _hash_all(scan, fs, root, todo, cached, cache, pool)
    return scan


async def _hash_all(
    scan: LocalScan,
    fs: Any,
    root: str,
    todo: list[tuple[LocalFile, DistKey]],
    cached: dict[str, CachedFile],
    cache: HashCache,
    pool: Executor | None,
) -> None:
    loop = asyncio.get_running_loop()
    batches = hash_batches(todo, lambda item: item[0].size)
    done = await asyncio.gather(
        *(loop.run_in_executor(pool, _hash_batch, fs, [join(root, f.path) for f, _ in b]) for b in batches)
    )
    results = [result for batch in done for result in batch]
    hashed: list[tuple[LocalFile, DistKey, str]] = []
    for (f, key), result in zip(todo, results, strict=True):
        if isinstance(result, FileNotFoundError):
            continue
        if isinstance(result, OSError):
            scan.unreadable.append(Unreadable(f.path, local_failure(result, join(root, f.path), "read"), key))
            continue
        hashed.append((f, key, result))
    cache.store((f.path, f.size, f.mtime, d) for f, _, d in hashed)
    for f, key, digest in hashed:
        hit = cached.get(f.path)
        if hit is not None and (hit.size, hit.mtime) == (f.size, f.mtime) and hit.digest != digest:
            scan.warnings.append(
                f"{f.path}: its content changed although its size and modification time did not "
                "(silent corruption, or an edit that restored the time)"
            )
        scan.entries[f.path] = LocalEntry(f.path, f.size, digest, key, hit.synced_digest if hit else None, f.mtime)
        scan.hashed_bytes += f.size
    scan.hashed = len(hashed)


def _note_vanished(
    scan: LocalScan,
    cached: dict[str, CachedFile],
    present: set[str],
    subdirs: list[str],
    key_of: Callable[[str], DistKey | str | None],
) -> None:
    """Remember the synced digest of each distribution whose synced local file is gone."""
    tops = tuple(sub + "/" for sub in subdirs)
    for path, row in cached.items():
        if row.synced_digest is not None and path not in present and path.startswith(tops):
            key = key_of(path)
            if isinstance(key, DistKey):
                scan.vanished[key] = row.synced_digest
