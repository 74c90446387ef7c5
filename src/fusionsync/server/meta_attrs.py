"""Descriptions of datasets kept next to the catalog: attributes (a dataset's columns), attributes registered
in a catalog, and lineage (between datasets, and between registered attributes).

Shares the metadata store's SQLite connection (and so its transactions); plain methods, no aiohttp.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS attributes (
    catalog TEXT NOT NULL, dataset TEXT NOT NULL, id TEXT NOT NULL, idx INTEGER NOT NULL, meta TEXT NOT NULL,
    PRIMARY KEY (catalog, dataset, id));
CREATE TABLE IF NOT EXISTS catalog_attributes (
    catalog TEXT NOT NULL, id TEXT NOT NULL, meta TEXT NOT NULL, PRIMARY KEY (catalog, id));
CREATE TABLE IF NOT EXISTS attribute_lineage (
    catalog TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (catalog, source, target));
CREATE TABLE IF NOT EXISTS dataset_lineage (
    src_catalog TEXT NOT NULL, src_dataset TEXT NOT NULL, dst_catalog TEXT NOT NULL, dst_dataset TEXT NOT NULL,
    PRIMARY KEY (src_catalog, src_dataset, dst_catalog, dst_dataset));
"""


class DescriptionStore:
    """Attributes and lineage, in the catalog's database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    # -- a dataset's attributes ---------------------------------------------------------
    def attributes(self, catalog: str, dataset: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT meta FROM attributes WHERE catalog=? AND dataset=? ORDER BY idx, id", (catalog, dataset)
        )
        return [json.loads(m) for (m,) in rows]

    def put_attribute(self, catalog: str, dataset: str, meta: dict[str, Any]) -> bool:
        """Store one attribute (by its identifier); True when it is new."""
        key = (catalog, dataset, meta["identifier"])
        new = self._db.execute("SELECT 1 FROM attributes WHERE catalog=? AND dataset=? AND id=?", key).fetchone()
        self._db.execute(
            "INSERT OR REPLACE INTO attributes(catalog, dataset, id, idx, meta) VALUES (?, ?, ?, ?, ?)",
            (*key, int(meta.get("index") or 0), json.dumps(meta)),
        )
        return new is None

    def replace_attributes(self, catalog: str, dataset: str, metas: list[dict[str, Any]]) -> None:
        """The dataset's attributes become exactly ``metas``."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM attributes WHERE catalog=? AND dataset=?", (catalog, dataset))
            self._db.executemany(
                "INSERT OR REPLACE INTO attributes(catalog, dataset, id, idx, meta) VALUES (?, ?, ?, ?, ?)",
                [(catalog, dataset, m["identifier"], int(m.get("index") or 0), json.dumps(m)) for m in metas],
            )

    def delete_attribute(self, catalog: str, dataset: str, attribute: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM attributes WHERE catalog=? AND dataset=? AND id=?", (catalog, dataset, attribute)
        )
        return cur.rowcount > 0

    # -- attributes registered in a catalog -------------------------------------------------
    def catalog_attributes(self, catalog: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT meta FROM catalog_attributes WHERE catalog=? ORDER BY id", (catalog,))
        return [json.loads(m) for (m,) in rows]

    def register_attributes(self, catalog: str, metas: list[dict[str, Any]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO catalog_attributes(catalog, id, meta) VALUES (?, ?, ?)",
                [(catalog, m["identifier"], json.dumps(m)) for m in metas],
            )

    def add_attribute_lineage(self, catalog: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Record that each target attribute feeds its source attribute (the SDK's ``set_lineage``)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO attribute_lineage(catalog, source, target) VALUES (?, ?, ?)",
                [(catalog, json.dumps(s, sort_keys=True), json.dumps(t, sort_keys=True)) for s, t in pairs],
            )

    def attribute_lineage(self, catalog: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT source, target FROM attribute_lineage WHERE catalog=? ORDER BY source, target", (catalog,)
        )
        grouped: dict[str, list[Any]] = {}
        for source, target in rows:
            grouped.setdefault(source, []).append(json.loads(target))
        return [{"source": json.loads(s), "targets": t} for s, t in grouped.items()]

    # -- dataset lineage ---------------------------------------------------------------------
    def add_dataset_lineage(self, catalog: str, dataset: str, sources: list[tuple[str, str]]) -> None:
        """Record that ``dataset`` is made from each (catalog, dataset) of ``sources``."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO dataset_lineage(src_catalog, src_dataset, dst_catalog, dst_dataset) "
                "VALUES (?, ?, ?, ?)",
                [(c, d, catalog, dataset) for c, d in sources],
            )

    def dataset_lineage(self, catalog: str, dataset: str) -> list[tuple[str, str, str, str]]:
        """Every (source catalog, source dataset, destination catalog, destination dataset) naming the dataset."""
        rows = self._db.execute(
            "SELECT src_catalog, src_dataset, dst_catalog, dst_dataset FROM dataset_lineage "
            "WHERE (src_catalog=? AND src_dataset=?) OR (dst_catalog=? AND dst_dataset=?) ORDER BY 1, 2, 3, 4",
            (catalog, dataset, catalog, dataset),
        )
        return [(a, b, c, d) for a, b, c, d in rows]

    def forget_dataset(self, catalog: str, dataset: str) -> None:
        """Remove a deleted dataset's attributes and lineage (inside the caller's transaction)."""
        self._db.execute("DELETE FROM attributes WHERE catalog=? AND dataset=?", (catalog, dataset))
        self._db.execute(
            "DELETE FROM dataset_lineage WHERE (src_catalog=? AND src_dataset=?) OR (dst_catalog=? AND dst_dataset=?)",
            (catalog, dataset, catalog, dataset),
        )
