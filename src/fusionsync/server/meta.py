"""The metadata store over SQL (SQLite or PostgreSQL, see ``db``): catalogs, products, datasets, series
members and distributions; attributes and lineage (``meta_attrs``), upload operations (``meta_uploads``) and
the change-event log (``eventlog``) and the pages people browse (``meta_browse``) share its database and transactions.

Recording a distribution is one transaction with everything that goes with it: its series member, the
dataset's modification time, its event, the blob it replaced (removed after a grace period) and the end of
its upload operation. Concurrent recordings share one transaction (a group commit): on PostgreSQL each
commit waits for its write-ahead log to reach the disk, and on SQLite a transaction costs more than a row.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from fusionsync.server.batching import Batcher
from fusionsync.server.db import Database, Tx, migrate, open_database
from fusionsync.server.eventlog import EventLog
from fusionsync.server.meta_attrs import Descriptions
from fusionsync.server.meta_browse import Browsing
from fusionsync.server.meta_uploads import Operations, result_json
from fusionsync.server.schema import MIGRATIONS
from fusionsync.server.store import (
    CREATED,
    DELETED,
    PAGE_BYTES,
    REPLACED,
    Commit,
    Distribution,
    Page,
    SeriesMember,
    now_iso,
)

DIST_COLUMNS = "series, format, blob, size, digest, checksum, modified, file_name"
PAGE_BATCH = 64
log = logging.getLogger("fusionsync.server")


def readable(identifier: str, meta: str) -> dict[str, Any]:
    """Stored metadata as a dict; metadata that cannot be read back (stored by an earlier release: nested too
    deeply, not JSON) answers a stand-in naming the item, so one bad item never breaks a listing."""
    try:
        value = json.loads(meta)
        if isinstance(value, dict):
            return value
    except (ValueError, RecursionError):
        pass
    log.warning("the stored metadata of %r cannot be read; delete or rewrite it", identifier)
    return {"identifier": identifier, "title": identifier, "description": "(stored metadata unreadable)"}


class SqlMetaStore(Descriptions, Browsing, Operations, EventLog):
    """The metadata store on one SQL database."""

    def __init__(self, db: Database, log_id: str, grace: float) -> None:
        self.db = db
        self.log_id = log_id
        self.grace = grace
        self._commits = Batcher(self._commit_batch)
        EventLog.__init__(self)

    @classmethod
    async def open(cls, url: str, grace: float = 60.0) -> SqlMetaStore:
        """Connect to the database of a ``--metadata`` URL, creating or migrating its schema."""
        db = await open_database(url)
        try:
            await migrate(db, MIGRATIONS)
            await db.run(
                "INSERT INTO settings(name, value) VALUES ('log_id', ?) ON CONFLICT (name) DO NOTHING",
                secrets.token_hex(4),
            )
            (log_id,) = await db.one("SELECT value FROM settings WHERE name='log_id'")
        except BaseException:
            await db.close()
            raise
        return cls(db, str(log_id), grace)

    async def close(self) -> None:
        await self.close_subscriptions()
        await self.db.close()

    async def _meta(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self.db.one(sql, *args)
        return None if row is None else readable(row[0], row[1])

    async def _page(self, sql: str, args: tuple[Any, ...], start: int, count: int) -> Page:
        """Up to ``count`` items of a listing (``id, meta`` rows) from ``start``, read a batch of rows at a time,
        fewer once they hold ``PAGE_BYTES``; and whether more follow."""
        items: list[dict[str, Any]] = []
        held = 0
        while len(items) < count:
            batch = min(PAGE_BATCH, count - len(items))
            rows = await self.db.all(f"{sql} LIMIT ? OFFSET ?", *args, batch + 1, start + len(items))
            for identifier, meta in rows[:batch]:
                if items and held + len(meta) > PAGE_BYTES:
                    return items, True
                items.append(readable(identifier, meta))
                held += len(meta)
            if len(rows) <= batch:
                return items, False
        return items, True

    # -- catalogs ---------------------------------------------------------------------
    async def catalog(self, catalog: str) -> dict[str, Any] | None:
        return await self._meta("SELECT id, meta FROM catalogs WHERE id=?", catalog)

    async def catalogs(self, start: int, count: int, only: frozenset[str] | None = None) -> Page:
        if only is None:
            return await self._page("SELECT id, meta FROM catalogs ORDER BY id", (), start, count)
        if not only:
            return [], False
        names = sorted(only)
        marks = ", ".join("?" * len(names))
        return await self._page(
            f"SELECT id, meta FROM catalogs WHERE id IN ({marks}) ORDER BY id", (*names,), start, count
        )

    async def create_catalog(self, catalog: str, meta: dict[str, Any]) -> bool:
        sql = "INSERT INTO catalogs(id, meta) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
        return await self.db.run(sql, catalog, json.dumps(meta)) > 0

    async def delete_catalog(self, catalog: str) -> bool | None:
        """Delete an empty catalog: True when deleted, False when it holds datasets or products, None if absent."""
        async with self.db.transaction() as tx:
            if await tx.one("SELECT 1 FROM catalogs WHERE id=?", catalog) is None:
                return None
            for table in ("datasets", "products", "catalog_attributes"):
                if await tx.one(f"SELECT 1 FROM {table} WHERE catalog=? LIMIT 1", catalog) is not None:
                    return False
            await tx.run("DELETE FROM catalogs WHERE id=?", catalog)
        return True

    # -- products ---------------------------------------------------------------------
    async def product(self, catalog: str, product: str) -> dict[str, Any] | None:
        return await self._meta("SELECT id, meta FROM products WHERE catalog=? AND id=?", catalog, product)

    async def products(self, catalog: str, start: int, count: int) -> Page:
        return await self._page("SELECT id, meta FROM products WHERE catalog=? ORDER BY id", (catalog,), start, count)

    async def put_product(self, catalog: str, product: str, meta: dict[str, Any], links: list[str]) -> None:
        async with self.db.transaction() as tx:
            await tx.run(
                "INSERT INTO products(catalog, id, meta) VALUES (?, ?, ?) "
                "ON CONFLICT (catalog, id) DO UPDATE SET meta=excluded.meta",
                catalog,
                product,
                json.dumps(meta),
            )
            await _link(tx, catalog, [(product, d) for d in links])

    async def delete_product(self, catalog: str, product: str) -> bool:
        async with self.db.transaction() as tx:
            await tx.run("DELETE FROM product_datasets WHERE catalog=? AND product=?", catalog, product)
            deleted = await tx.run("DELETE FROM products WHERE catalog=? AND id=?", catalog, product)
        return bool(deleted)

    async def product_datasets(
        self, catalog: str, product: str | None = None, start: int = 0, count: int = -1
    ) -> list[tuple[str, str]]:
        if product is None:
            sql = "SELECT product, dataset FROM product_datasets WHERE catalog=? ORDER BY product, dataset"
            rows = await self.db.all(sql + " LIMIT ? OFFSET ?", catalog, _limit(count), start)
        else:
            sql = "SELECT product, dataset FROM product_datasets WHERE catalog=? AND product=? ORDER BY dataset"
            rows = await self.db.all(sql + " LIMIT ? OFFSET ?", catalog, product, _limit(count), start)
        return [(p, d) for p, d in rows]

    async def link_product_datasets(self, catalog: str, product: str, datasets: list[str]) -> None:
        await _link(self.db, catalog, [(product, d) for d in datasets])

    async def unlink_product_dataset(self, catalog: str, product: str, dataset: str) -> bool:
        sql = "DELETE FROM product_datasets WHERE catalog=? AND product=? AND dataset=?"
        return await self.db.run(sql, catalog, product, dataset) > 0

    # -- datasets ---------------------------------------------------------------------
    async def dataset(self, catalog: str, dataset: str) -> dict[str, Any] | None:
        return await self._meta("SELECT id, meta FROM datasets WHERE catalog=? AND id=?", catalog, dataset)

    async def has_dataset(self, catalog: str, dataset: str) -> bool:
        return await self.db.one("SELECT 1 FROM datasets WHERE catalog=? AND id=?", catalog, dataset) is not None

    async def incarnation(self, catalog: str, dataset: str) -> str | None:
        row = await self.db.one("SELECT incarnation FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
        return None if row is None else str(row[0])

    async def datasets(self, catalog: str, start: int, count: int) -> Page:
        return await self._page("SELECT id, meta FROM datasets WHERE catalog=? ORDER BY id", (catalog,), start, count)

    async def put_dataset(self, catalog: str, dataset: str, meta: dict[str, Any], products: list[str]) -> None:
        async with self.db.transaction() as tx:
            await tx.run(
                "INSERT INTO datasets(catalog, id, meta, modified, incarnation) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (catalog, id) DO UPDATE SET meta=excluded.meta",
                catalog,
                dataset,
                json.dumps(meta),
                now_iso(),
                secrets.token_hex(8),
            )
            await _link(tx, catalog, [(p, dataset) for p in products])

    async def dataset_modified(self, catalog: str, dataset: str) -> str | None:
        row = await self.db.one("SELECT modified FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
        return None if row is None else str(row[0])

    # -- series members and distributions -------------------------------------------
    async def series(self, catalog: str, dataset: str, series: str) -> str | None:
        sql = "SELECT created FROM series WHERE catalog=? AND dataset=? AND id=?"
        row = await self.db.one(sql, catalog, dataset, series)
        return None if row is None else str(row[0])

    async def series_list(
        self, catalog: str, dataset: str, series: str | None = None, start: int = 0, count: int = -1
    ) -> list[SeriesMember]:
        """The series members (or the one named; ``count`` of them from ``start``), with the dates their
        distributions' uploads declared."""
        sql = (
            "SELECT s.id, s.created, MIN(d.from_date), MAX(d.to_date) FROM series s LEFT JOIN distributions d "
            "ON d.catalog=s.catalog AND d.dataset=s.dataset AND d.series=s.id WHERE s.catalog=? AND s.dataset=?"
        )
        args: tuple[str, ...] = (catalog, dataset) if series is None else (catalog, dataset, series)
        if series is not None:
            sql += " AND s.id=?"
        rows = await self.db.all(
            sql + " GROUP BY s.id, s.created ORDER BY s.id LIMIT ? OFFSET ?", *args, _limit(count), start
        )
        return [SeriesMember(*row) for row in rows]

    async def distribution(self, catalog: str, dataset: str, series: str, fmt: str) -> Distribution | None:
        sql = f"SELECT {DIST_COLUMNS} FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?"
        row = await self.db.one(sql, catalog, dataset, series, fmt)
        return None if row is None else Distribution(catalog, dataset, *row)

    async def distributions(
        self, catalog: str, dataset: str, series: str | None = None, start: int = 0, count: int = -1
    ) -> list[Distribution]:
        return await _distributions(self.db, catalog, dataset, series, start, count)

    async def commit(self, item: Commit) -> bool:
        return await self._commits(item)

    async def _commit_batch(self, items: list[Commit]) -> list[bool | BaseException]:
        """Record the distributions in one transaction (then wake this process's subscribers)."""
        order = sorted(range(len(items)), key=lambda i: _key(items[i].dist))  # rows locked in one order
        results: list[tuple[bool | None, tuple[str, Distribution] | None]] = [(None, None)] * len(items)
        async with self.db.transaction() as tx:
            for i in order:
                results[i] = await self._record(tx, items[i])
            await self._append_events(tx, [event for i in order if (event := results[i][1]) is not None])
        self._published()
        gone = LookupError("the dataset was deleted meanwhile")
        return [gone if replaced is None else replaced for replaced, _ in results]

    async def _record(self, tx: Tx, item: Commit) -> tuple[bool | None, tuple[str, Distribution] | None]:
        dist = item.dist
        touched = "UPDATE datasets SET modified=? WHERE catalog=? AND id=? AND incarnation=?"
        if await tx.run(touched, dist.modified, dist.catalog, dist.dataset, item.incarnation) == 0:
            return None, None  # nothing written for this one: the dataset is gone (or is another by that name)
        key = (dist.catalog, dist.dataset, dist.series, dist.format)
        old = await tx.one(
            "SELECT blob FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?", *key
        )
        await tx.run(
            "INSERT INTO series(catalog, dataset, id, created) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            dist.catalog,
            dist.dataset,
            dist.series,
            dist.modified,
        )
        dates = item.dates
        await tx.run(
            "INSERT INTO distributions(catalog, dataset, series, format, blob, size, digest, checksum, modified, "
            "file_name, from_date, to_date, created_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (catalog, dataset, series, format) DO UPDATE SET blob=excluded.blob, size=excluded.size, "
            "digest=excluded.digest, checksum=excluded.checksum, modified=excluded.modified, "
            "file_name=excluded.file_name, from_date=excluded.from_date, to_date=excluded.to_date, "
            "created_date=excluded.created_date",
            *key,
            dist.blob,
            dist.size,
            dist.digest,
            dist.checksum,
            dist.modified,
            dist.file_name,
            dates.get("from"),
            dates.get("to"),
            dates.get("created"),
        )
        if old is not None and old[0] != dist.blob:
            await self._discard(tx, [old[0]])
        if item.operation is not None:
            await tx.run(
                "UPDATE operations SET state='done', result=?, touched=?, claimed=NULL WHERE id=?",
                result_json(dist),
                time.time(),
                item.operation,
            )
            # the parts are in the blob now: the operation keeps only its result (for a repeated completion)
            await tx.run("DELETE FROM operation_parts WHERE operation=?", item.operation)
        return old is not None, (REPLACED if old is not None else CREATED, dist)

    async def _discard(self, tx: Tx, blobs: list[str]) -> None:
        """Blobs to remove once downloads in flight had time to finish."""
        due = time.time() + self.grace
        await tx.many("INSERT INTO garbage(blob, due) VALUES (?, ?) ON CONFLICT DO NOTHING", [(b, due) for b in blobs])

    async def delete(
        self, catalog: str, dataset: str, series: str | None = None, fmt: str | None = None, whole: bool = False
    ) -> list[Distribution] | None:
        async with self.db.transaction() as tx:
            if whole or series is None:
                found = await tx.one("SELECT 1 FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
            elif fmt is None:
                sql = "SELECT 1 FROM series WHERE catalog=? AND dataset=? AND id=?"
                found = await tx.one(sql, catalog, dataset, series)
            else:
                sql = "SELECT 1 FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?"
                found = await tx.one(sql, catalog, dataset, series, fmt)
            if found is None:
                return None
            where, args = "catalog=? AND dataset=?", [catalog, dataset]
            if series is not None:
                where, args = where + " AND series=?", [*args, series]
            gone = await _distributions(tx, catalog, dataset, series)
            if fmt is not None:
                gone = [d for d in gone if d.format == fmt]
                await tx.run(f"DELETE FROM distributions WHERE {where} AND format=?", *args, fmt)
            else:
                await tx.run(f"DELETE FROM distributions WHERE {where}", *args)
                await tx.run(f"DELETE FROM series WHERE {where.replace('series=', 'id=')}", *args)
            if whole:
                await tx.run("DELETE FROM product_datasets WHERE catalog=? AND dataset=?", catalog, dataset)
                await self._forget_descriptions(tx, catalog, dataset)
                await tx.run("DELETE FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
            else:
                await tx.run("UPDATE datasets SET modified=? WHERE catalog=? AND id=?", now_iso(), catalog, dataset)
            await self._discard(tx, [d.blob for d in gone])
            await self._append_events(tx, [(DELETED, d) for d in gone])
        if gone:
            self._published()
        return gone

    async def live_blobs(self) -> set[str]:
        """Every blob the metadata refers to (the sweep at start spares them)."""
        rows = await self.db.all("SELECT blob FROM distributions UNION SELECT blob FROM garbage")
        return {b for (b,) in rows}

    async def due_garbage(self) -> list[str]:
        async with self.db.transaction() as tx:
            rows = await tx.all("DELETE FROM garbage WHERE due <= ? RETURNING blob", time.time())
        return [b for (b,) in rows]


def _limit(count: int) -> int:
    """A LIMIT both databases take (-1: no limit)."""
    return count if count >= 0 else 2**62


def _key(dist: Distribution) -> tuple[str, str, str, str]:
    return dist.catalog, dist.dataset, dist.series, dist.format


async def _distributions(
    tx: Tx, catalog: str, dataset: str, series: str | None, start: int = 0, count: int = -1
) -> list[Distribution]:
    sql = f"SELECT {DIST_COLUMNS} FROM distributions WHERE catalog=? AND dataset=?"
    args: tuple[str | int, ...] = (catalog, dataset)
    if series is not None:
        sql += " AND series=?"
        args = (*args, series)
    rows = await tx.all(sql + " ORDER BY series, format LIMIT ? OFFSET ?", *args, _limit(count), start)
    return [Distribution(catalog, dataset, *row) for row in rows]


async def _link(tx: Tx, catalog: str, pairs: list[tuple[str, str]]) -> None:
    if pairs:
        sql = "INSERT INTO product_datasets(catalog, product, dataset) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        await tx.many(sql, [(catalog, p, d) for p, d in pairs])
