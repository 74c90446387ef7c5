"""Metadata store of the catalog server, in one SQLite file.

Every write is one transaction. Calls are short (microseconds) and run on the server's
event loop thread, which serialises them; SQLite's WAL mode lets readers in other
processes (backups, inspection) see a consistent state.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fusionsync.server.meta_attrs import DescriptionStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalogs (
    id TEXT PRIMARY KEY, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    catalog TEXT NOT NULL, id TEXT NOT NULL, meta TEXT NOT NULL,
    PRIMARY KEY (catalog, id));
CREATE TABLE IF NOT EXISTS datasets (
    catalog TEXT NOT NULL, id TEXT NOT NULL, meta TEXT NOT NULL, modified TEXT NOT NULL,
    PRIMARY KEY (catalog, id));
CREATE TABLE IF NOT EXISTS product_datasets (
    catalog TEXT NOT NULL, product TEXT NOT NULL, dataset TEXT NOT NULL,
    PRIMARY KEY (catalog, product, dataset));
CREATE TABLE IF NOT EXISTS series (
    catalog TEXT NOT NULL, dataset TEXT NOT NULL, id TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (catalog, dataset, id));
CREATE TABLE IF NOT EXISTS distributions (
    catalog TEXT NOT NULL, dataset TEXT NOT NULL, series TEXT NOT NULL, format TEXT NOT NULL,
    blob TEXT NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL, checksum TEXT NOT NULL,
    modified TEXT NOT NULL, file_name TEXT, from_date TEXT, to_date TEXT, created_date TEXT,
    PRIMARY KEY (catalog, dataset, series, format));
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, catalog TEXT NOT NULL, dataset TEXT NOT NULL, series TEXT NOT NULL,
    format TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operation_parts (
    operation TEXT NOT NULL, number INTEGER NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    digest TEXT NOT NULL, PRIMARY KEY (operation, number));
"""


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
    """One received part of a multipart upload."""

    number: int
    blob: str
    size: int
    digest: str


