"""The remote side of a sync, as the engine sees it: a typed contract, and adapters to it.

:class:`Remote` is everything a pass needs from the catalog. Our
:class:`~fusionsync.client.FusionFileSystem` implements it; :func:`open_remote` also accepts the
official SDK's ``FusionHTTPFileSystem`` (its root URL, credentials and proxies drive our own
client, change events included) and any other fsspec filesystem that serves the catalog's paths
(read through its generic interface: slower, since digests must be computed by reading; no change
events, so a continuous sync polls it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any, Protocol

from fsspec.spec import AbstractFileSystem

from fusionsync.catalog.layout import DistKey
from fusionsync.catalog.listing import RemoteDistribution
from fusionsync.client import FusionFileSystem
from fusionsync.client.events import ChangeEvent
from fusionsync.client.transfer import Progress
from fusionsync.client.upload import UploadJournal
from fusionsync.errors import UsageError

__all__ = ["Progress", "Remote", "RemoteDistribution", "UploadJournal", "open_remote"]


class Remote(Protocol):
    """What a sync pass needs from the catalog. Every coroutine runs on :attr:`loop`."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the engine runs its passes on."""

    @property
    def address(self) -> str:
        """Where the catalog is (named in messages about it)."""

    async def list_distributions(self, catalog: str, dataset: str) -> list[RemoteDistribution]:
        """Every distribution of a dataset: series, format, size, fsync digest, modification time."""

    async def list_product_datasets(self, catalog: str, product: str) -> list[str]:
        """The datasets a product holds."""

    async def dataset_is_raw(self, catalog: str, dataset: str) -> bool:
        """Whether files of unknown extensions in this dataset are of format ``raw``."""

    async def download_distribution(
        self, key: DistKey, dest: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> os.stat_result:
        """Download into the local path ``dest`` (its folder exists), verified and atomic; the stat
        of the file written. ``size`` and ``digest`` are what the listing announced."""

    async def stream_distribution(
        self, key: DistKey, fs: Any, path: str, progress: Progress, size: int | None = None, digest: str | None = None
    ) -> None:
        """Download into ``path`` of any fsspec filesystem ``fs``: streamed into its own writer
        (progress counts what it took), verified before it is moved into place."""

    async def upload_distribution(
        self, key: DistKey, source: str | IO[bytes], progress: Progress, journal: UploadJournal | None = None
    ) -> None:
        """Upload a local file (a path) or an open binary file; the catalog verifies the digest. With a
        ``journal``, a multipart upload interrupted in an earlier pass continues where it stopped."""

    async def delete_distribution(self, key: DistKey) -> None:
        """Delete a distribution."""

    def events(
        self, catalog: str, *, on_connect: Callable[[], None] | None = None
    ) -> AsyncIterator[ChangeEvent] | None:
        """The catalog's change events for as long as they are iterated (on :attr:`loop`), reconnecting by
        itself; None when this remote offers none (a continuous sync then polls). ``on_connect`` is called
        each time the stream is established. Iterating raises a :class:`~fusionsync.errors.FusionSyncError`
        when the server refuses or does not serve them."""


def is_sdk_filesystem(fs: object) -> bool:
    """True for the official SDK's ``FusionHTTPFileSystem`` (or a subclass), without importing the SDK."""
    return any(cls.__name__ == "FusionHTTPFileSystem" for cls in type(fs).__mro__)


def is_fusion_filesystem(fs: object) -> bool:
    """True for a filesystem of the Fusion catalog (ours or the SDK's)."""
    return isinstance(fs, FusionFileSystem) or is_sdk_filesystem(fs)


@contextlib.contextmanager
def open_remote(fs_fusion: object) -> Iterator[Remote]:
    """The :class:`Remote` for what a caller passed as ``fs_fusion`` (closed after the block if made here).

    Raises :class:`UsageError` for an object that is none of the three kinds accepted.
    """
    if isinstance(fs_fusion, FusionFileSystem):
        yield fs_fusion
        return
    if is_sdk_filesystem(fs_fusion):
        ours = _from_sdk(fs_fusion)
        try:
            yield ours
        finally:
            ours.close()
        return
    if isinstance(fs_fusion, AbstractFileSystem):
        from fusionsync.sync.fsspec_remote import FsspecRemote

        yield FsspecRemote(fs_fusion)
        return
    raise UsageError(
        f"fs_fusion must be a fusionsync FusionFileSystem, the SDK's FusionHTTPFileSystem or an fsspec "
        f"filesystem serving the catalog's paths, not {type(fs_fusion).__name__}"
    )


def _from_sdk(fs: Any) -> FusionFileSystem:
    """Our client on the SDK filesystem's root URL, with its credentials (and their proxies)."""
    client_kwargs = getattr(fs, "client_kwargs", None) or {}
    root_url = client_kwargs.get("root_url")
    credentials = getattr(fs, "credentials", None) or client_kwargs.get("credentials")
    if not isinstance(root_url, str) or credentials is None:
        raise UsageError("the SDK's FusionHTTPFileSystem given has no root URL or credentials to connect with")
    return FusionFileSystem(credentials=credentials, root_url=root_url)
