"""Interrupted transfers continue where they stopped: a `fusionsync sync` killed (SIGKILL) in the middle of
a 512 MiB download or multipart upload, then run again, moves only what is missing and ends byte-identical.

Every request goes through a TCP proxy in front of the server (``tests/faults/proxy.py``), which records
them and counts the bytes: the ranges a download asks for and the parts an upload sends are counted there.
The big files are sparse with a marker in every MiB, so they are quick to make yet no two parts are alike.
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.digest import PART_SIZE, file_digests
from fusionsync.catalog.layout import DistKey, local_relative_path, partial_names
from fusionsync.client.partial import Partial
from tests.faults.proxy import FaultProxy
from tests.helpers import RunningServer, start_server, wait_for
from tests.proxy import Proxy
from tests.sync_fixtures import no_temporaries

BIG = 512 * 2**20
KEY = DistKey("cat", "A", "20240101", "csv")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def ram() -> Iterator[Path]:
    """A folder in memory when the machine has one (/dev/shm): 512 MiB written thrice costs seconds on a disk."""
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="fusionsync-test-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def big_server(ram: Path) -> Iterator[RunningServer]:
    server = start_server(ram / "server-root")
    server.create_dataset("cat", "A")
    yield server
    server.stop()


def put_whole(server: RunningServer, key: DistKey, path: Path) -> None:
    """Publish a file in one streamed request (quicker to set up than parts)."""
    digest = file_digests(str(path), whole=False).fsync_digest()
    url = urlsplit(server.root_url + "catalogs/" + key.remote_path)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60, blocksize=2**20)
    headers = {
        "Authorization": f"Bearer {server.token()}",
        "Fusion-Authorization": f"Bearer {server.fusion_token(key.catalog, key.dataset)}",
        "Digest": f"SHA-256={digest}",
        "Content-Length": str(path.stat().st_size),
        "Content-Type": "application/octet-stream",
    }
    with open(path, "rb") as body:
        conn.request("PUT", url.path, body=body, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
    conn.close()


def sparse(path: Path, size: int) -> Path:
    """``size`` bytes, mostly a hole, with the MiB's number written at the start of each MiB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
        for mib in range(0, size, 2**20):
            fh.seek(mib)
            fh.write(f"MiB {mib >> 20}\n".encode())
    return path


def via(proxy: FaultProxy, server: RunningServer, tmp_path: Path) -> Path:
    """A credentials file whose API root is the proxy (tokens straight from the server)."""
    path = tmp_path / "via-proxy.json"
    path.write_text(json.dumps({**server.credentials(), "root_url": proxy.root_url}))
    return path


def killed_when(command: list[str], condition: Callable[[], bool], what: str) -> None:
    """Run ``command`` and SIGKILL it as soon as ``condition`` holds."""
    sync = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(condition, what)
    finally:
        sync.kill()
        sync.wait()


def sync_command(direction: str, root: Path, creds: Path, tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "fusionsync", "sync", direction, "--local-path", str(root), "--catalog", "cat",
        "--dataset", "A", "--credentials", str(creds), "--log-path", str(tmp_path), "--once", "--no-progress",
    ]  # fmt: skip


def ranges_fetched(requests: list[tuple[str, str]]) -> int:
    """Bytes a download asked for, from the downloadRange of its GETs."""
    total = 0
    for method, path_qs in requests:
        if method == "GET" and path_qs.split("?")[0].endswith("/operationType/download"):
            first, last = parse_qs(urlsplit(path_qs).query)["downloadRange"][0].removeprefix("bytes=").split("-")
            total += int(last) - int(first) + 1
    return total


