"""The server's storage and its safety: the root's lock, the credentials file, expiring uploads, idempotent
completions (and the client's handling of a lost answer), the parts an open upload holds, events across
processes, the schema's migration, and S3 parts checked at completion."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.digest import PART_SIZE
from fusionsync.catalog.layout import DistKey
from fusionsync.server.db import migrate, open_database
from fusionsync.server.meta import SqlMetaStore
from fusionsync.server.schema import MIGRATIONS
from fusionsync.server.store import Commit, Distribution
from tests.api_doc import watch_for_internal_errors
from tests.conftest import Storage
from tests.faults.proxy import Fault, FaultProxy
from tests.helpers import RunningServer, start_server
from tests.pg import new_database
from tests.sync_fixtures import payload, remote_bytes, sync_once, write_local
from tests.test_server_transfer import DIST, complete, digest, put_part, start, wait_for, whole

HELD = f"{DIST}/operations/upload?operationId="


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def serve(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fusionsync serve`` expected to stop at once (it does not start)."""
    cmd = [sys.executable, "-m", "fusionsync", "serve", "--root", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_a_second_server_on_a_root_refuses_and_touches_nothing(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 10)
    op = start(server)
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200  # an upload in flight
    before = snapshot(server.root)
    second = serve(server.root, "--port", "0")
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert second.stderr.strip().count("\n") == 0, second.stderr  # one sentence
    assert (
        "served by another fusionsync server" in second.stderr and str(server.proc and server.proc.pid) in second.stderr
    )
    assert snapshot(server.root) == before  # no sweep, no credentials rewritten
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content


def test_a_blob_folder_is_locked_too(tmp_path: Path) -> None:
    shared = tmp_path / "blobs"
    first = start_server(tmp_path / "one", "--blobs", str(shared))
    try:
        second = serve(tmp_path / "two", "--port", "0", "--blobs", str(shared))
        assert second.returncode != 0 and "served by another fusionsync server" in second.stderr
        assert str(shared) in second.stderr and "Traceback" not in second.stderr
    finally:
        first.stop()


def test_a_server_that_cannot_listen_changes_nothing(server: RunningServer, tmp_path: Path) -> None:
    root = tmp_path / "other"
    failed = serve(root, "--port", str(server.port))
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert f"cannot serve on 127.0.0.1:{server.port}" in failed.stderr
    assert sorted(p.name for p in root.iterdir()) == [".fusionsync-root", "server.lock"]  # no key, clients, database


def test_the_credentials_file_is_private_and_follows_the_port(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = start_server(root)
    first.stop()
    again = start_server(root)
    try:
        path = again.credentials_file
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert again.credentials()["root_url"] == again.root_url  # rewritten by the new owner, whole
        assert [p.name for p in root.iterdir() if p.name.startswith(".")] == [".fusionsync-root"]  # no temporary
    finally:
        again.stop()


@pytest.mark.scaled
def test_unfinished_uploads_expire_and_are_cleaned(tmp_path: Path, storage: Storage) -> None:
    options = [*storage(), "--upload-expiry", "2"]
    server = start_server(tmp_path / "root", *options)
    try:
        server.create_dataset("cat", "D")
        content = os.urandom(PART_SIZE + 10)
        began = time.monotonic()
        op = start(server)
        sent = put_part(server, op, 1, content[:PART_SIZE]).status
        held, kept = server.api("GET", HELD + op).status, server.temporaries()
        if time.monotonic() - began < 1.5:  # still young (a loaded machine may take the 2 s over these calls)
            assert sent == held == 200 and kept != []
        wait_for(lambda: server.api("GET", HELD + op).status == 404, "the upload to expire", timeout=20)
        wait_for(lambda: server.temporaries() == [], "its parts to be removed", timeout=20)
        assert put_part(server, op, 2, content[PART_SIZE:]).status == 404
        # across a restart: an upload left by a server that stopped is dropped by the next one
        began = time.monotonic()
        late = start(server)
        sent = put_part(server, late, 1, content[:PART_SIZE]).status
        assert sent == 200 or time.monotonic() - began > 2
        server.stop()
        time.sleep(2.5)
        server = start_server(tmp_path / "root", *options)
        assert server.temporaries() == [] and server.api("GET", HELD + late).status == 404
        assert server.blobs() == []
    finally:
        server.stop()


@pytest.mark.scaled
def test_completing_again_answers_the_stored_result(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 10)
    op = start(server)
    parts = [put_part(server, op, 1, content[:PART_SIZE]).json(), put_part(server, op, 2, content[PART_SIZE:]).json()]
    done = complete(server, op, content, parts)
    assert done.status == 200
    assert server.upload("cat", "D", "20240101", "csv", b"a later version").status == 200
    again = complete(server, op, content, parts)  # its answer was lost: asked again, answered the same
    assert again.status == 200 and again.json() == done.json()
    assert server.api("GET", DIST).body == b"a later version"  # and nothing stored again
    other = server.api("POST", HELD + op, json_body={}, headers=whole(content + b"!"))
    assert other.status == 400 and "completed with" in other.json()["message"]
    assert server.api("GET", HELD + op).status == 404  # no longer open
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 409


@pytest.mark.scaled
def test_an_open_upload_answers_the_parts_it_holds(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(2 * PART_SIZE + 10)
    op = start(server)
    assert server.api("GET", HELD + op).json() == {"operationId": op, "parts": []}
    first, third = put_part(server, op, 1, content[:PART_SIZE]), put_part(server, op, 3, content[2 * PART_SIZE :])
    wrong = f"{DIST}/operations/upload?operationId={op}&partNumber=2"
    assert server.api("PUT", wrong, body=b"not what the digest says", headers=digest(b"other")).status == 400
    held = server.api("GET", HELD + op)
    assert held.status == 200 and held.json() == {
        "operationId": op,
        "parts": [
            {"partNumber": 1, "size": PART_SIZE, "digest": first.json()["digest"]},
            {"partNumber": 3, "size": 10, "digest": third.json()["digest"]},
        ],
    }
    assert server.api("GET", HELD + "0" * 32).status == 404
    other = DIST.replace("/csv", "/json")
    assert server.api("GET", f"{other}/operations/upload?operationId={op}").status == 400  # another distribution


def test_a_lost_answer_to_a_completion_is_not_a_failure(server: RunningServer, tmp_path: Path) -> None:
    key = DistKey("cat", "A", "20240101", "csv")
    server.create_dataset("cat", "A")
    root = tmp_path / "pub"
    write_local(root, key, payload(key, 2 * PART_SIZE + 3))
    completion = lambda method, path: method == "POST" and "operationId=" in path  # noqa: E731
    with FaultProxy(server.port, Fault("reset", completion, after=0)) as proxy:
        creds = server.credentials() | {"root_url": proxy.root_url}
        fs = FusionFileSystem(credentials=creds, retries=3)
        try:
            report = sync_once(fs, root, tmp_path, datasets=["A"], direction="upload")
        finally:
            fs.close()
        assert proxy.fired == 1  # the server completed it; its answer never arrived
    assert report.ok, report.failed
    assert remote_bytes(server, key) == payload(key, 2 * PART_SIZE + 3)


def test_a_lost_answer_from_a_server_that_forgot_the_upload(server_with_expiry: RunningServer, tmp_path: Path) -> None:
    """The retry comes after the finished upload's record expired: the change listing shows the file stored."""
    server = server_with_expiry
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 3)

    async def upload() -> None:
        async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as fs:
            fs.http.backoff = fs.http.max_backoff = 4.0  # the retry comes after the record expired
            with FaultProxy(server.port, Fault("reset", lambda m, p: m == "POST" and "operationId=" in p)) as proxy:
                fs.http.root_url = proxy.root_url
                await fs._pipe_file("cat/datasets/D/datasetseries/20240101/distributions/csv", content)
                assert proxy.fired == 1

    asyncio.run(upload())
    assert server.api("GET", DIST).body == content


@pytest.fixture
def server_with_expiry(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "server-root", "--upload-expiry", "1")
    yield srv
    srv.stop()


@pytest.mark.scaled(only=True)
def test_a_part_changed_in_s3_behind_the_servers_back_is_refused(server: RunningServer) -> None:
    import boto3

    assert server.bucket is not None
    bucket, prefix = server.bucket
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 10)
    op = start(server)
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    s3 = boto3.client("s3")
    (upload,) = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)["Uploads"]
    assert upload["Key"] == prefix + op  # one S3 multipart upload per upload operation
    s3.upload_part(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * PART_SIZE)
    refused = complete(server, op, content)
    assert refused.status == 400 and "part 1 changed" in refused.json()["message"], refused.body
    assert server.api("GET", DIST).status == 404 and server.blobs() == []
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200  # sent again: completes
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content and server.temporaries() == []


