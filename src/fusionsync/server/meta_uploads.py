"""Multipart upload operations and their parts, in the metadata store (``meta.SqlMetaStore``): every worker
process sees the same state. An operation is ``open`` while parts arrive, ``completing`` while one request
(the claim's holder) makes its blob, and ``done`` once its distribution is recorded, with the result kept
for a repeated completion until it expires. A part is recorded with size -1 while it arrives."""

from __future__ import annotations

import json
import time

from fusionsync.server.db import Database, Tx
from fusionsync.server.meta_browse import EXPIRED
from fusionsync.server.store import COMPLETING, DONE, OPEN, Distribution, Operation, Part

OP_COLUMNS = (
    "id, catalog, dataset, series, format, handle, state, touched, claimed, digest, result, incarnation, client"
)


def result_json(dist: Distribution) -> str:
    return json.dumps([dist.blob, dist.size, dist.digest, dist.checksum, dist.modified, dist.file_name])


def _operation(row: tuple[object, ...]) -> Operation:
    op_id, catalog, dataset, series, fmt, handle, state, touched, claimed, digest, result, incarnation, client = row
    target = (str(catalog), str(dataset), str(series), str(fmt))
    stored = None if result is None else Distribution(*target, *json.loads(str(result)))
    return Operation(
        str(op_id),
        target,
        str(handle),
        str(state),
        float(touched),  # type: ignore[arg-type]
        None if claimed is None else float(claimed),  # type: ignore[arg-type]
        None if digest is None else str(digest),
        stored,
        str(incarnation),
        str(client),
    )


async def _parts(tx: Tx, op_id: str) -> list[Part]:
    sql = "SELECT number, ref, size, digest FROM operation_parts WHERE operation=? ORDER BY number"
    return [Part(*row) for row in await tx.all(sql, op_id)]


class Operations:
    """Upload operations and their parts."""

    db: Database

    async def start_operation(
        self, op_id: str, target: tuple[str, str, str, str], handle: str, incarnation: str, client: str
    ) -> None:
        await self.db.run(
            "INSERT INTO operations(id, catalog, dataset, series, format, created, handle, state, touched, "
            "incarnation, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            op_id,
            *target,
            str(time.time()),
            handle,
            OPEN,
            time.time(),
            incarnation,
            client,
        )

    async def open_operation_count(self, client: str) -> int:
        row = await self.db.one("SELECT COUNT(*) FROM operations WHERE client=? AND state <> ?", client, DONE)
        return int(row[0])

    async def operation(self, op_id: str) -> Operation | None:
        row = await self.db.one(f"SELECT {OP_COLUMNS} FROM operations WHERE id=?", op_id)
        return None if row is None else _operation(row)

    async def parts(self, op_id: str) -> list[Part]:
        return await _parts(self.db, op_id)

    async def part_arriving(self, op_id: str, number: int) -> bool:
        return await self.record_part(op_id, Part(number, "", -1, "incomplete"))

    async def record_part(self, op_id: str, part: Part) -> bool:
        async with self.db.transaction() as tx:
            touched = "UPDATE operations SET touched=? WHERE id=? AND state=?"
            if await tx.run(touched, time.time(), op_id, OPEN) == 0:
                return False
            await tx.run(
                "INSERT INTO operation_parts(operation, number, ref, size, digest) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (operation, number) DO UPDATE SET ref=excluded.ref, size=excluded.size, "
                "digest=excluded.digest",
                op_id,
                part.number,
                part.ref,
                part.size,
                part.digest,
            )
        return True

    async def claim_completion(self, op_id: str, digest: str, stale: float) -> Operation | None:
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.one(f"SELECT {OP_COLUMNS} FROM operations WHERE id=?", op_id)
            claimed = await tx.run(
                "UPDATE operations SET state=?, claimed=?, digest=?, touched=? "
                "WHERE id=? AND (state=? OR (state=? AND claimed < ?))",
                COMPLETING,
                now,
                digest,
                now,
                op_id,
                OPEN,
                COMPLETING,
                now - stale,
            )
        return _operation(row) if claimed and row is not None else None

    async def renew_claim(self, op_id: str) -> None:
        now = time.time()
        await self.db.run(
            "UPDATE operations SET claimed=?, touched=? WHERE id=? AND state=?", now, now, op_id, COMPLETING
        )

    async def release_completion(self, op_id: str, forget: bool) -> list[Part]:
        async with self.db.transaction() as tx:
            parts = await _parts(tx, op_id)
            if forget:
                await tx.run("DELETE FROM operation_parts WHERE operation=?", op_id)
                await tx.run("DELETE FROM operations WHERE id=?", op_id)
            else:
                sql = "UPDATE operations SET state=?, claimed=NULL, touched=? WHERE id=? AND state=?"
                await tx.run(sql, OPEN, time.time(), op_id, COMPLETING)
        return parts

    async def expire_operations(self, idle: float) -> list[tuple[Operation, list[Part]]]:
        cutoff = time.time() - idle
        async with self.db.transaction() as tx:
            rows = await tx.all(
                f"DELETE FROM operations WHERE touched < ? AND (state <> ? OR claimed < ?) RETURNING {OP_COLUMNS}",
                cutoff,
                COMPLETING,
                cutoff,
            )
            expired = [_operation(row) for row in rows]
            unfinished = [(op, await _parts(tx, op.id)) for op in expired if op.state != DONE]
            await tx.many("DELETE FROM operation_parts WHERE operation=?", [(op.id,) for op in expired])
            if unfinished:
                await tx.run(
                    "INSERT INTO counters(name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                    EXPIRED,
                    len(unfinished),
                )
        return unfinished

    async def open_operations(self) -> list[tuple[Operation, list[Part]]]:
        rows = await self.db.all(f"SELECT {OP_COLUMNS} FROM operations WHERE state <> ?", DONE)
        return [(op, await _parts(self.db, op.id)) for op in map(_operation, rows)]
