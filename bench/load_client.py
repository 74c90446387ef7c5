"""One simulated user of the load benchmark: a loop of random operations, every answer checked.

A client speaks the REST API with raw aiohttp (one connection pool each, a bearer token from
the OAuth2 endpoint, a fusion token per dataset); ``bench/load_fs.py`` has the clients that
use ``FusionFileSystem`` instead. Nothing is retried: any unexpected status, connection error or
wrong byte is an error of the operation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.load_model import Key, KindStats, MiB, Pool, Registry, Stats, Version, key_path
from fusionsync.catalog.digest import PART_SIZE

NEXT_TOKEN = "x-jpmc-next-token"
DATES = {
    "x-jpmc-distribution-from-date": "2024-01-01",
    "x-jpmc-distribution-to-date": "2199-12-31",
    "x-jpmc-distribution-created-date": "2024-01-01",
}
FORMATS = ["csv", "parquet", "json", "bin"]
READ_CHUNK = 2**20
Op = Callable[[KindStats], Awaitable[None]]


class Failure(Exception):
    """An answer a correct server would not give."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Shared:
    """What every client of one run shares."""

    root_url: str
    auth_url: str
    credentials: dict[str, Any]
    credentials_file: str
    registry: Registry
    pool: Pool
    stats: Stats
    datasets: dict[str, list[str]]
    """Catalog → its datasets (all seeded before the run)."""
    upload_datasets: list[tuple[str, str]]
    deadline: float = math.inf
    tags: itertools.count[int] = field(default_factory=itertools.count)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def upload_size(rng: random.Random, multipart: bool) -> int:
    """A size for a new distribution: mostly small, some of several MiB, some at part boundaries."""
    if multipart:
        if rng.random() < 0.2:
            return rng.choice([PART_SIZE + 1, 2 * PART_SIZE, 2 * PART_SIZE + 1])
        return rng.randint(PART_SIZE + 1, 3 * PART_SIZE)
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([PART_SIZE, PART_SIZE - 1, 16, 17])
    if roll < 0.8:
        return int(math.exp(rng.uniform(math.log(16), math.log(256 * 1024))))
    return rng.randint(256 * 1024, PART_SIZE)


