"""Descriptions of datasets kept next to the catalog: attributes (a dataset's columns), attributes registered
in a catalog, and lineage (between datasets, and between registered attributes).

Part of the metadata store (``meta.SqlMetaStore``): same database, same transactions; no aiohttp.
"""

from __future__ import annotations

import json
from typing import Any

from fusionsync.server.db import Database, Tx

ATTRIBUTE_UPSERT = (
    "INSERT INTO attributes(catalog, dataset, id, idx, meta) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (catalog, dataset, id) DO UPDATE SET idx=excluded.idx, meta=excluded.meta"
)


class Descriptions:
    """Attributes and lineage, in the catalog's database."""

    db: Database

    # -- a dataset's attributes ---------------------------------------------------------
    async def attributes(self, catalog: str, dataset: str) -> list[dict[str, Any]]:
        sql = "SELECT meta FROM attributes WHERE catalog=? AND dataset=? ORDER BY idx, id"
        return [json.loads(m) for (m,) in await self.db.all(sql, catalog, dataset)]

    async def put_attribute(self, catalog: str, dataset: str, meta: dict[str, Any]) -> bool:
        """Store one attribute (by its identifier); True when it is new."""
        key = (catalog, dataset, meta["identifier"])
        async with self.db.transaction() as tx:
            new = await tx.one("SELECT 1 FROM attributes WHERE catalog=? AND dataset=? AND id=?", *key) is None
            await tx.run(ATTRIBUTE_UPSERT, *key, int(meta.get("index") or 0), json.dumps(meta))
        return new

    async def replace_attributes(self, catalog: str, dataset: str, metas: list[dict[str, Any]]) -> None:
        """The dataset's attributes become exactly ``metas``."""
        async with self.db.transaction() as tx:
            await tx.run("DELETE FROM attributes WHERE catalog=? AND dataset=?", catalog, dataset)
            rows = [(catalog, dataset, m["identifier"], int(m.get("index") or 0), json.dumps(m)) for m in metas]
            await tx.many(ATTRIBUTE_UPSERT, rows)

    async def delete_attribute(self, catalog: str, dataset: str, attribute: str) -> bool:
        sql = "DELETE FROM attributes WHERE catalog=? AND dataset=? AND id=?"
        return await self.db.run(sql, catalog, dataset, attribute) > 0

    # -- attributes registered in a catalog -------------------------------------------------
    async def catalog_attributes(self, catalog: str) -> list[dict[str, Any]]:
        rows = await self.db.all("SELECT meta FROM catalog_attributes WHERE catalog=? ORDER BY id", catalog)
        return [json.loads(m) for (m,) in rows]

    async def register_attributes(self, catalog: str, metas: list[dict[str, Any]]) -> None:
        await self.db.many(
            "INSERT INTO catalog_attributes(catalog, id, meta) VALUES (?, ?, ?) "
            "ON CONFLICT (catalog, id) DO UPDATE SET meta=excluded.meta",
            [(catalog, m["identifier"], json.dumps(m)) for m in metas],
        )

    async def add_attribute_lineage(self, catalog: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Record that each target attribute feeds its source attribute (the SDK's ``set_lineage``)."""
        await self.db.many(
            "INSERT INTO attribute_lineage(catalog, source, target) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(catalog, json.dumps(s, sort_keys=True), json.dumps(t, sort_keys=True)) for s, t in pairs],
        )

    async def attribute_lineage(self, catalog: str) -> list[dict[str, Any]]:
        sql = "SELECT source, target FROM attribute_lineage WHERE catalog=? ORDER BY source, target"
        grouped: dict[str, list[Any]] = {}
        for source, target in await self.db.all(sql, catalog):
            grouped.setdefault(source, []).append(json.loads(target))
        return [{"source": json.loads(s), "targets": t} for s, t in grouped.items()]

    # -- dataset lineage ---------------------------------------------------------------------
    async def add_dataset_lineage(self, catalog: str, dataset: str, sources: list[tuple[str, str]]) -> None:
        """Record that ``dataset`` is made from each (catalog, dataset) of ``sources``."""
        await self.db.many(
            "INSERT INTO dataset_lineage(src_catalog, src_dataset, dst_catalog, dst_dataset) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(c, d, catalog, dataset) for c, d in sources],
        )

    async def dataset_lineage(self, catalog: str, dataset: str) -> list[tuple[str, str, str, str]]:
        """Every (source catalog, source dataset, destination catalog, destination dataset) naming the dataset."""
        rows = await self.db.all(
            "SELECT src_catalog, src_dataset, dst_catalog, dst_dataset FROM dataset_lineage "
            "WHERE (src_catalog=? AND src_dataset=?) OR (dst_catalog=? AND dst_dataset=?) ORDER BY 1, 2, 3, 4",
            catalog,
            dataset,
            catalog,
            dataset,
        )
        return [(a, b, c, d) for a, b, c, d in rows]

    async def _forget_descriptions(self, tx: Tx, catalog: str, dataset: str) -> None:
        """Remove a deleted dataset's attributes and lineage (inside the caller's transaction)."""
        await tx.run("DELETE FROM attributes WHERE catalog=? AND dataset=?", catalog, dataset)
        await tx.run(
            "DELETE FROM dataset_lineage WHERE (src_catalog=? AND src_dataset=?) OR (dst_catalog=? AND dst_dataset=?)",
            catalog,
            dataset,
            catalog,
            dataset,
        )