@pytest.mark.scaled(only=True)
def test_events_reach_subscribers_of_another_server(server: RunningServer, tmp_path: Path) -> None:
    """Two servers on one database and bucket (as two hosts would be): an upload to one is an event on both."""
    from tests.test_events import collect

    other = start_server(tmp_path / "other-root", *server.args)
    try:
        other.create_dataset("cat", "D")
        events = asyncio.run(collect(server, 1, lambda: other.upload("cat", "D", "s", "csv", b"from the other")))
    finally:
        other.stop()
    assert [(e.kind, e.series, e.size) for e in events] == [("created", "s", 14)]


def test_events_of_another_process_are_heard_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"

    async def run() -> float:
        here, there = await SqlMetaStore.open(url), await SqlMetaStore.open(url)  # two connections: two processes
        try:
            await here.create_catalog("cat", {})
            await here.db.run("INSERT INTO datasets(catalog, id, meta, modified) VALUES ('cat', 'D', '{}', '')")
            news = here.news()
            started = time.monotonic()
            dist = Distribution("cat", "D", "s", "csv", "blob", 1, "d", "c", "2024-01-01T00:00:00Z", None)
            await there.commit(Commit(dist, {}))
            await asyncio.wait_for(news.wait(), 2)
            heard = time.monotonic() - started
            assert [seq for seq, _ in await here.events_after("cat", 0)] == [1]
            return heard
        finally:
            await here.close()
            await there.close()

    assert asyncio.run(run()) < 0.5


