"""The remote side over any fsspec filesystem that serves the catalog's paths (the generic, slower way).

Distributions are the files ``{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{format}``.
A filesystem whose ``info`` of a dataset carries its change listing (``"changes"``, as the SDK's
does) is listed from it; any other is walked, and each file's digest is computed by reading it
(remembered by path, size and modification time, so a watch loop reads each version once).
Transfers stream through the filesystem's own ``open``; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import IO, Any

from fsspec.asyn import get_loop

from fusionsync.catalog.digest import FusionHasher
from fusionsync.catalog.layout import DistKey
from fusionsync.catalog.listing import RemoteDistribution, format_time, parse_changes
from fusionsync.client.sink import FsspecSink
from fusionsync.client.transfer import Progress, temp_path_for, temp_token
from fusionsync.client.upload import UploadJournal
from fusionsync.errors import APIError, ChecksumError
from fusionsync.sync.scan import info_mtime

CHUNK = 2**20


class FsspecRemote:
    """:class:`~fusionsync.sync.remote.Remote` over the fsspec filesystem ``fs``."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.loop: asyncio.AbstractEventLoop = get_loop()
        self._digests: dict[tuple[str, int, float], str] = {}

    def __reduce__(self) -> tuple[Any, ...]:  # to a worker of a spread sync: its filesystem, digests left behind
        return FsspecRemote, (self.fs,)

    @property
    def address(self) -> str:
        return str(self.fs.unstrip_protocol(""))

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _reporter(self, progress: Progress) -> Callable[[int], None]:
        """Counts bytes from a worker thread on the loop (where the statistics live)."""
        loop = asyncio.get_running_loop()

        def report(n: int) -> None:
            loop.call_soon_threadsafe(progress.relative_update, n)

        return report

    # -- listings --------------------------------------------------------------------------
    async def list_distributions(self, catalog: str, dataset: str) -> list[RemoteDistribution]:
        rows: list[RemoteDistribution] = await self._call(self._listing, catalog, dataset)
        return rows

    def _listing(self, catalog: str, dataset: str) -> list[RemoteDistribution]:
        base = f"{catalog}/datasets/{dataset}"
        try:
            info = self.fs.info(base)
        except FileNotFoundError:
            return []
        changes = info.get("changes")
        if isinstance(changes, dict):
            try:
                return parse_changes(changes, dataset)
            except ValueError as exc:
                raise APIError(f"change listing of dataset {dataset!r} at {self.address}: {exc}") from exc
        top = self.fs._strip_protocol(f"{base}/datasetseries").rstrip("/")
        rows = []
        for path, meta in sorted(self.fs.find(top, detail=True).items()):
            parts = path[len(top) :].strip("/").split("/")
            if len(parts) != 3 or parts[1] != "distributions" or parts[2].startswith("."):
                continue
            size, mtime = int(meta.get("size") or 0), info_mtime(meta)
            digest = self._digests.get((path, size, mtime))
            if digest is None:
                digest = self._digests[(path, size, mtime)] = _copy(self.fs.open(path, "rb"), None, None)
            rows.append(RemoteDistribution(parts[0], parts[2], size, digest, format_time(mtime)))
        return rows

    async def list_product_datasets(self, catalog: str, product: str) -> list[str]:
        what = f"product {product!r} at {self.address}"
        try:
            data = json.loads(await self._call(self.fs.cat_file, f"{catalog}/products/{product}"))
            return [str(item["identifier"]) for item in data["resources"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise APIError(f"{what}: its datasets cannot be read ({type(exc).__name__}: {exc})") from exc

    async def dataset_is_raw(self, catalog: str, dataset: str) -> bool:
        try:
            meta = json.loads(await self._call(self.fs.cat_file, f"{catalog}/datasets/{dataset}"))
        except (OSError, ValueError):
            return False  # a plain tree of files has no dataset metadata: extensions are formats
        return isinstance(meta, dict) and meta.get("isRawData") is True

    # -- transfers -------------------------------------------------------------------------
    async def download_distribution(
        self, key: DistKey, dest: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> os.stat_result:
        st: os.stat_result = await self._call(self._download, key, dest, self._reporter(progress), digest)
        return st

    def _download(self, key: DistKey, dest: str, report: Callable[[int], None], digest: str | None) -> os.stat_result:
        temp = temp_path_for(dest)
        try:
            with open(temp, "xb") as out:
                got = _copy(self.fs.open(key.remote_path, "rb"), out.write, report)
                _check(key, got, digest)
                st = os.fstat(out.fileno())
            os.replace(temp, dest)
            return st
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    async def stream_distribution(
        self, key: DistKey, fs: Any, path: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> None:
        await self._call(self._stream, key, FsspecSink(fs, path, temp_token()), self._reporter(progress), digest)

    def _stream(self, key: DistKey, sink: FsspecSink, report: Callable[[int], None], digest: str | None) -> None:
        try:
            sink.open()
            _check(key, _copy(self.fs.open(key.remote_path, "rb"), sink.write, report), digest)
            sink.commit()
        except BaseException:
            sink.discard()
            raise

    async def upload_distribution(
        self, key: DistKey, source: str | IO[bytes], progress: Progress, journal: UploadJournal | None = None
    ) -> None:
        """(An fsspec filesystem has no multipart operations to resume: ``journal`` is not used.)"""
        await self._call(self._upload, key, source, self._reporter(progress))

    def _upload(self, key: DistKey, source: str | IO[bytes], report: Callable[[int], None]) -> None:
        sink = FsspecSink(self.fs, key.remote_path, temp_token())
        try:
            sink.open()
            reader = open(source, "rb") if isinstance(source, str) else _Unclosed(source)  # noqa: SIM115
            _copy(reader, sink.write, report)
            sink.commit()
        except BaseException:
            sink.discard()
            raise

    async def delete_distribution(self, key: DistKey) -> None:
        await self._call(self.fs.rm_file, key.remote_path)

    def events(self, catalog: str, *, on_connect: Callable[[], None] | None = None) -> None:
        """None: a plain filesystem has no change events (a continuous sync polls it)."""
        return None


class _Unclosed:
    """A caller's open file, read to the end but left open (the caller closes it)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def __enter__(self) -> IO[bytes]:
        return self.fh

    def __exit__(self, *exc: object) -> None:
        return None


def _copy(reader: Any, write: Callable[[bytes], object] | None, report: Callable[[int], None] | None) -> str:
    """Read ``reader`` to its end (closing it), passing each chunk to ``write``; its fsync digest."""
    hasher = FusionHasher(whole=False)
    with reader as fh:
        while chunk := fh.read(CHUNK):
            if write is not None:
                write(chunk)
            hasher.update(chunk)
            if report is not None:
                report(len(chunk))
    return hasher.fsync_digest()


def _check(key: DistKey, got: str, expected: str | None) -> None:
    if expected is not None and got != expected:
        raise ChecksumError(
            f"download of {key.remote_path} does not match its listed digest (got {got}, expected {expected}); "
            "nothing was written"
        )
