"""Clients of the load benchmark that go through ``FusionFileSystem`` (retries off), as applications do.

Their listings, whole and ranged reads and uploads (parts sent in parallel) are checked like
those of the raw clients. Requests are counted per call of the filesystem's HTTP layer
(token requests excluded).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load_client import Client, Failure, Op, Shared, upload_size
from bench.load_model import KindStats, MiB, key_path, sha256_b64
from fusionsync import FusionFileSystem
from fusionsync.errors import APIError, AuthError, NotFoundError


class FsClient(Client):
    """One application using a ``FusionFileSystem`` of its own."""

    def __init__(self, shared: Shared, index: int) -> None:
        super().__init__(shared, index)
        self.fs = FusionFileSystem(credentials=shared.credentials_file, retries=0, asynchronous=True)
        self.current = KindStats()
        http = self.fs.http
        call, stream = http.call, http.stream

        def counted_call(*args: Any, **kw: Any) -> Any:
            self.current.requests += 1
            return call(*args, **kw)

        def counted_stream(*args: Any, **kw: Any) -> Any:
            self.current.requests += 1
            return stream(*args, **kw)

        http.call = counted_call  # type: ignore[method-assign]
        http.stream = counted_stream  # type: ignore[method-assign]

    def operations(self) -> list[tuple[str, Op, int]]:
        return [
            ("fs_ls", self.fs_ls, 6),
            ("fs_cat", self.fs_cat, 6),
            ("fs_cat_range", self.fs_cat_range, 6),
            ("fs_pipe", self.fs_pipe, 5),
        ]

    async def start(self) -> bool:
        return True  # the filesystem fetches its tokens when it needs them

    async def stop(self) -> None:
        await self.fs._close()

    async def op(self, name: str, op: Op) -> bool:
        self.current = self.s.stats.kind(name)
        return await super().op(name, op)

    async def fs_ls(self, ks: KindStats) -> None:
        if self.rng.random() < 0.5:
            catalog, dataset = self._some_dataset()
            t0 = time.monotonic()
            names = await self.fs._ls(f"{catalog}/datasets/{dataset}/datasetseries", detail=False)
            listed = {n.rsplit("/", 1)[-1] for n in names}
            known = self.s.registry.series.get((catalog, dataset), {})
        else:
            catalog, dataset, series, _ = self._readable()
            t0 = time.monotonic()
            entries = await self.fs._ls(f"{catalog}/datasets/{dataset}/datasetseries/{series}/distributions")
            listed = {str(e["name"]).rsplit("/", 1)[-1] for e in entries}
            known = self.s.registry.formats.get((catalog, dataset, series), {})
        missing = [name for name, when in list(known.items()) if when < t0 and name not in listed]
        if missing:
            raise Failure(f"FusionFileSystem listing of {catalog}/{dataset} misses {missing[:3]}")

    async def fs_cat(self, ks: KindStats) -> None:
        key = self._readable()
        t0 = time.monotonic()
        data = await self.fs._cat_file(key_path(key))
        ks.down += len(data)
        checksum = await asyncio.to_thread(sha256_b64, data) if len(data) > MiB else sha256_b64(data)
        self._version(key, checksum, t0, "FusionFileSystem cat")

    async def fs_cat_range(self, ks: KindStats) -> None:
        key = self._readable()
        state = self.s.registry.keys[key]
        while state.size == 0:
            key = self._readable()
            state = self.s.registry.keys[key]
        first, last = self._span(state.size)
        t0 = time.monotonic()
        data = await self.fs._cat_file(key_path(key), start=first, end=last + 1)
        ks.down += len(data)
        probe = data[:64]
        for version in list(state.versions):  # the answer does not say which version it was read from
            if self.s.pool.slice(version, first, first + len(probe)) != probe:
                continue
            if state.problem(version, t0, "") is None and self.s.pool.slice(version, first, last + 1) == data:
                return
        raise Failure(f"FusionFileSystem cat of bytes {first}-{last} of {key_path(key)}: not an uploaded version")

    async def fs_pipe(self, ks: KindStats) -> None:
        if self.own and self.rng.random() < 0.15:
            key = self.rng.choice(self.own[-50:])
            version = await self.new_version(key, self.s.registry.keys[key].size, "replace")
        else:
            key = self.new_key()
            version = await self.new_version(key, upload_size(self.rng, self.rng.random() < 0.15), "fs_pipe")
        data = bytes(self.s.pool.slice(version, 0, version.size))
        reg = self.s.registry
        reg.sent(version, time.monotonic())
        try:
            await self.fs._pipe_file(key_path(key), data)
        except (NotFoundError, AuthError):
            reg.finished(version, time.monotonic(), acked=False, refused=True)
            raise
        except APIError as exc:
            reg.finished(version, time.monotonic(), acked=False, refused=exc.status is not None and exc.status < 500)
            raise
        except BaseException:  # TransferError, a connection lost: the upload may or may not have landed
            reg.finished(version, time.monotonic(), acked=False)
            raise
        reg.finished(version, time.monotonic(), acked=True)
        ks.up += version.size
        if key not in self.own:
            self.own.append(key)
