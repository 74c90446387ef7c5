"""What people browsing the catalog (the web pages) and operators (``/metrics``) read from the metadata store:
pages of datasets and series members taken by key in the database (a catalog of 100,000 distributions is
never read whole), a search of datasets, the totals and the most recent change events; and the web sessions
signed out before they expired.

Part of the metadata store (``meta.SqlMetaStore``): same database; no aiohttp.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fusionsync.server.db import Database
from fusionsync.server.store import Distribution, SeriesMember, Totals

EXPIRED = "uploads_expired"
"""The counter (in the ``counters`` table) of multipart uploads dropped after --upload-expiry."""


def like_pattern(text: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) matching ``text`` anywhere, lower-cased."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Browsing:
    """Pages, search, totals, recent events and revoked web sessions, in the catalog's database."""

    db: Database

    async def datasets_page(self, catalog: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` datasets of ``catalog`` whose identifiers follow ``after``, in identifier order."""
        sql = "SELECT meta FROM datasets WHERE catalog=? AND id > ? ORDER BY id LIMIT ?"
        return [json.loads(m) for (m,) in await self.db.all(sql, catalog, after or "", limit)]

    async def products_page(self, catalog: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT meta FROM products WHERE catalog=? AND id > ? ORDER BY id LIMIT ?"
        return [json.loads(m) for (m,) in await self.db.all(sql, catalog, after or "", limit)]

    async def product_datasets_page(
        self, catalog: str, product: str, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The datasets a product holds (those that exist), by identifier."""
        sql = (
            "SELECT d.meta FROM product_datasets p JOIN datasets d ON d.catalog=p.catalog AND d.id=p.dataset "
            "WHERE p.catalog=? AND p.product=? AND p.dataset > ? ORDER BY p.dataset LIMIT ?"
        )
        return [json.loads(m) for (m,) in await self.db.all(sql, catalog, product, after or "", limit)]

    async def search_datasets(
        self, text: str, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Datasets (of every catalog) whose identifier, title or description contains ``text`` (ignoring
        case), as (catalog, metadata), by catalog and identifier after ``after``."""
        field = self.db.json_field
        pattern = like_pattern(text)
        wanted = " OR ".join(
            f"LOWER({column}) LIKE ? ESCAPE '\\'"
            for column in ("id", field("meta", "title"), field("meta", "description"))
        )
        start = after or ("", "")
        sql = (
            f"SELECT catalog, meta FROM datasets WHERE ({wanted}) AND (catalog > ? OR (catalog = ? AND id > ?)) "
            "ORDER BY catalog, id LIMIT ?"
        )
        rows = await self.db.all(sql, pattern, pattern, pattern, start[0], start[0], start[1], limit)
        return [(str(c), json.loads(m)) for c, m in rows]

    async def series_page(self, catalog: str, dataset: str, before: str | None, limit: int) -> list[SeriesMember]:
        """Up to ``limit`` series members of a dataset, newest identifier first, those before ``before``."""
        sql = "SELECT id, created FROM series WHERE catalog=? AND dataset=?"
        args: list[Any] = [catalog, dataset]
        if before is not None:
            sql += " AND id < ?"
            args.append(before)
        rows = await self.db.all(sql + " ORDER BY id DESC LIMIT ?", *args, limit)
        return [SeriesMember(str(i), str(c), None, None) for i, c in rows]

    async def distributions_between(self, catalog: str, dataset: str, low: str, high: str) -> list[Distribution]:
        """The distributions of the series members from ``low`` to ``high`` (a page's), by the primary key."""
        sql = (
            "SELECT series, format, blob, size, digest, checksum, modified, file_name FROM distributions "
            "WHERE catalog=? AND dataset=? AND series >= ? AND series <= ? ORDER BY series DESC, format"
        )
        return [Distribution(catalog, dataset, *row) for row in await self.db.all(sql, catalog, dataset, low, high)]

    async def totals(self) -> Totals:
        """Counts of everything stored, the bytes of every distribution and the uploads open and expired."""
        counts = []
        for table in ("catalogs", "products", "datasets", "series"):
            (n,) = await self.db.one(f"SELECT COUNT(*) FROM {table}")
            counts.append(int(n))
        n, size = await self.db.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM distributions")
        (open_ops,) = await self.db.one("SELECT COUNT(*) FROM operations WHERE state <> 'done'")
        expired = await self.db.one("SELECT value FROM counters WHERE name=?", EXPIRED)
        catalogs, products, datasets, series = counts
        return Totals(
            catalogs,
            products,
            datasets,
            series,
            int(n),
            int(size),
            int(open_ops),
            0 if expired is None else int(expired[0]),
        )

    async def recent_events(self, limit: int, catalogs: list[str] | None = None) -> list[dict[str, Any]]:
        """The newest change events (of ``catalogs`` only, when given), newest first, as their JSON bodies."""
        if catalogs is None:
            rows = await self.db.all("SELECT body FROM events ORDER BY seq DESC LIMIT ?", limit)
        elif not catalogs:
            return []
        else:
            marks = ", ".join("?" * len(catalogs))
            sql = f"SELECT body FROM events WHERE catalog IN ({marks}) ORDER BY seq DESC LIMIT ?"
            rows = await self.db.all(sql, *catalogs, limit)
        return [json.loads(body) for (body,) in rows]

    async def revoke_session(self, session: str, expires: float) -> None:
        """Refuse web session ``session`` from now until ``expires`` (epoch s, when it ends anyway); the
        revocations already past their session's end are forgotten meanwhile."""
        async with self.db.transaction() as tx:
            await tx.run("DELETE FROM revoked_sessions WHERE expires < ?", time.time())
            sql = "INSERT INTO revoked_sessions(id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
            await tx.run(sql, session, expires)

    async def session_revoked(self, session: str) -> bool:
        return await self.db.one("SELECT 1 FROM revoked_sessions WHERE id=?", session) is not None
