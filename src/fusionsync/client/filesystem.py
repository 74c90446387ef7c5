"""``FusionFileSystem``: an fsspec filesystem (protocol ``fusion``) over the Fusion REST API.

Paths are the SDK's, relative to ``{root_url}catalogs/``: ``common``, ``common/datasets``,
``common/datasets/D/datasetseries/20240101/distributions/csv``. A distribution is a file;
everything else is a directory whose children are its ``resources``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from fsspec.asyn import AsyncFileSystem, sync, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK

from fusionsync.catalog.layout import DistKey
from fusionsync.catalog.listing import RemoteDistribution, parse_changes
from fusionsync.client import transfer, upload
from fusionsync.client.credentials import DEFAULT_ROOT_URL, Credentials, load_credentials
from fusionsync.client.events import ChangeEvent, subscribe
from fusionsync.client.files import FusionFile
from fusionsync.client.http import Http
from fusionsync.client.sink import FsspecSink
from fusionsync.client.transfer import Progress
from fusionsync.client.upload import UploadJournal
from fusionsync.errors import APIError, ChecksumError, NotFoundError, UsageError

__all__ = ["FusionFileSystem", "RemoteDistribution", "is_distribution"]

log = logging.getLogger("fusionsync")


def is_distribution(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 2 and parts[-2] == "distributions"


class FusionFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """The Fusion catalog as an fsspec filesystem (protocol ``fusion``): list, read, download, upload.

    Paths are the SDK's, relative to ``{root_url}catalogs/``: ``common``, ``common/datasets``,
    ``common/datasets/D/datasetseries/20240101/distributions/csv``. A distribution is a file (``get``
    downloads it verified and atomically, ``put`` uploads it with its digests, ``open`` reads it with
    ranged requests); everything else is a folder whose children are its ``resources``. It is also
    ``fsspec.filesystem("fusion", credentials=...)``.

    Besides the fsspec interface, it is the remote side of a sync (a [`Remote`][fusionsync.Remote]):
    its coroutines below run on ``fs.loop``, and ``changes``, ``product_datasets`` and ``is_raw`` are
    synchronous forms of ``list_distributions``, ``list_product_datasets`` and ``dataset_is_raw`` for
    scripts. Created with ``asynchronous=True`` (inside a running loop), close it with
    ``await fs._close()`` or use it as ``async with``.
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
        read_timeout: float = 120.0,
        ca_bundle: str | None = None,
        fast_path: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Connect to a Fusion catalog (the first request authenticates).

        Args:
            credentials: A ``client_credentials.json`` path (the SDK's format: ``client_id``,
                ``client_secret``, ``auth_url``, ``root_url``, ``proxies``…), a dict of its fields, or
                a credentials object (ours or the SDK's ``FusionCredentials``). Default:
                ``"config/client_credentials.json"``, the SDK's.
            root_url: The API root, such as ``"http://127.0.0.1:8765/api/v1/"``. Default (``None``):
                the credentials' ``root_url``, else the Fusion service's.
            range_size: Bytes per range request of a download. Default: 16 MiB.
            max_ranges: Range requests of one download in flight at once. Default: 8.
            max_parts: Upload parts in flight across all uploads (each holds 1 MiB of a local file,
                5 MiB of a remote one). Default: 8.
            retries: Retries of a request after a lost connection, a 429 or a 5xx answer, with
                exponential backoff (``Retry-After`` respected). Default: 5.
            read_timeout: Seconds without a byte before a request is abandoned (and retried).
                Default: 120.
            ca_bundle: Certificate authorities (a PEM file or folder) to verify the server with, such
                as a TLS-inspecting proxy's. Default (``None``): ``REQUESTS_CA_BUNDLE``,
                ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE``, else the system's. Proxies come from the
                credentials' ``proxies``, else ``HTTPS_PROXY``/``HTTP_PROXY`` (``NO_PROXY``
                respected).
            fast_path: Send small downloads on lean keep-alive connections (``False``: everything
                through aiohttp). Default (``None``): on, unless ``FUSIONSYNC_FAST_PATH=0``.
            **kwargs: fsspec's options of an async filesystem, such as ``asynchronous=True`` and
                ``loop``.
        """
        super().__init__(**kwargs)
        creds: Credentials = load_credentials(credentials)
        root = root_url or creds.root_url or DEFAULT_ROOT_URL
        self.http = Http(
            creds,
            root,
            retries=retries,
            read_timeout=read_timeout,
            ca_bundle=ca_bundle,
            fast_path=fast_path,
            max_parts=max_parts,
        )
        self.range_size = range_size
        self.max_ranges = max_ranges
        if not self.asynchronous:
            weakref.finalize(self, _close, self.loop, self.http)

    def settings(self) -> dict[str, Any]:
        """What another process (or machine) needs to connect as this filesystem does: the credentials as
        loaded (not a path it may not have), the proxies and CA bundle as resolved here, and the limits.
        Pickling a filesystem pickles these; unpickling opens a new client from them."""
        http = self.http
        return {
            "credentials": dataclasses.replace(http.tokens.creds, proxies=http.policy.portable_proxies()),
            "root_url": http.root_url,
            "range_size": self.range_size,
            "max_ranges": self.max_ranges,
            "max_parts": http.max_parts,
            "retries": http.retries,
            "read_timeout": http.timeout.sock_read,
            "ca_bundle": http.policy.ca_bundle,
            "fast_path": http.fast_path,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.settings())

    def close(self) -> None:
        """Close the connection pool (also done when the filesystem is garbage collected)."""
        _close(self.loop, self.http)

    async def _close(self) -> None:
        """Close the connection pool from the loop that uses it (``asynchronous=True``)."""
        await self.http.close()

    async def __aenter__(self) -> FusionFileSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

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
            if files:
                await self._fill_sizes(path, entries)
        return entries if detail else [e["name"] for e in entries]

    async def _fill_sizes(self, path: str, entries: list[dict[str, Any]]) -> None:
        """Sizes a distribution listing left out: from the change listing, else from HEAD."""
        missing = [e for e in entries if not isinstance(e["size"], int) or isinstance(e["size"], bool)]
        if not missing:
            return
        parts = path.split("/")  # CATALOG/datasets/D/datasetseries/S/distributions
        if len(parts) == 6 and parts[1] == "datasets" and parts[3] == "datasetseries":
            known = {(d.series, d.format): d.size for d in await self.list_distributions(parts[0], parts[2])}
            for entry in missing:
                entry["size"] = known.get((parts[4], entry["name"].rsplit("/", 1)[1]))
        heads = [e for e in missing if e["size"] is None]
        sizes = await asyncio.gather(*(transfer.head(self.http, e["name"]) for e in heads))
        for entry, remote in zip(heads, sizes, strict=True):
            entry["size"] = remote.size

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if is_distribution(path):
            remote = await transfer.head(self.http, path)
            return {
                "name": path,
                "type": "file",
                "size": remote.size,
                "checksum": remote.checksum,
                "checksum_algorithm": remote.algorithm,
            }
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
            first_byte, last = start or 0, end
            if first_byte < 0 or last is None or last < 0:  # relative to the end: the size is needed
                size = (await transfer.head(self.http, path)).size
                first_byte = first_byte if first_byte >= 0 else max(0, size + first_byte)
                last = size if last is None else (last if last >= 0 else size + last)
            if last <= first_byte:
                return b""
            params = {"downloadRange": f"bytes={first_byte}-{last - 1}"}
        try:
            body, _ = await self.http.call("GET", path + "/operationType/download", _what(path), params=params)
        except APIError as exc:
            if exc.status == 416:  # a range that starts past the end, as fsspec reads it: nothing
                return b""
            raise
        return body

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
            return True
        except NotFoundError:
            return False

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        await self.http.call("DELETE", path, _what(path))

    # -- the remote side of a sync (fusionsync.sync.remote.Remote) ----------------------------
    @property
    def address(self) -> str:
        """The API root this filesystem talks to (named in messages about the server)."""
        return self.http.root_url

    async def list_distributions(self, catalog: str, dataset: str) -> list[RemoteDistribution]:
        """Every distribution of a dataset, with size, fsync digest and modification time (the change listing)."""
        what = f"change listing of dataset {dataset!r}"
        data = await self.http.json(f"{catalog}/datasets/changes", what, params={"datasets": dataset})
        try:
            return parse_changes(data, dataset)
        except ValueError as exc:
            raise APIError(f"{what}: {exc}") from exc

    async def list_product_datasets(self, catalog: str, product: str) -> list[str]:
        """The datasets a product holds."""
        _, items = await self.http.collection(f"{catalog}/products/{product}", f"product {product!r}")
        return [_identifier(item, f"product {product!r}") for item in items]

    async def dataset_is_raw(self, catalog: str, dataset: str) -> bool:
        """The dataset's ``isRawData`` flag (files of unknown extensions are then of format ``raw``)."""
        meta = await self.http.json(f"{catalog}/datasets/{dataset}", f"dataset {dataset!r}")
        if not isinstance(meta, dict):
            raise APIError(f"dataset {dataset!r}: the answer is not a JSON object, so 'isRawData' cannot be read")
        value = meta.get("isRawData", False)
        if not isinstance(value, bool):
            raise APIError(f"dataset {dataset!r}: 'isRawData' is not true or false")
        return value

    async def download_distribution(
        self, key: DistKey, dest: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> os.stat_result:
        """Download into the local path ``dest`` (its folder exists): verified against the server's
        checksum, atomic; ``size`` (from the listing) lets a small file come in one request."""
        return await self._download(key.remote_path, dest, progress, size_hint=size)

    async def stream_distribution(
        self, key: DistKey, fs: Any, path: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> None:
        """Download into ``path`` of any fsspec filesystem ``fs``, streamed into its own writer, verified
        before it is moved into place (a damaged download is tried once more)."""
        loop = asyncio.get_running_loop()
        for tries in (1, 2):
            sink = FsspecSink(fs, path, transfer.temp_token())
            try:
                await loop.run_in_executor(None, sink.open)
                await transfer.download_stream(self.http, key.remote_path, sink.write, progress)
                await loop.run_in_executor(None, sink.commit)
                return
            except ChecksumError as exc:
                await loop.run_in_executor(None, sink.discard)
                if tries == 2:
                    raise
                log.warning("%s; downloading it again", exc)
                progress.absolute_update(0)
            except BaseException:
                await loop.run_in_executor(None, sink.discard)
                raise

    async def upload_distribution(
        self, key: DistKey, source: str | IO[bytes], progress: Progress, journal: UploadJournal | None = None
    ) -> None:
        """Upload a local file (a path) or an open binary file of any fsspec filesystem; with a ``journal``,
        a multipart upload interrupted earlier continues from the parts the server holds."""
        await self._put_file(source, key.remote_path, callback=progress, journal=journal)

    async def delete_distribution(self, key: DistKey) -> None:
        """Delete a distribution."""
        await self._rm_file(key.remote_path)

    def events(
        self, catalog: str, last_event_id: str | None = None, on_connect: Callable[[], None] | None = None
    ) -> AsyncIterator[ChangeEvent]:
        """The catalog's change events as they happen (``async for event in fs.events("common")``): every
        distribution created, replaced or deleted, and ``reset`` when some may have been missed. Reconnects by
        itself, resuming after the last event (or after ``last_event_id``); ``on_connect`` is called each
        time the stream is established. Iterate it in the filesystem's loop: create the filesystem with
        ``asynchronous=True`` inside a running loop (a sync runs on ``fs.loop``)."""
        return subscribe(self.http, catalog, last_event_id, on_connect=on_connect)

    # Synchronous forms, for scripts.
    changes = dataset_changes = sync_wrapper(list_distributions)
    product_datasets = sync_wrapper(list_product_datasets)
    is_raw = sync_wrapper(dataset_is_raw)

    # -- transfers -------------------------------------------------------------------------
    async def _get_file(self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> None:
        """Download a distribution to a local path: parallel ranges, verified, atomic.

        ``lpath`` may also be an open binary file of any fsspec filesystem (``memory://``,
        ``s3://`` …): the bytes are streamed into it and verified at the end.
        """
        rpath = self._strip_protocol(rpath)
        local = isinstance(lpath, str | os.PathLike)
        if not is_distribution(rpath):
            if not local:
                raise UsageError(f"{rpath} is not a distribution")
            os.makedirs(lpath, exist_ok=True)  # a folder of a recursive get
            return
        if not local:
            await self._get_into(rpath, lpath, callback)
            return
        lpath = os.fspath(lpath)
        if os.path.dirname(lpath):
            os.makedirs(os.path.dirname(lpath), exist_ok=True)
        await self._download(rpath, lpath, callback)

    async def _download(
        self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, size_hint: int | None = None
    ) -> os.stat_result:
        """Download a distribution into an existing folder; return the stat of the file written.

        ``size_hint`` is the size a listing announced: a small file then comes in one request.
        """
        fetch = functools.partial(
            transfer.download, self.http, rpath, lpath, callback, self.range_size, self.max_ranges, size_hint
        )
        try:
            return await fetch()
        except ChecksumError as exc:  # bytes damaged in transit: one more try before giving up
            log.warning("%s; downloading it again", exc)
            callback.absolute_update(0)
            return await fetch()

    async def _get_into(self, rpath: str, outfile: Any, callback: Any) -> None:
        """Stream a distribution into an open binary file, verified at the end (ChecksumError)."""
        await transfer.download_stream(self.http, rpath, outfile.write, callback)

    async def _put_file(
        self,
        lpath: Any,
        rpath: str,
        callback: Any = DEFAULT_CALLBACK,
        from_date: str | None = None,
        to_date: str | None = None,
        file_name: str | None = None,
        journal: UploadJournal | None = None,
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
                await upload.upload(
                    self.http,
                    rpath,
                    lambda o, n: os.pread(fd, n, o),
                    size,
                    callback,
                    from_date,
                    to_date,
                    file_name,
                    local_reader=True,
                    journal=journal,
                )
            finally:
                os.close(fd)
            return
        size = lpath.seek(0, 2)
        position = threading.Lock()

        def read_at(offset: int, length: int) -> bytes:  # reads take turns (one file position); sends overlap
            with position:
                lpath.seek(offset)
                return bytes(lpath.read(length))

        await upload.upload(self.http, rpath, read_at, size, callback, from_date, to_date, file_name, journal=journal)

    async def _pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        import io

        await self._put_file(io.BytesIO(value), path, **kwargs)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> FusionFile:
        """A distribution as a file: read with ranged GETs, or written to a spool and uploaded on close."""
        path = self._strip_protocol(path)
        if not is_distribution(path):
            raise UsageError(f"{path} is not a distribution, so it cannot be opened as a file")
        return FusionFile(self, path, mode, block_size or "default", cache_options=cache_options, **kwargs)


def _rebuild(cls: type[FusionFileSystem], settings: dict[str, Any]) -> FusionFileSystem:
    return cls(**settings)


def _close(loop: asyncio.AbstractEventLoop, http: Http) -> None:
    """Close the connection pools of a filesystem that is going away (from any thread)."""
    if not http.connected:
        return
    if loop is not None and loop.is_running() and not loop.is_closed():
        with contextlib.suppress(Exception):
            sync(loop, http.close, timeout=1)
            return
    http.close_now()  # the loop is gone or is this thread: close the sockets directly


def _what(path: str) -> str:
    return f"{path or 'the catalog list'}"


def _identifier(item: Any, where: str) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("identifier"), str):
        raise APIError(f"{where}: a listed resource has no identifier")
    return str(item["identifier"])