class Client:
    """One user: its own connection pool and tokens, its own uploads (which it may replace)."""

    def __init__(self, shared: Shared, index: int) -> None:
        self.s = shared
        self.index = index
        self.rng = random.Random(index)
        self.session: aiohttp.ClientSession | None = None
        self.api_token = ""
        self.fusion: dict[tuple[str, str], str] = {}
        self.own: list[Key] = []
        self.seq = 0

    def operations(self) -> list[tuple[str, Op, int]]:
        """(kind, operation, weight) of what this client does."""
        return [
            ("token", self.token, 1),
            ("list_catalogs", self.list_catalogs, 3),
            ("list_datasets", self.list_datasets, 5),
            ("list_series", self.list_series, 6),
            ("list_distributions", self.list_distributions, 6),
            ("changes", self.changes, 5),
            ("head", self.head, 5),
            ("download", self.download, 12),
            ("download_range", self.download_range, 14),
            ("upload_single", self.upload_single, 14),
            ("upload_multipart", self.upload_multipart, 3),
            ("replace_single", self.replace_single, 5),
            ("replace_multipart", self.replace_multipart, 2),
        ]

    # -- the loop ---------------------------------------------------------------------------
    def open_session(self, limit: int = 4) -> None:
        timeout = aiohttp.ClientTimeout(total=300, sock_connect=30, sock_read=120)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=timeout)

    @contextlib.asynccontextmanager
    async def own_session(self, limit: int = 8) -> AsyncIterator[None]:
        """A connection pool for the duration of a ``with`` block (seeding, the final check)."""
        self.open_session(limit)
        try:
            yield
        finally:
            assert self.session is not None
            await self.session.close()

    async def start(self) -> bool:
        """Open the connection pool and fetch the tokens; False when that failed (an error is counted)."""
        self.open_session()
        return await self.op("token_first", self.first_tokens)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def run(self) -> None:
        """Random operations until the deadline (an operation under way is finished)."""
        try:
            if not await self.start():
                return
            table = self.operations()
            names = [name for name, _, _ in table]
            weights = [w for _, _, w in table]
            ops = {name: op for name, op, _ in table}
            while time.monotonic() < self.s.deadline:
                name = self.rng.choices(names, weights)[0]
                await self.op(name, ops[name])
        finally:
            await self.stop()

    async def op(self, name: str, op: Op) -> bool:
        stats = self.s.stats.kind(name)
        start = time.perf_counter()
        try:
            await op(stats)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.s.stats.error(name, describe(exc), type(exc).__name__)
            return False
        stats.ops += 1
        stats.latencies.append(time.perf_counter() - start)
        return True

    # -- HTTP -------------------------------------------------------------------------------
    async def call(
        self,
        ks: KindStats,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        fusion: Key | None = None,
        **kw: Any,
    ) -> tuple[Any, bytes]:
        """One request to ``{root_url}catalogs/{path}``; the answer's headers and body."""
        assert self.session is not None
        all_headers = {"Authorization": f"Bearer {self.api_token}", **(headers or {})}
        if fusion is not None:
            all_headers["Fusion-Authorization"] = f"Bearer {self.fusion[(fusion[0], fusion[1])]}"
        ks.requests += 1
        async with self.session.request(method, self.s.root_url + "catalogs/" + path, headers=all_headers, **kw) as r:
            body = await r.read()
            if r.status not in expect:
                raise Failure(f"{method} {path}: HTTP {r.status} {body[:300]!r}", r.status)
            return r.headers, body

    async def collection(self, ks: KindStats, path: str, fusion: Key | None = None) -> dict[str, dict[str, Any]]:
        """The items of a collection by identifier, every page of it."""
        items: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            page_headers = {NEXT_TOKEN: token} if token else None
            headers, body = await self.call(ks, "GET", path, headers=page_headers, fusion=fusion)
            items.update((str(item["identifier"]), item) for item in json.loads(body)["resources"])
            token = headers.get(NEXT_TOKEN)
            if not token:
                return items

    async def api_token_request(self, ks: KindStats) -> None:
        assert self.session is not None
        creds = self.s.credentials
        form = {
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "aud": creds["resource"],
        }
        ks.requests += 1
        async with self.session.post(self.s.auth_url, data=form) as r:
            body = await r.read()
            if r.status != 200:
                raise Failure(f"POST {self.s.auth_url}: HTTP {r.status} {body[:300]!r}", r.status)
            self.api_token = json.loads(body)["access_token"]

    async def fusion_token(self, ks: KindStats, catalog: str, dataset: str) -> None:
        _, body = await self.call(ks, "GET", f"{catalog}/datasets/{dataset}/authorize/token")
        self.fusion[(catalog, dataset)] = json.loads(body)["access_token"]

    async def first_tokens(self, ks: KindStats) -> None:
        await self.api_token_request(ks)
        for catalog, datasets in self.s.datasets.items():
            for dataset in datasets:
                await self.fusion_token(ks, catalog, dataset)

    async def token(self, ks: KindStats) -> None:
        await self.api_token_request(ks)
        catalog = self.rng.choice(list(self.s.datasets))
        await self.fusion_token(ks, catalog, self.rng.choice(self.s.datasets[catalog]))

    # -- listings ---------------------------------------------------------------------------
    async def list_catalogs(self, ks: KindStats) -> None:
        missing = set(self.s.datasets) - set(await self.collection(ks, ""))
        if missing:
            raise Failure(f"catalog listing misses {sorted(missing)}")

    async def list_datasets(self, ks: KindStats) -> None:
        catalog = self.rng.choice(list(self.s.datasets))
        missing = set(self.s.datasets[catalog]) - set(await self.collection(ks, f"{catalog}/datasets"))
        if missing:
            raise Failure(f"dataset listing of {catalog} misses {sorted(missing)}")

    def _some_dataset(self) -> tuple[str, str]:
        if self.rng.random() < 0.8:
            return self.rng.choice(self.s.upload_datasets)
        catalog = self.rng.choice(list(self.s.datasets))
        return catalog, self.rng.choice(self.s.datasets[catalog])

    async def list_series(self, ks: KindStats) -> None:
        catalog, dataset = self._some_dataset()
        t0 = time.monotonic()
        listed = await self.collection(ks, f"{catalog}/datasets/{dataset}/datasetseries")
        known = self.s.registry.series.get((catalog, dataset), {})
        missing = [s for s, when in list(known.items()) if when < t0 and s not in listed]
        if missing:
            raise Failure(f"series listing of {catalog}/{dataset} misses {len(missing)} members, e.g. {missing[:3]}")

    def _readable(self) -> Key:
        reg = self.s.registry
        if reg.hot and self.rng.random() < 0.2:
            return self.rng.choice(reg.hot)
        return self.rng.choice(reg.readable)

    async def list_distributions(self, ks: KindStats) -> None:
        catalog, dataset, series, _ = self._readable()
        t0 = time.monotonic()
        path = f"{catalog}/datasets/{dataset}/datasetseries/{series}/distributions"
        listed = await self.collection(ks, path, fusion=(catalog, dataset, series, ""))
        known = self.s.registry.formats.get((catalog, dataset, series), {})
        missing = [f for f, when in list(known.items()) if when < t0 and f not in listed]
        if missing:
            raise Failure(f"distributions of {catalog}/{dataset}/{series} miss {missing}")
        for fmt, item in listed.items():
            state = self.s.registry.keys.get((catalog, dataset, series, fmt))
            if state is None:
                continue
            checksum = str(item.get("checksum", "")).removeprefix("SHA-256=")
            problem = state.problem(state.by_checksum.get(checksum), t0, "distribution listing")
            if problem is None and item.get("size") != state.size:
                problem = f"distribution listing: size {item.get('size')} of {fmt}, expected {state.size}"
            if problem:
                raise Failure(problem)

    async def changes(self, ks: KindStats) -> None:
        catalog, _ = self.rng.choice(self.s.upload_datasets)
        pool = [d for c, d in self.s.upload_datasets if c == catalog]
        wanted = self.rng.sample(pool, 2 if len(pool) > 1 and self.rng.random() < 0.3 else 1)
        t0 = time.monotonic()
        _, body = await self.call(ks, "GET", f"{catalog}/datasets/changes", params={"datasets": ",".join(wanted)})
        seen: set[Key] = set()
        for entry in json.loads(body)["datasets"]:
            for row in entry["distributions"]:
                _, series, name = row["key"].split("/")
                key = (catalog, str(entry["key"]), series, name.removeprefix("distribution."))
                seen.add(key)
                state = self.s.registry.keys.get(key)
                if state is None:
                    continue
                values = row["values"]
                problem = state.problem(state.by_fsync.get(values[2].removeprefix("SHA-256=")), t0, "change listing")
                if problem is None and int(values[1]) != state.size:
                    problem = f"change listing: size {values[1]} for {key_path(key)}, expected {state.size}"
                if problem:
                    raise Failure(problem)
        for dataset in wanted:
            for key in list(self.s.registry.by_dataset.get((catalog, dataset), [])):
                first = self.s.registry.keys[key].first_ack
                if first is not None and first < t0 and key not in seen:
                    raise Failure(f"change listing misses {key_path(key)}")

    # -- downloads --------------------------------------------------------------------------
    def _version(self, key: Key, checksum: str | None, t0: float, what: str) -> Version:
        state = self.s.registry.keys[key]
        version = state.by_checksum.get(checksum or "")
        problem = state.problem(version, t0, what)
        if problem:
            raise Failure(problem)
        assert version is not None
        return version

    async def head(self, ks: KindStats) -> None:
        key = self._readable()
        t0 = time.monotonic()
        suffix = "/operationType/download" if self.rng.random() < 0.5 else ""
        headers, _ = await self.call(ks, "HEAD", key_path(key) + suffix, fusion=key)
        self._version(key, headers.get("x-jpmc-checksum"), t0, "HEAD")
        if int(headers.get("Content-Length", -1)) != self.s.registry.keys[key].size:
            raise Failure(f"HEAD {key_path(key)}: Content-Length {headers.get('Content-Length')} in {dict(headers)}")

    async def download(self, ks: KindStats) -> None:
        assert self.session is not None
        key = self._readable()
        t0 = time.monotonic()
        suffix = self.rng.choices(["/operationType/download", "", "/files/operationType/download"], [7, 2, 1])[0]
        headers = {
            "Authorization": f"Bearer {self.api_token}",
            "Fusion-Authorization": f"Bearer {self.fusion[(key[0], key[1])]}",
        }
        ks.requests += 1
        hasher = hashlib.sha256()
        got = 0
        url = self.s.root_url + "catalogs/" + key_path(key) + suffix
        async with self.session.get(url, headers=headers) as r:
            if r.status != 200:
                raise Failure(f"GET {key_path(key)}: HTTP {r.status} {(await r.read())[:300]!r}", r.status)
            async for chunk in r.content.iter_chunked(READ_CHUNK):
                hasher.update(chunk)
                got += len(chunk)
            checksum = r.headers.get("x-jpmc-checksum")
        ks.down += got
        version = self._version(key, checksum, t0, "download")
        if got != version.size or hasher.digest() != base64.b64decode(version.checksum):
            raise Failure(f"download of {key_path(key)}: {got} bytes that do not match the announced version")

    def _span(self, size: int) -> tuple[int, int]:
        length = max(1, int(math.exp(self.rng.uniform(0, math.log(min(size, 8 * MiB) + 1)))))
        length = min(length, size)
        first = self.rng.randrange(size - length + 1)
        return first, first + length - 1

    def _range(self, size: int) -> tuple[str, int, int]:
        """A byte range as clients write it (``a-b``, sometimes ``a-`` or ``-n``) and the bytes it means."""
        first, last = self._span(size)
        roll = self.rng.random()
        if roll < 0.1:
            return f"bytes={first}-", first, size - 1
        if roll < 0.2:
            return f"bytes=-{last - first + 1}", size - (last - first + 1), size - 1
        return f"bytes={first}-{last}", first, last

    async def download_range(self, ks: KindStats) -> None:
        key = self._readable()
        size = self.s.registry.keys[key].size
        while size == 0:
            key = self._readable()
            size = self.s.registry.keys[key].size
        spec, first, last = self._range(size)
        t0 = time.monotonic()
        kw: dict[str, Any] = {"params": {"downloadRange": spec}}
        if self.rng.random() < 0.3:
            kw = {"headers": {"Range": spec}}
        whole = (first, last) == (0, size - 1)
        headers, body = await self.call(
            ks,
            "GET",
            key_path(key) + "/operationType/download",
            expect=(206, 200) if whole else (206,),
            fusion=key,
            **kw,
        )
        ks.down += len(body)
        version = self._version(key, headers.get("x-jpmc-checksum"), t0, "ranged download")
        if body != self.s.pool.slice(version, first, last + 1):
            raise Failure(f"ranged download {spec} of {key_path(key)}: {len(body)} bytes, not the uploaded ones")
        if headers.get("Content-Range", f"bytes {first}-{last}/{size}") != f"bytes {first}-{last}/{size}":
            raise Failure(f"ranged download {spec} of {key_path(key)}: Content-Range {headers['Content-Range']}")

    # -- uploads ----------------------------------------------------------------------------
    async def new_version(self, key: Key, size: int, kind: str, hot: bool = False) -> Version:
        self.s.registry.state(key, size, hot)
        tag = next(self.s.tags).to_bytes(8, "big") + os.urandom(8)
        seed = self.rng.getrandbits(32)
        if size < MiB:
            return self.s.pool.new_version(key, size, kind, tag, seed)
        return await asyncio.to_thread(self.s.pool.new_version, key, size, kind, tag, seed)

    def new_key(self) -> Key:
        catalog, dataset = self.rng.choice(self.s.upload_datasets)
        self.seq += 1
        return catalog, dataset, f"c{self.index:03d}n{self.seq:05d}", self.rng.choice(FORMATS)

    async def send(self, ks: KindStats, version: Version, sender: Callable[[], Awaitable[bytes]]) -> None:
        """Record ``version`` as sent, run the upload, record how it ended, check the answer."""
        reg = self.s.registry
        reg.sent(version, time.monotonic())
        try:
            answer = await sender()
        except Failure as exc:
            reg.finished(version, time.monotonic(), acked=False, refused=exc.status is not None and exc.status < 500)
            raise
        except BaseException:
            reg.finished(version, time.monotonic(), acked=False)
            raise
        reg.finished(version, time.monotonic(), acked=True)
        ks.up += version.size
        checksum = json.loads(answer).get("checksum")
        if checksum != f"SHA-256={version.checksum}":
            raise Failure(f"upload to {key_path(version.key)} answered checksum {checksum!r}")

    async def put_single(self, ks: KindStats, version: Version) -> None:
        headers = {
            **DATES,
            "Digest": f"SHA-256={version.fsync}",
            "Content-Type": "application/octet-stream",
        }
        if self.rng.random() < 0.2:
            headers["File-Name"] = f"{version.key[1]}__{version.key[0]}__{version.key[2]}.{version.key[3]}"
        data = self.s.pool.slice(version, 0, version.size)

        async def sender() -> bytes:
            _, body = await self.call(ks, "PUT", key_path(version.key), headers=headers, data=data, fusion=version.key)
            return body

        await self.send(ks, version, sender)

    async def put_multipart(self, ks: KindStats, version: Version) -> None:
        path = key_path(version.key)
        count = len(version.part_digests)
        parallel = self.rng.choice([1, 1, 2, 3])

        async def sender() -> bytes:
            _, body = await self.call(ks, "POST", path + "/operationType/upload", headers=DATES, fusion=version.key)
            op_id = json.loads(body)["operationId"]
            answers: list[Any] = [None] * count
            gate = asyncio.Semaphore(parallel)

            async def part(i: int) -> None:
                async with gate:
                    data = self.s.pool.slice(version, i * PART_SIZE, min(version.size, (i + 1) * PART_SIZE))
                    headers = {
                        "Digest": f"SHA-256={version.part_digests[i]}",
                        "Content-Type": "application/octet-stream",
                    }
                    url = f"{path}/operations/upload?operationId={op_id}&partNumber={i + 1}"
                    _, answer = await self.call(ks, "PUT", url, headers=headers, data=data, fusion=version.key)
                    answers[i] = json.loads(answer)

            order = list(range(count))
            if parallel > 1:
                self.rng.shuffle(order)
            await asyncio.gather(*(part(i) for i in order))
            done = {**DATES, "Digest": f"SHA-256={version.fsync}"}
            url = f"{path}/operations/upload?operationId={op_id}"
            _, body = await self.call(ks, "POST", url, headers=done, json={"parts": answers}, fusion=version.key)
            return body

        await self.send(ks, version, sender)

    async def upload_single(self, ks: KindStats) -> None:
        key = self.new_key()
        await self.put_single(ks, await self.new_version(key, upload_size(self.rng, False), "upload_single"))
        self.own.append(key)

    async def upload_multipart(self, ks: KindStats) -> None:
        key = self.new_key()
        await self.put_multipart(ks, await self.new_version(key, upload_size(self.rng, True), "upload_multipart"))
        self.own.append(key)

    def _replaceable(self, multipart: bool) -> tuple[Key, bool] | None:
        """One of this client's own distributions, or (contended) one of the hot ones."""
        reg = self.s.registry
        own = [k for k in self.own[-50:] if (reg.keys[k].size > PART_SIZE) == multipart]
        if own and self.rng.random() < 0.5:
            return self.rng.choice(own), False
        hot = [k for k in reg.hot if (reg.keys[k].size > PART_SIZE) == multipart]
        return (self.rng.choice(hot), True) if hot else None

    async def replace_single(self, ks: KindStats) -> None:
        target = self._replaceable(False)
        if target is not None:
            key, hot = target
            await self.put_single(ks, await self.new_version(key, self.s.registry.keys[key].size, "replace", hot))

    async def replace_multipart(self, ks: KindStats) -> None:
        target = self._replaceable(True)
        if target is not None:
            key, hot = target
            await self.put_multipart(ks, await self.new_version(key, self.s.registry.keys[key].size, "replace", hot))