def extent(record: Path) -> int:
    try:
        return int(json.loads(record.read_text())["extent"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_download_killed_mid_way_continues_where_it_stopped(
    big_server: RunningServer, ram: Path, tmp_path: Path
) -> None:
    server = big_server
    source = sparse(ram / "source.csv", BIG)
    put_whole(server, KEY, source)
    root = ram / "mirror"
    dest = root / local_relative_path(KEY)
    temp, record = (dest.parent / name for name in partial_names(dest.name))
    with FaultProxy(server.port) as proxy:
        command = sync_command("download", root, via(proxy, server, tmp_path), tmp_path)
        killed_when(command, lambda: extent(record) >= 64 * 2**20, "the download's record to pass 64 MiB")
        kept = extent(record)  # read after the kill: the last record written
        assert 0 < kept < BIG and temp.stat().st_size >= kept and not dest.exists()
        before, down = len(proxy.requests), proxy.down
        redo = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert redo.returncode == 0, redo.stderr
        assert ranges_fetched(proxy.requests[before:]) == BIG - kept, "only what was missing was asked for"
        assert BIG - kept < proxy.down - down < BIG - kept + 2**20, "and only that came"
    assert filecmp.cmp(dest, source, shallow=False)
    assert no_temporaries(root)


def settled(value: Callable[[], int]) -> int:
    """``value()`` once it has not changed for half a second."""
    last, since = value(), time.monotonic()
    while time.monotonic() - since < 0.5:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
    return last


def held_parts(server: RunningServer) -> int:
    with sqlite3.connect(server.root / "catalog.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM operation_parts WHERE size >= 0").fetchone()[0])


def test_a_multipart_upload_killed_mid_way_sends_only_the_missing_parts(
    big_server: RunningServer, ram: Path, tmp_path: Path
) -> None:
    server = big_server
    root = ram / "pub"
    source = sparse(root / local_relative_path(KEY), BIG)
    parts = BIG // PART_SIZE + (BIG % PART_SIZE > 0)
    with FaultProxy(server.port) as proxy:
        command = sync_command("upload", root, via(proxy, server, tmp_path), tmp_path)
        killed_when(command, lambda: held_parts(server) >= 20, "20 parts on the server")
        held = settled(lambda: held_parts(server))  # a part whose bytes were all out may still land
        assert 20 <= held < parts
        before, up = len(proxy.requests), proxy.up
        redo = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert redo.returncode == 0, redo.stderr
        sent = [path for method, path in proxy.requests[before:] if method == "PUT" and "partNumber=" in path]
        assert len(sent) == parts - held, "only the parts the server did not hold were sent"
        missing = BIG - held * PART_SIZE
        assert missing < proxy.up - up < missing + 2**20, "and only their bytes"
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    try:
        (listed,) = fs.changes("cat", "A")
    finally:
        fs.close()
    assert (listed.size, listed.digest) == (BIG, file_digests(str(source), whole=False).fsync_digest())
    assert held_parts(server) == 0, "the operation was completed and forgotten"


class Journal:
    """An upload journal in memory (the sync engine's lives in the hash cache)."""

    def __init__(self, operation: str | None = None) -> None:
        self.operation_id = operation

    def operation(self) -> str | None:
        return self.operation_id

    def begin(self, operation_id: str) -> None:
        self.operation_id = operation_id

    def end(self) -> None:
        self.operation_id = None


def put_part(server: RunningServer, op: str, number: int, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).digest()
    import base64

    answer = server.api(
        "PUT",
        f"catalogs/{KEY.remote_path}/operations/upload?operationId={op}&partNumber={number}",
        body=data,
        headers={"Digest": "SHA-256=" + base64.b64encode(digest).decode(), "Content-Type": "application/octet-stream"},
    )
    assert answer.status == 200, answer.body
    return dict(answer.json())


def test_held_parts_are_checked_against_the_local_bytes_and_an_unknown_operation_starts_over(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_dataset("cat", "A")
    local = tmp_path / "f.csv"
    data = os.urandom(3 * PART_SIZE + 1000)
    local.write_bytes(data)
    dates = {"x-jpmc-distribution-from-date": "2024-01-01", "x-jpmc-distribution-to-date": "2199-12-31"}
    op = server.api("POST", f"catalogs/{KEY.remote_path}/operationType/upload", headers=dates).json()["operationId"]
    put_part(server, op, 1, data[:PART_SIZE])  # as the local file has it
    put_part(server, op, 2, b"x" * PART_SIZE)  # other bytes of the same size: must be sent again
    listing = server.api("GET", f"catalogs/{KEY.remote_path}/operations/upload?operationId={op}").json()
    assert [(p["partNumber"], p["size"]) for p in listing["parts"]] == [(1, PART_SIZE), (2, PART_SIZE)]
    assert server.api("GET", f"catalogs/{KEY.remote_path}/operations/upload?operationId=nope").status == 404

    fs = FusionFileSystem(credentials=str(server.credentials_file))
    try:
        with Proxy(server.base, lambda method, path: False) as proxy:
            creds = {**server.credentials(), "root_url": proxy.base + "/api/v1/"}
            through = FusionFileSystem(credentials=creds)
            journal = Journal(op)
            try:
                through.put_file(str(local), KEY.remote_path, journal=journal)
                sent = sorted(p for m, p in proxy.seen.requests if m == "PUT" and "partNumber=" in p)
                assert [p.rsplit("=", 1)[1] for p in sent] == ["2", "3", "4"], "part 1 was held, part 2 differed"
                assert journal.operation_id is None, "forgotten once completed"
                assert fs.cat_file(KEY.remote_path) == data
                # A journal naming an operation the server does not know: a new upload from the start.
                local.write_bytes(data[::-1])
                journal = Journal("forgotten")
                through.put_file(str(local), KEY.remote_path, journal=journal)
                assert fs.cat_file(KEY.remote_path) == data[::-1] and journal.operation_id is None
            finally:
                through.close()
    finally:
        fs.close()


def test_a_partial_of_another_version_is_discarded_and_a_damaged_one_fails_the_checksum(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_dataset("cat", "A")
    data = os.urandom(40 * 2**20)
    fs = FusionFileSystem(credentials=str(server.credentials_file), range_size=8 * 2**20)
    try:
        fs.pipe_file(KEY.remote_path, data)
        info = fs.info(KEY.remote_path)
        source = {"path": KEY.remote_path, "size": len(data), "checksum": info["checksum"], "algorithm": "SHA-256"}
        dest = tmp_path / "f.csv"
        for kind, (recorded, bytes_on_disk) in {
            "another version": ({**source, "checksum": "older"}, data[: 16 * 2**20]),
            "damaged": (source, b"\0" * 16 * 2**20),
        }.items():
            partial, fd, _ = Partial.open(str(dest), recorded)
            os.write(fd, bytes_on_disk)
            os.close(fd)
            partial.save(16 * 2**20)
            fs.get(KEY.remote_path, str(dest))
            assert dest.read_bytes() == data, kind
            assert not Path(partial.temp).exists() and not Path(partial.record).exists(), kind
            dest.unlink()
    finally:
        fs.close()
