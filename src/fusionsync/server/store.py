"""The two storage interfaces the catalog server's handlers speak to, and the values that cross them.

* :class:`MetaStore`: catalogs, products, datasets, series members, distributions, attributes and lineage,
  multipart upload operations and their parts, the change-event log, the blobs waiting to be removed and the
  web sessions signed out.
  Backends: SQLite (``meta.py`` over ``db_sqlite.py``, the default) and PostgreSQL (``db_postgres.py``).
* :class:`BlobStore`: the bytes of distributions, written as streams while they are hashed, read by ranges,
  and assembled from the parts of multipart uploads. Backends: a folder (``blobs.py``, the default) and an
  S3 bucket (``blobs_s3.py``).

Nothing here knows HTTP; a blob is named by an opaque string the blob store chose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

CREATED, REPLACED, DELETED = "DistributionCreated", "DistributionReplaced", "DistributionDeleted"
OPEN, COMPLETING, DONE = "open", "completing", "done"
"""The states of a multipart upload operation."""


PAGE_BYTES = 4 * 2**20
"""A listing page ends early once its items hold this much metadata."""
Page = tuple[list[dict[str, Any]], bool]
"""Items of a listing, and whether more follow."""


def now_iso() -> str:
    """The current UTC time as Fusion writes it, e.g. ``2024-11-20T09:04:28Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Distribution:
    """One stored distribution: where its bytes are and what they hash to."""

    catalog: str
    dataset: str
    series: str
    format: str
    blob: str
    size: int
    digest: str
    checksum: str
    modified: str
    file_name: str | None


@dataclass(frozen=True, slots=True)
class SeriesMember:
    """A series member and the span of dates its uploads declared (None when none did)."""

    identifier: str
    created: str
    from_date: str | None
    to_date: str | None


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart upload: ``size`` is -1 while it is arriving or when it did not arrive whole;
    ``ref`` is the blob store's own note of where it went (an S3 ETag, a side file)."""

    number: int
    ref: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class Operation:
    """A multipart upload: its target distribution, the blob store's handle, its state and times (epoch s)."""

    id: str
    target: tuple[str, str, str, str]
    handle: str
    state: str
    touched: float
    claimed: float | None
    digest: str | None
    """The whole-file digest the completion was asked with (once it began)."""
    result: Distribution | None
    """What the completion stored (state ``done``)."""
    incarnation: str = ""
    """The incarnation of the dataset the upload began in."""
    client: str = ""
    """Who opened it."""


@dataclass(frozen=True, slots=True)
class Written:
    """A blob written whole: its name, size, fsync digest and plain SHA-256 (both base64)."""

    blob: str
    size: int
    digest: str
    checksum: str


@dataclass(frozen=True, slots=True)
class Commit:
    """One distribution to record, with the dates its upload declared and the operation it completes."""

    dist: Distribution
    dates: dict[str, str | None]
    operation: str | None = None
    incarnation: str = ""
    """The dataset's incarnation when the upload began: nothing is recorded if it is no longer the same."""


@dataclass(frozen=True, slots=True)
class Totals:
    """How much the catalog holds, for the status page and ``/metrics``."""

    catalogs: int
    products: int
    datasets: int
    series: int
    distributions: int
    bytes: int
    uploads_open: int
    uploads_expired: int


@dataclass(frozen=True, slots=True)
class FileSpan:
    """Bytes of a local file, to be sent by the kernel: the open file, where they start, how many."""

    file: Any
    offset: int
    count: int


Content = bytes | FileSpan | AsyncIterator[bytes]
"""What a ranged read gives: the bytes themselves (small), a span of an open local file, or a stream."""


class BlobMissing(LookupError):
    """A blob that is not (or no longer) in the store."""


class Busy(RuntimeError):
    """Bytes of the same upload are being written elsewhere right now (a client error: 409)."""


