"""The metadata schema, as the migrations that build it (in SQL that SQLite and PostgreSQL both run).

Migration 1 is the schema of the first releases, which created their tables without a version: applied to
such a database it changes nothing, and migration 2 then brings it up to date. Append; never edit a migration
that has been released.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE IF NOT EXISTS catalogs (id TEXT PRIMARY KEY, meta TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS products (catalog TEXT NOT NULL, id TEXT NOT NULL, meta TEXT NOT NULL, "
        "PRIMARY KEY (catalog, id))",
        "CREATE TABLE IF NOT EXISTS datasets (catalog TEXT NOT NULL, id TEXT NOT NULL, meta TEXT NOT NULL, "
        "modified TEXT NOT NULL, PRIMARY KEY (catalog, id))",
        "CREATE TABLE IF NOT EXISTS product_datasets (catalog TEXT NOT NULL, product TEXT NOT NULL, "
        "dataset TEXT NOT NULL, PRIMARY KEY (catalog, product, dataset))",
        "CREATE TABLE IF NOT EXISTS series (catalog TEXT NOT NULL, dataset TEXT NOT NULL, id TEXT NOT NULL, "
        "created TEXT NOT NULL, PRIMARY KEY (catalog, dataset, id))",
        "CREATE TABLE IF NOT EXISTS distributions (catalog TEXT NOT NULL, dataset TEXT NOT NULL, "
        "series TEXT NOT NULL, format TEXT NOT NULL, blob TEXT NOT NULL, size BIGINT NOT NULL, "
        "digest TEXT NOT NULL, checksum TEXT NOT NULL, modified TEXT NOT NULL, file_name TEXT, from_date TEXT, "
        "to_date TEXT, created_date TEXT, PRIMARY KEY (catalog, dataset, series, format))",
        "CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, catalog TEXT NOT NULL, dataset TEXT NOT NULL, "
        "series TEXT NOT NULL, format TEXT NOT NULL, created TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS operation_parts (operation TEXT NOT NULL, number INTEGER NOT NULL, "
        "blob TEXT NOT NULL, size BIGINT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (operation, number))",
        "CREATE TABLE IF NOT EXISTS attributes (catalog TEXT NOT NULL, dataset TEXT NOT NULL, id TEXT NOT NULL, "
        "idx INTEGER NOT NULL, meta TEXT NOT NULL, PRIMARY KEY (catalog, dataset, id))",
        "CREATE TABLE IF NOT EXISTS catalog_attributes (catalog TEXT NOT NULL, id TEXT NOT NULL, "
        "meta TEXT NOT NULL, PRIMARY KEY (catalog, id))",
        "CREATE TABLE IF NOT EXISTS attribute_lineage (catalog TEXT NOT NULL, source TEXT NOT NULL, "
        "target TEXT NOT NULL, PRIMARY KEY (catalog, source, target))",
        "CREATE TABLE IF NOT EXISTS dataset_lineage (src_catalog TEXT NOT NULL, src_dataset TEXT NOT NULL, "
        "dst_catalog TEXT NOT NULL, dst_dataset TEXT NOT NULL, "
        "PRIMARY KEY (src_catalog, src_dataset, dst_catalog, dst_dataset))",
    ],
    [
        # upload operations: the blob store's handle, a state, their last activity, the completion's claim
        # and, once done, its digest and result (a repeated completion answers it)
        "ALTER TABLE operations ADD COLUMN handle TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE operations ADD COLUMN state TEXT NOT NULL DEFAULT 'open'",
        "ALTER TABLE operations ADD COLUMN touched DOUBLE PRECISION NOT NULL DEFAULT 0",
        "ALTER TABLE operations ADD COLUMN claimed DOUBLE PRECISION",
        "ALTER TABLE operations ADD COLUMN digest TEXT",
        "ALTER TABLE operations ADD COLUMN result TEXT",
        "ALTER TABLE operation_parts RENAME COLUMN blob TO ref",
        # the change-event log: one sequence, taken by a row lock so that numbers follow commit order
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, catalog TEXT NOT NULL, body TEXT NOT NULL)",
        "CREATE INDEX events_by_catalog ON events (catalog, seq)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('events', 0)",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # blobs no longer referred to, removed once downloads in flight had time to finish
        "CREATE TABLE garbage (blob TEXT PRIMARY KEY, due DOUBLE PRECISION NOT NULL)",
    ],
    [
        # a dataset's incarnation: an upload lands only in the dataset it began in, not in one deleted and
        # created again meanwhile; an upload operation names it, and the client that opened it (for its cap)
        "ALTER TABLE datasets ADD COLUMN incarnation TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE operations ADD COLUMN incarnation TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE operations ADD COLUMN client TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX operations_by_client ON operations (client, state)",
    ],
    [
        # web sessions signed out before their expiry (epoch s), refused by every process until then
        "CREATE TABLE revoked_sessions (id TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL)",
    ],
]