def test_a_database_of_the_first_release_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:  # the schema as the first releases made it: no version table
        db.execute(statement)
    db.execute("INSERT INTO catalogs VALUES ('cat', '{\"identifier\": \"cat\"}')")
    db.execute("INSERT INTO operations VALUES ('op1', 'cat', 'D', 's', 'csv', '2024-01-01T00:00:00Z')")
    db.execute("INSERT INTO operation_parts VALUES ('op1', 1, '', 5, 'digest')")
    db.commit()
    db.close()

    async def run() -> None:
        store = await SqlMetaStore.open(f"sqlite:///{path}")
        try:
            assert await store.catalogs(0, 10) == ([{"identifier": "cat"}], False)
            op = await store.operation("op1")
            assert op is not None and op.state == "open" and op.target == ("cat", "D", "s", "csv")
            assert [(p.number, p.ref, p.size) for p in await store.parts("op1")] == [(1, "", 5)]
            assert await store.db.one("SELECT version FROM schema_version") == (len(MIGRATIONS),)
        finally:
            await store.close()

    asyncio.run(run())
    asyncio.run(run())  # opening it again changes nothing


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_of_the_release_before_revoked_sessions_is_migrated(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Migration 4 (revoked web sessions) on both databases; a revocation past its session's end is forgotten
    when the next one is written."""
    pg = request.getfixturevalue("pg_server") if kind == "postgresql" else ""
    url = new_database(pg) if pg else f"sqlite:///{tmp_path / 'catalog.sqlite'}"

    async def run() -> None:
        db = await open_database(url)
        try:
            await migrate(db, MIGRATIONS[:3])  # the schema that release made
        finally:
            await db.close()
        store = await SqlMetaStore.open(url)
        try:
            assert await store.db.one("SELECT version FROM schema_version") == (len(MIGRATIONS),)
            now = time.time()
            await store.revoke_session("ended", now - 1)
            assert await store.session_revoked("ended")
            await store.revoke_session("signed-out", now + 60)
            await store.revoke_session("signed-out", now + 60)  # twice (two tabs): the same
            assert await store.session_revoked("signed-out")
            assert not await store.session_revoked("ended") and not await store.session_revoked("other")
        finally:
            await store.close()

    asyncio.run(run())