class PartChanged(ValueError):
    """A part's stored bytes are not the ones recorded (sent twice at once, differently)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"part {number} changed while the upload was completed; send it again")
        self.number = number


Chunks = AsyncIterable[bytes]


class MetaStore(Protocol):
    """Every piece of metadata the server keeps; all upload state lives here, so any worker serves any request."""

    log_id: str
    """Names this event log: an event id of another log cannot be resumed here."""
    closing: bool
    """The server is shutting down: subscriptions end."""

    async def close(self) -> None: ...

    # catalogs, products, datasets
    async def catalog(self, catalog: str) -> dict[str, Any] | None: ...
    async def catalogs(self, start: int, count: int, only: frozenset[str] | None = None) -> Page:
        """A page of the catalogs (of ``only`` those named)."""
        ...

    async def create_catalog(self, catalog: str, meta: dict[str, Any]) -> bool: ...
    async def delete_catalog(self, catalog: str) -> bool | None: ...
    async def product(self, catalog: str, product: str) -> dict[str, Any] | None: ...
    async def products(self, catalog: str, start: int, count: int) -> Page: ...
    async def put_product(self, catalog: str, product: str, meta: dict[str, Any], links: list[str]) -> None: ...
    async def delete_product(self, catalog: str, product: str) -> bool: ...
    async def product_datasets(
        self, catalog: str, product: str | None = None, start: int = 0, count: int = -1
    ) -> list[tuple[str, str]]:
        """(product, dataset) pairs, ``count`` of them from ``start`` (-1: all)."""
        ...

    async def link_product_datasets(self, catalog: str, product: str, datasets: list[str]) -> None: ...
    async def unlink_product_dataset(self, catalog: str, product: str, dataset: str) -> bool: ...
    async def dataset(self, catalog: str, dataset: str) -> dict[str, Any] | None: ...
    async def has_dataset(self, catalog: str, dataset: str) -> bool: ...
    async def incarnation(self, catalog: str, dataset: str) -> str | None:
        """Names this life of the dataset (a dataset deleted and created again has another); None if absent."""
        ...

    async def datasets(self, catalog: str, start: int, count: int) -> Page: ...
    async def put_dataset(self, catalog: str, dataset: str, meta: dict[str, Any], products: list[str]) -> None: ...
    async def dataset_modified(self, catalog: str, dataset: str) -> str | None: ...

    # series members and distributions (a delete answers the distributions it removed, None when absent)
    async def series(self, catalog: str, dataset: str, series: str) -> str | None: ...
    async def series_list(
        self, catalog: str, dataset: str, series: str | None = None, start: int = 0, count: int = -1
    ) -> list[SeriesMember]: ...
    async def distribution(self, catalog: str, dataset: str, series: str, fmt: str) -> Distribution | None: ...
    async def distributions(
        self, catalog: str, dataset: str, series: str | None = None, start: int = 0, count: int = -1
    ) -> list[Distribution]: ...
    async def commit(self, item: Commit) -> bool:
        """Record a stored distribution (with its series member, its event, the end of its operation);
        True when it replaced one. Concurrent commits share transactions."""
        ...

    async def delete(
        self, catalog: str, dataset: str, series: str | None = None, fmt: str | None = None, whole: bool = False
    ) -> list[Distribution] | None:
        """Delete a distribution, a series member, every series member (``series`` None) or, with ``whole``,
        the dataset itself; their blobs are removed after a grace period and an event is logged for each."""
        ...

    # attributes and lineage
    async def attributes(self, catalog: str, dataset: str) -> list[dict[str, Any]]: ...
    async def put_attribute(self, catalog: str, dataset: str, meta: dict[str, Any]) -> bool: ...
    async def replace_attributes(self, catalog: str, dataset: str, metas: list[dict[str, Any]]) -> None: ...
    async def delete_attribute(self, catalog: str, dataset: str, attribute: str) -> bool: ...
    async def catalog_attributes(self, catalog: str) -> list[dict[str, Any]]: ...
    async def register_attributes(self, catalog: str, metas: list[dict[str, Any]]) -> None: ...
    async def add_attribute_lineage(self, catalog: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None: ...
    async def attribute_lineage(self, catalog: str) -> list[dict[str, Any]]: ...
    async def add_dataset_lineage(self, catalog: str, dataset: str, sources: list[tuple[str, str]]) -> None: ...
    async def dataset_lineage(self, catalog: str, dataset: str) -> list[tuple[str, str, str, str]]: ...

    # multipart upload operations
    async def start_operation(
        self, op_id: str, target: tuple[str, str, str, str], handle: str, incarnation: str, client: str
    ) -> None: ...
    async def open_operation_count(self, client: str) -> int:
        """How many unfinished upload operations the client holds."""
        ...

    async def operation(self, op_id: str) -> Operation | None: ...
    async def parts(self, op_id: str) -> list[Part]: ...
    async def part_arriving(self, op_id: str, number: int) -> bool:
        """Mark a part as arriving (not to be trusted until recorded); False unless the operation is open."""
        ...

    async def record_part(self, op_id: str, part: Part) -> bool:
        """Record a part received whole; False unless the operation is still open."""
        ...

    async def claim_completion(self, op_id: str, digest: str, stale: float) -> Operation | None:
        """Move an open operation to ``completing`` (or take over a completion whose claim is older than
        ``stale`` seconds): the operation as it was before, or None when someone else holds it."""
        ...

    async def renew_claim(self, op_id: str) -> None: ...

    async def release_completion(self, op_id: str, forget: bool) -> list[Part]:
        """A completion that failed: the operation is open again, or forgotten (its parts answered)."""
        ...

    async def expire_operations(self, idle: float) -> list[tuple[Operation, list[Part]]]:
        """Forget the operations untouched for ``idle`` seconds (finished ones too); answer the unfinished."""
        ...

    async def open_operations(self) -> list[tuple[Operation, list[Part]]]: ...

    # the change-event log and the blobs to remove
    async def events_after(self, catalog: str, seq: int) -> list[tuple[int, bytes]]:
        """The events of ``catalog`` after number ``seq``, as server-sent event messages."""
        ...

    async def last_event(self) -> tuple[int, int]:
        """The oldest event number still kept and the newest."""
        ...

    def news(self) -> asyncio.Event:
        """Set once events newer than what a read made after this call saw may exist (from any process)."""
        ...

    async def due_garbage(self) -> list[str]:
        """The blobs whose grace period is over, no longer listed as due."""
        ...

    # what people browse (web pages) and operators watch (/metrics): pages taken in the database
    async def datasets_page(self, catalog: str, after: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def products_page(self, catalog: str, after: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def product_datasets_page(
        self, catalog: str, product: str, after: str | None, limit: int
    ) -> list[dict[str, Any]]: ...
    async def search_datasets(
        self, text: str, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, dict[str, Any]]]: ...
    async def series_page(self, catalog: str, dataset: str, before: str | None, limit: int) -> list[SeriesMember]: ...
    async def distributions_between(self, catalog: str, dataset: str, low: str, high: str) -> list[Distribution]: ...
    async def totals(self) -> Totals: ...
    async def recent_events(self, limit: int, catalogs: list[str] | None = None) -> list[dict[str, Any]]: ...

    async def revoke_session(self, session: str, expires: float) -> None:
        """Refuse web session ``session`` (signed out) until ``expires`` (epoch s), when it ends anyway;
        revocations past their end are forgotten as new ones are written."""
        ...

    async def session_revoked(self, session: str) -> bool:
        """Whether web session ``session`` was signed out (one lookup by the primary key)."""
        ...

    async def live_blobs(self) -> set[str]: ...
    async def trim_events(self) -> None: ...
    async def close_subscriptions(self) -> None: ...


class PartWriter(Protocol):
    """One part of a multipart upload on its way into the blob store."""

    async def write(self, chunks: Chunks, limit: int) -> Part:
        """Receive the part; answer it as received (its SHA-256 in ``digest``)."""
        ...

    async def release(self) -> None:
        """End this writer's hold on the part (after it was recorded or refused)."""
        ...


