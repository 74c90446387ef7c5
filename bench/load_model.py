"""What the load benchmark uploaded, and what a correct server may answer about it.

Every upload is a :class:`Version` of one distribution (a :class:`Key`). Its bytes are never
stored on the client: they are a unique 16-byte tag followed by a slice of one random pool,
so any range of any version can be rebuilt to check a download, and two versions never share
a checksum. Each distribution keeps one size for all its versions, so a range is valid
whichever version the server answers with.

Which version may a read return? Times are taken on the client, so they bracket what the
server did: an upload was committed after its ``started`` and before its ``ended``. A read
sent at ``t0`` must return a version that was not certainly replaced before ``t0``: version V
is certainly replaced when some acknowledged version W, acknowledged before ``t0``, started
after V ended. The same rule with ``t0`` = the end of the run decides the final state of each
distribution; an acknowledged upload that the final state may not follow is a lost upload.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fusionsync.catalog.digest import FusionHasher, b64

MiB = 2**20
TAG_BYTES = 16
POOL_BYTES = 64 * MiB

Key = tuple[str, str, str, str]
"""(catalog, dataset, series member, format) of a distribution."""


def key_path(key: Key) -> str:
    """The distribution's path under ``{root_url}catalogs/``."""
    catalog, dataset, series, fmt = key
    return f"{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{fmt}"


@dataclass(eq=False, slots=True)
class Version:
    """One upload to a distribution (what was sent, when, and how it ended)."""

    key: Key
    size: int
    offset: int
    tag: bytes
    kind: str
    checksum: str = ""
    """Plain SHA-256 (base64) of the bytes, what ``x-jpmc-checksum`` carries."""
    fsync: str = ""
    """The fsync digest (base64), what the change listing carries."""
    part_digests: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None
    acked: bool = False
    refused: bool = False
    """The server answered with an error: it must never show these bytes."""


class Pool:
    """The random bytes every version is cut from."""

    def __init__(self, size: int = POOL_BYTES) -> None:
        self.data = memoryview(os.urandom(size))

    def new_version(self, key: Key, size: int, kind: str, tag: bytes, offset_seed: int) -> Version:
        """A version of ``size`` bytes (hashed here: call it in a thread for large sizes)."""
        room = len(self.data) - size
        if room < 0:
            raise ValueError(f"a version of {size} bytes does not fit the pool of {len(self.data)}")
        version = Version(key, size, offset_seed % (room + 1), tag, kind)
        hasher = FusionHasher()
        for start in range(0, size, 4 * MiB):
            hasher.update(self.slice(version, start, min(size, start + 4 * MiB)))
        version.checksum = hasher.checksum()
        version.fsync = hasher.fsync_digest()
        version.part_digests = hasher.part_digests_b64()
        return version

    def slice(self, v: Version, start: int, end: int) -> bytes | memoryview:
        """Bytes ``[start, end)`` of version ``v`` (a view of the pool, not a copy, past the tag)."""
        head = min(TAG_BYTES, v.size)
        if start >= head:
            return self.data[v.offset + start : v.offset + end]
        out: list[bytes | memoryview] = []
        if start < head:
            out.append(v.tag[start : min(end, head)])
        low = max(start, head)
        if end > low:
            out.append(self.data[v.offset + low : v.offset + end])
        return b"".join(out)


@dataclass(eq=False, slots=True)
class KeyState:
    """Every version ever sent to one distribution."""

    key: Key
    size: int
    hot: bool = False
    versions: list[Version] = field(default_factory=list)
    by_checksum: dict[str, Version] = field(default_factory=dict)
    by_fsync: dict[str, Version] = field(default_factory=dict)
    first_ack: float | None = None

    def problem(self, v: Version | None, t0: float, what: str) -> str | None:
        """Why answering version ``v`` to a read sent at ``t0`` is wrong, or None when it is right."""
        if v is None:
            return f"{what}: bytes of no upload ever sent to {key_path(self.key)}"
        if v.refused:
            return f"{what}: shows an upload the server refused ({key_path(self.key)})"
        floor = max((w.started for w in self.versions if w.acked and w.ended is not None and w.ended < t0), default=-1)
        if v.ended is not None and v.ended < floor:
            return f"{what}: stale version of {key_path(self.key)} (replaced by an acknowledged upload before the read)"
        return None

    def lost(self, final: Version | None) -> list[Version]:
        """The acknowledged versions that the final state ``final`` may not follow."""
        if final is None or final.refused:
            return [w for w in self.versions if w.acked]
        ended = final.ended if final.ended is not None else math.inf
        return [w for w in self.versions if w.acked and w is not final and ended < w.started]


class Registry:
    """The distributions of the run: their versions, and which are readable (acknowledged)."""

    def __init__(self) -> None:
        self.keys: dict[Key, KeyState] = {}
        self.readable: list[Key] = []
        self.hot: list[Key] = []
        self.series: dict[tuple[str, str], dict[str, float]] = {}
        """(catalog, dataset) → series member → when its first distribution was acknowledged."""
        self.formats: dict[tuple[str, str, str], dict[str, float]] = {}
        self.by_dataset: dict[tuple[str, str], list[Key]] = {}

    def state(self, key: Key, size: int, hot: bool = False) -> KeyState:
        ks = self.keys.get(key)
        if ks is None:
            ks = self.keys[key] = KeyState(key, size, hot)
            if hot:
                self.hot.append(key)
        elif ks.size != size:
            raise ValueError(f"{key_path(key)} keeps {ks.size} bytes, not {size}")
        return ks

    def sent(self, v: Version, now: float) -> None:
        """Record ``v`` just before its first request leaves."""
        ks = self.keys[v.key]
        v.started = now
        ks.versions.append(v)
        ks.by_checksum[v.checksum] = v
        ks.by_fsync[v.fsync] = v

    def finished(self, v: Version, now: float, acked: bool, refused: bool = False) -> None:
        v.ended = now
        v.acked = acked
        v.refused = refused and not acked
        ks = self.keys[v.key]
        if acked and ks.first_ack is None:
            ks.first_ack = now
            catalog, dataset, series, fmt = v.key
            self.readable.append(v.key)
            self.series.setdefault((catalog, dataset), {}).setdefault(series, now)
            self.formats.setdefault((catalog, dataset, series), {})[fmt] = now
            self.by_dataset.setdefault((catalog, dataset), []).append(v.key)


def sha256_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


@dataclass(slots=True)
class KindStats:
    """Counters of one kind of operation."""

    ops: int = 0
    requests: int = 0
    errors: int = 0
    down: int = 0
    up: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "ops": self.ops,
            "ops_per_s": round(self.ops / seconds, 1),
            "requests": self.requests,
            "requests_per_s": round(self.requests / seconds, 1),
            "errors": self.errors,
            "p50_ms": round(percentile(lat, 0.50) * 1000, 1),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else 0.0,
            "mb_down": round(self.down / 1e6, 1),
            "mb_up": round(self.up / 1e6, 1),
        }


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank); 0 when there are none."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Stats:
    """Counters per kind, and the first errors in full."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindStats] = {}
        self.error_types: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def kind(self, name: str) -> KindStats:
        ks = self.kinds.get(name)
        if ks is None:
            ks = self.kinds[name] = KindStats()
        return ks

    def error(self, kind: str, message: str, exc_type: str) -> None:
        self.kind(kind).errors += 1
        self.error_types[f"{kind}: {exc_type}"] += 1
        if len(self.error_samples) < 50:
            self.error_samples.append(f"{kind}: {message}")

    @property
    def errors(self) -> int:
        return sum(k.errors for k in self.kinds.values())
