"""``FusionFileSystem``: an fsspec filesystem (protocol ``fusion``) over the Fusion REST API.

Paths are the SDK's, relative to ``{root_url}catalogs/``: ``common``, ``common/datasets``,
``common/datasets/D/datasetseries/20240101/distributions/csv``. A distribution is a file;
everything else is a directory whose children are its ``resources``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Any

from fsspec.asyn import AsyncFileSystem, sync, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK

from fusionsync.client import transfer
from fusionsync.client.credentials import DEFAULT_ROOT_URL, Credentials, load_credentials
from fusionsync.client.http import Http
from fusionsync.errors import APIError, ChecksumError, UsageError


@dataclass(frozen=True, slots=True)
class RemoteDistribution:
    """One row of a dataset's change listing."""

    series: str
    format: str
    size: int
    digest: str
    modified: str


log = logging.getLogger("fusionsync")


def is_distribution(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 2 and parts[-2] == "distributions"


class FusionFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """The Fusion catalog as a filesystem: list, read, download and upload distributions.

    ``credentials``: a ``client_credentials.json`` path, a dict of its fields, or credentials
    objects (ours or the SDK's). ``root_url`` overrides the file's (for a self-hosted server).
    ``max_ranges`` bounds the parallel range requests of one download, ``max_parts`` the
    parallel parts of one upload.
    """

    protocol = "fusion"
    root_marker = ""
    cachable = False
    async_impl = True

    def __init__(
        self,
        credentials: Any = "config/client_credentials.json",
        root_url: str | None = None,
        range_size: int = 16 * 2**20,
        max_ranges: int = 8,
        max_parts: int = 8,
        retries: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        creds: Credentials = load_credentials(credentials)
        self.http = Http(creds, root_url or creds.root_url or DEFAULT_ROOT_URL, retries=retries)
        self.range_size = range_size
        self.max_ranges = max_ranges
        self.max_parts = max_parts
        if not self.asynchronous:
            weakref.finalize(self, _close, self.loop, self.http)

    def close(self) -> None:
        """Close the connection pool (also done when the filesystem is garbage collected)."""
        _close(self.loop, self.http)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if text.startswith("fusion://"):
            text = text[len("fusion://") :]
        return text.strip("/")

    # -- metadata --------------------------------------------------------------------------
    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if is_distribution(path):
            entries = [await self._info(path)]
        else:
            _, items = await self.http.collection(path, _what(path))
            files = path.endswith("/distributions")
            entries = []
            for item in items:
                name = _identifier(item, path)
                entry: dict[str, Any] = {
                    "name": f"{path}/{name}" if path else name,
                    "type": "file" if files else "directory",
                    "size": item.get("size") if files else 0,
                }
                entries.append(entry)
        return entries if detail else [e["name"] for e in entries]

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if is_distribution(path):
            remote = await transfer.head(self.http, path)
            return {"name": path, "type": "file", "size": remote.size, "checksum": remote.checksum}
        if not path or path.endswith(("/datasets", "/products", "/datasetseries", "/distributions")):
            await self.http.collection(path, _what(path))
            return {"name": path, "type": "directory", "size": 0}
        meta = await self.http.json(path, _what(path))
        if not isinstance(meta, dict):
            raise APIError(f"{_what(path)}: the answer is not a JSON object")
        meta = {k: v for k, v in meta.items() if k != "resources"}
        return {**meta, "name": path, "type": "directory", "size": 0}

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw: Any) -> bytes:
        path = self._strip_protocol(path)
        if not is_distribution(path):
            first, items = await self.http.collection(path, _what(path))
            return json.dumps({**first, "resources": items}).encode()
        params = None
        if start is not None or end is not None:
            size = (await transfer.head(self.http, path)).size
            first_byte = (start or 0) if (start or 0) >= 0 else max(0, size + (start or 0))
            last = size if end is None else (end if end >= 0 else size + end)
            if last <= first_byte:
                return b""
            params = {"downloadRange": f"bytes={first_byte}-{last - 1}"}
        body, _ = await self.http.call("GET", path + "/operationType/download", _what(path), params=params)
        return body

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        from fusionsync.errors import NotFoundError

        try:
            await self._info(path)
            return True
        except NotFoundError:
            return False

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        await self.http.call("DELETE", path, _what(path))

    async def _dataset_changes(self, catalog: str, dataset: str) -> list[RemoteDistribution]:
        """Every distribution of a dataset, with size and fsync digest (the change listing)."""
        what = f"change listing of dataset {dataset!r}"
        data = await self.http.json(f"{catalog}/datasets/changes", what, params={"datasets": dataset})
        try:
            listing = data["datasets"]
            rows = listing[0]["distributions"] if listing else []
            out = []
            for row in rows:
                series, fmt = _key_parts(row["key"], dataset)
                values = row["values"]
                out.append(
                    RemoteDistribution(
                        series, fmt, int(values[1]), str(values[2]).split("SHA-256=")[-1], str(values[0])
                    )
                )
            return out
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise APIError(f"{what}: unexpected answer ({type(exc).__name__}: {exc})") from exc

    async def _product_datasets(self, catalog: str, product: str) -> list[str]:
        """The datasets a product holds."""
        _, items = await self.http.collection(f"{catalog}/products/{product}", f"product {product!r}")
        return [_identifier(item, f"product {product!r}") for item in items]

    async def _is_raw(self, catalog: str, dataset: str) -> bool:
        meta = await self.http.json(f"{catalog}/datasets/{dataset}", f"dataset {dataset!r}")
        value = meta.get("isRawData", False) if isinstance(meta, dict) else False
        if not isinstance(value, bool):
            raise APIError(f"dataset {dataset!r}: 'isRawData' is not true or false")
        return value

    dataset_changes = sync_wrapper(_dataset_changes)
    product_datasets = sync_wrapper(_product_datasets)
    is_raw = sync_wrapper(_is_raw)

    # -- transfers -------------------------------------------------------------------------
    async def _get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> None:
        """Download a distribution to a local path: parallel ranges, verified, atomic."""
        rpath = self._strip_protocol(rpath)
        if not is_distribution(rpath):
            raise UsageError(f"{rpath} is not a distribution")
        try:
            await transfer.download(self.http, rpath, lpath, callback, self.range_size, self.max_ranges)
        except ChecksumError as exc:  # bytes damaged in transit: one more try before giving up
            log.warning("%s; downloading it again", exc)
            callback.absolute_update(0)
            await transfer.download(self.http, rpath, lpath, callback, self.range_size, self.max_ranges)

    async def _put_file(
        self,
        lpath: Any,
        rpath: str,
        callback: Any = DEFAULT_CALLBACK,
        from_date: str | None = None,
        to_date: str | None = None,
        file_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload a local file (a path, or an open binary file of any fsspec filesystem)."""
        rpath = self._strip_protocol(rpath)
        if not is_distribution(rpath):
            raise UsageError(f"{rpath} is not a distribution path (…/distributions/FORMAT)")
        if isinstance(lpath, str | os.PathLike):
            fd = os.open(lpath, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                await transfer.upload(
                    self.http,
                    rpath,
                    lambda o, n: os.pread(fd, n, o),
                    size,
                    callback,
                    self.max_parts,
                    from_date,
                    to_date,
                    file_name,
                )
            finally:
                os.close(fd)
            return
        size = lpath.seek(0, 2)

        def read_at(offset: int, length: int) -> bytes:  # one part at a time: the file has one position
            lpath.seek(offset)
            return bytes(lpath.read(length))

        await transfer.upload(self.http, rpath, read_at, size, callback, 1, from_date, to_date, file_name)

    async def _pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        import io

        await self._put_file(io.BytesIO(value), path, **kwargs)


def _close(loop: asyncio.AbstractEventLoop, http: Http) -> None:
    """Close the connection pool of a filesystem that is going away (from any thread)."""
    session = http._session
    if session is None or session.closed:
        return
    if loop is not None and loop.is_running() and not loop.is_closed():
        with contextlib.suppress(Exception):
            sync(loop, http.close, timeout=1)
            return
    connector = session.connector
    if connector is not None:
        connector._close()  # the loop is gone or is this thread: close the sockets directly


def _what(path: str) -> str:
    return f"{path or 'the catalog list'}"


def _identifier(item: Any, where: str) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("identifier"), str):
        raise APIError(f"{where}: a listed resource has no identifier")
    return str(item["identifier"])


def _key_parts(key: str, dataset: str) -> tuple[str, str]:
    """``D/20240101/distribution.csv`` → (``20240101``, ``csv``)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != dataset or "." not in parts[2]:
        raise ValueError(f"distribution key {key!r} is not {dataset}/SERIES/distribution.FORMAT")
    return parts[1], parts[2].split(".", 1)[1]