class BlobStore(Protocol):
    """Immutable blobs; a blob is visible to readers only once the metadata refers to it."""

    async def close(self) -> None: ...

    async def put(self, data: bytes) -> str:
        """A small blob from memory, durable when this returns; its name."""
        ...

    async def write(self, chunks: Chunks, limit: int) -> Written:
        """A blob from a stream, hashed as it is written (``TooLarge`` past ``limit`` bytes); durable when
        this returns. The caller deletes it when its digest is refused."""
        ...

    async def read(self, blob: str, start: int, count: int) -> Content:
        """``count`` bytes from ``start`` (``BlobMissing`` when gone)."""
        ...

    async def delete(self, blob: str) -> None: ...

    async def begin(self, op_id: str) -> str:
        """Start a multipart upload; the handle to keep with the operation."""
        ...

    async def part_writer(self, op_id: str, handle: str, number: int, length: int | None) -> PartWriter:
        """A writer for one part (``Busy`` when the same part is arriving elsewhere, ``BlobMissing`` when the
        upload is gone); ``length`` is the request's Content-Length when it has one."""
        ...

    async def complete(self, op_id: str, handle: str, parts: Callable[[], Awaitable[list[Part]]]) -> Written:
        """Make the parts one blob (``Busy`` while a part is still arriving, ``PartChanged`` when one is not
        what was recorded); a repeated call after an interruption finds the blob made before. ``parts`` reads
        (and checks) the recorded parts once no part can be arriving any more."""
        ...

    async def abort(self, op_id: str, handle: str, parts: list[Part]) -> None:
        """Drop an unfinished upload (and a blob its interrupted completion may have made)."""
        ...

    async def sweep(self, live_blobs: set[str], live_operations: dict[str, str], min_age: float) -> int:
        """Remove blobs and temporaries nothing refers to (a store others write to as well spares those
        younger than ``min_age`` seconds); the count."""
        ...