class MetaStore:
    """Catalogs, products, datasets, series members and distributions."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.descriptions = DescriptionStore(self._db)

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        return self._db.execute(sql, args).fetchall()

    # -- catalogs ---------------------------------------------------------------------
    def catalog(self, catalog: str) -> dict[str, Any] | None:
        row = self._one("SELECT meta FROM catalogs WHERE id=?", catalog)
        return None if row is None else dict(json.loads(row[0]))

    def catalogs(self) -> list[dict[str, Any]]:
        return [json.loads(m) for (m,) in self._all("SELECT meta FROM catalogs ORDER BY id")]

    def put_catalog(self, catalog: str, meta: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO catalogs(id, meta) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET meta=excluded.meta",
            (catalog, json.dumps(meta)),
        )

    def delete_catalog(self, catalog: str) -> bool | None:
        """Delete an empty catalog: True when deleted, False when it holds datasets or products, None if absent."""
        with self._db:
            self._db.execute("BEGIN")
            if self._one("SELECT 1 FROM catalogs WHERE id=?", catalog) is None:
                return None
            for table in ("datasets", "products", "catalog_attributes"):
                if self._one(f"SELECT 1 FROM {table} WHERE catalog=? LIMIT 1", catalog) is not None:
                    return False
            self._db.execute("DELETE FROM catalogs WHERE id=?", (catalog,))
        return True

    # -- products ---------------------------------------------------------------------
    def product(self, catalog: str, product: str) -> dict[str, Any] | None:
        row = self._one("SELECT meta FROM products WHERE catalog=? AND id=?", catalog, product)
        return None if row is None else dict(json.loads(row[0]))

    def products(self, catalog: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT meta FROM products WHERE catalog=? ORDER BY id", catalog)
        return [json.loads(m) for (m,) in rows]

    def put_product(self, catalog: str, product: str, meta: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO products(catalog, id, meta) VALUES (?, ?, ?) "
            "ON CONFLICT(catalog, id) DO UPDATE SET meta=excluded.meta",
            (catalog, product, json.dumps(meta)),
        )

    def delete_product(self, catalog: str, product: str) -> bool:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM product_datasets WHERE catalog=? AND product=?", (catalog, product))
            cur = self._db.execute("DELETE FROM products WHERE catalog=? AND id=?", (catalog, product))
        return cur.rowcount > 0

    def product_datasets(self, catalog: str, product: str | None = None) -> list[tuple[str, str]]:
        if product is None:
            sql = "SELECT product, dataset FROM product_datasets WHERE catalog=? ORDER BY product, dataset"
            return [(p, d) for p, d in self._all(sql, catalog)]
        sql = "SELECT product, dataset FROM product_datasets WHERE catalog=? AND product=? ORDER BY dataset"
        return [(p, d) for p, d in self._all(sql, catalog, product)]

    def link_product_datasets(self, catalog: str, product: str, datasets: list[str]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO product_datasets(catalog, product, dataset) VALUES (?, ?, ?)",
                [(catalog, product, d) for d in datasets],
            )

    def unlink_product_dataset(self, catalog: str, product: str, dataset: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM product_datasets WHERE catalog=? AND product=? AND dataset=?",
            (catalog, product, dataset),
        )
        return cur.rowcount > 0

    # -- datasets ---------------------------------------------------------------------
    def dataset(self, catalog: str, dataset: str) -> dict[str, Any] | None:
        row = self._one("SELECT meta FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
        return None if row is None else dict(json.loads(row[0]))

    def has_dataset(self, catalog: str, dataset: str) -> bool:
        return self._one("SELECT 1 FROM datasets WHERE catalog=? AND id=?", catalog, dataset) is not None

    def datasets(self, catalog: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT meta FROM datasets WHERE catalog=? ORDER BY id", catalog)
        return [json.loads(m) for (m,) in rows]

    def put_dataset(self, catalog: str, dataset: str, meta: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO datasets(catalog, id, meta, modified) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(catalog, id) DO UPDATE SET meta=excluded.meta",
            (catalog, dataset, json.dumps(meta), now_iso()),
        )

    def delete_dataset(self, catalog: str, dataset: str) -> list[str] | None:
        """Delete a dataset and everything in it; return the blobs to remove, None if absent."""
        with self._db:
            self._db.execute("BEGIN")
            if self._one("SELECT 1 FROM datasets WHERE catalog=? AND id=?", catalog, dataset) is None:
                return None
            blobs = [
                b
                for (b,) in self._all("SELECT blob FROM distributions WHERE catalog=? AND dataset=?", catalog, dataset)
            ]
            for table, col in (
                ("distributions", "dataset"),
                ("series", "dataset"),
                ("product_datasets", "dataset"),
            ):
                self._db.execute(f"DELETE FROM {table} WHERE catalog=? AND {col}=?", (catalog, dataset))
            self.descriptions.forget_dataset(catalog, dataset)
            self._db.execute("DELETE FROM datasets WHERE catalog=? AND id=?", (catalog, dataset))
        return blobs

    def dataset_modified(self, catalog: str, dataset: str) -> str | None:
        row = self._one("SELECT modified FROM datasets WHERE catalog=? AND id=?", catalog, dataset)
        return None if row is None else str(row[0])

    # -- series members -------------------------------------------------------------
    def series(self, catalog: str, dataset: str, series: str) -> str | None:
        row = self._one("SELECT created FROM series WHERE catalog=? AND dataset=? AND id=?", catalog, dataset, series)
        return None if row is None else str(row[0])

    def series_list(self, catalog: str, dataset: str, series: str | None = None) -> list[SeriesMember]:
        """The series members (or the one named), with the dates their distributions' uploads declared."""
        sql = (
            "SELECT s.id, s.created, MIN(d.from_date), MAX(d.to_date) FROM series s LEFT JOIN distributions d "
            "ON d.catalog=s.catalog AND d.dataset=s.dataset AND d.series=s.id WHERE s.catalog=? AND s.dataset=?"
        )
        args: tuple[str, ...] = (catalog, dataset) if series is None else (catalog, dataset, series)
        if series is not None:
            sql += " AND s.id=?"
        return [SeriesMember(*row) for row in self._all(sql + " GROUP BY s.id ORDER BY s.id", *args)]

    def delete_all_series(self, catalog: str, dataset: str) -> list[str]:
        """Delete every series member of a dataset with its distributions; return the blobs to remove."""
        with self._db:
            self._db.execute("BEGIN")
            key = (catalog, dataset)
            blobs = [b for (b,) in self._all("SELECT blob FROM distributions WHERE catalog=? AND dataset=?", *key)]
            self._db.execute("DELETE FROM distributions WHERE catalog=? AND dataset=?", key)
            self._db.execute("DELETE FROM series WHERE catalog=? AND dataset=?", key)
            self._touch(catalog, dataset)
        return blobs

    def delete_series(self, catalog: str, dataset: str, series: str) -> list[str] | None:
        with self._db:
            self._db.execute("BEGIN")
            key = (catalog, dataset, series)
            if self._one("SELECT 1 FROM series WHERE catalog=? AND dataset=? AND id=?", *key) is None:
                return None
            blobs = [
                b
                for (b,) in self._all("SELECT blob FROM distributions WHERE catalog=? AND dataset=? AND series=?", *key)
            ]
            self._db.execute("DELETE FROM distributions WHERE catalog=? AND dataset=? AND series=?", key)
            self._db.execute("DELETE FROM series WHERE catalog=? AND dataset=? AND id=?", key)
            self._touch(catalog, dataset)
        return blobs

    # -- distributions ----------------------------------------------------------------
    def distribution(self, catalog: str, dataset: str, series: str, fmt: str) -> Distribution | None:
        row = self._one(
            "SELECT blob, size, digest, checksum, modified, file_name FROM distributions "
            "WHERE catalog=? AND dataset=? AND series=? AND format=?",
            catalog,
            dataset,
            series,
            fmt,
        )
        if row is None:
            return None
        return Distribution(catalog, dataset, series, fmt, *row)

    def distributions(self, catalog: str, dataset: str, series: str | None = None) -> list[Distribution]:
        sql = (
            "SELECT series, format, blob, size, digest, checksum, modified, file_name FROM distributions "
            "WHERE catalog=? AND dataset=?"
        )
        args: tuple[str, ...] = (catalog, dataset)
        if series is not None:
            sql += " AND series=?"
            args = (*args, series)
        rows = self._all(sql + " ORDER BY series, format", *args)
        return [Distribution(catalog, dataset, *row) for row in rows]

    def put_distribution(self, dist: Distribution, headers: dict[str, str | None]) -> str | None:
        """Store ``dist`` (creating its series member); return the blob it replaced, if any."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self._one(
                "SELECT blob FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?",
                dist.catalog,
                dist.dataset,
                dist.series,
                dist.format,
            )
            self._db.execute(
                "INSERT OR IGNORE INTO series(catalog, dataset, id, created) VALUES (?, ?, ?, ?)",
                (dist.catalog, dist.dataset, dist.series, dist.modified),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO distributions(catalog, dataset, series, format, blob, size, digest, "
                "checksum, modified, file_name, from_date, to_date, created_date) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dist.catalog,
                    dist.dataset,
                    dist.series,
                    dist.format,
                    dist.blob,
                    dist.size,
                    dist.digest,
                    dist.checksum,
                    dist.modified,
                    dist.file_name,
                    headers.get("from"),
                    headers.get("to"),
                    headers.get("created"),
                ),
            )
            self._touch(dist.catalog, dist.dataset, dist.modified)
        return None if old is None or old[0] == dist.blob else str(old[0])

    def delete_distribution(self, catalog: str, dataset: str, series: str, fmt: str) -> str | None:
        with self._db:
            self._db.execute("BEGIN")
            key = (catalog, dataset, series, fmt)
            row = self._one(
                "SELECT blob FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?", *key
            )
            if row is None:
                return None
            self._db.execute("DELETE FROM distributions WHERE catalog=? AND dataset=? AND series=? AND format=?", key)
            self._touch(catalog, dataset)
        return str(row[0])

    def _touch(self, catalog: str, dataset: str, when: str | None = None) -> None:
        self._db.execute(
            "UPDATE datasets SET modified=? WHERE catalog=? AND id=?", (when or now_iso(), catalog, dataset)
        )

    # -- multipart operations ---------------------------------------------------------
    def start_operation(self, op_id: str, catalog: str, dataset: str, series: str, fmt: str) -> None:
        self._db.execute(
            "INSERT INTO operations(id, catalog, dataset, series, format, created) VALUES (?, ?, ?, ?, ?, ?)",
            (op_id, catalog, dataset, series, fmt, now_iso()),
        )

    def operation(self, op_id: str) -> tuple[str, str, str, str] | None:
        row = self._one("SELECT catalog, dataset, series, format FROM operations WHERE id=?", op_id)
        return None if row is None else (row[0], row[1], row[2], row[3])

    def put_part(self, op_id: str, part: Part) -> str | None:
        """Record a part; return the blob of a part it replaced, if any."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self._one("SELECT blob FROM operation_parts WHERE operation=? AND number=?", op_id, part.number)
            self._db.execute(
                "INSERT OR REPLACE INTO operation_parts(operation, number, blob, size, digest) VALUES (?, ?, ?, ?, ?)",
                (op_id, part.number, part.blob, part.size, part.digest),
            )
        return None if old is None else str(old[0])

    def parts(self, op_id: str) -> list[Part]:
        rows = self._all(
            "SELECT number, blob, size, digest FROM operation_parts WHERE operation=? ORDER BY number", op_id
        )
        return [Part(*row) for row in rows]

    def end_operation(self, op_id: str) -> list[str]:
        """Forget an operation; return the blobs of its parts."""
        with self._db:
            self._db.execute("BEGIN")
            blobs = [b for (b,) in self._all("SELECT blob FROM operation_parts WHERE operation=?", op_id)]
            self._db.execute("DELETE FROM operation_parts WHERE operation=?", (op_id,))
            self._db.execute("DELETE FROM operations WHERE id=?", (op_id,))
        return blobs

    def all_blobs(self) -> set[str]:
        """Every blob the metadata refers to (used to sweep orphans at start)."""
        rows = self._all("SELECT blob FROM distributions UNION SELECT blob FROM operation_parts")
        return {b for (b,) in rows}

    def operation_ids(self) -> set[str]:
        """The multipart uploads still open."""
        return {o for (o,) in self._all("SELECT id FROM operations")}
