"""Several worker processes on one port: one is killed (SIGKILL) in the middle of uploads. The others go on,
a new one takes its place, the catalog lists only complete versions and nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync.catalog.digest import PART_SIZE, fsync_digest_of
from tests.api_doc import watch_for_internal_errors
from tests.conftest import Storage
from tests.helpers import RunningServer, start_server
from tests.test_server_transfer import DIST, changes, complete, digest, open_partial, put_part, start, wait_for

UPLOADERS = 6


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def workers(server: RunningServer) -> list[int]:
    assert server.proc is not None
    pid = server.proc.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def serving(server: RunningServer, sock: socket.socket) -> int:
    """The worker that accepted the connection of ``sock`` (from the kernel's socket tables)."""
    local = f"0100007F:{sock.getsockname()[1]:04X}"
    remote = f"0100007F:{server.port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    inode = next(row[9] for row in rows if row[1] == remote and row[2] == local)
    for pid in workers(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError("no worker holds the connection")


def content(uploader: int, number: int) -> bytes:
    """A payload of its own: small, or of two parts every third upload."""
    size = PART_SIZE + 1000 * number if number % 3 == 0 else 1000 + number
    seed = hashlib.sha256(f"{uploader}-{number}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.mark.scaled
def test_a_killed_worker_loses_nothing_acknowledged(tmp_path: Path, storage: Storage, backend: str) -> None:
    options = storage() or ["--workers", "2"]  # the embedded default, but with two workers on the SQLite file
    server = start_server(tmp_path / "root", *options)
    try:
        server.create_dataset("cat", "D")
        first = workers(server)
        assert len(first) == 2
        acknowledged: dict[str, bytes] = {}
        tried: dict[str, bytes] = {}
        refused: list[str] = []
        stop = threading.Event()

        def upload(uploader: int) -> None:
            number = 0
            while not stop.is_set():
                number += 1
                series, data = f"u{uploader}-{number}", content(uploader, number)
                tried[series] = data
                try:
                    answer = server.upload("cat", "D", series, "bin", data)
                except (OSError, AssertionError) as exc:  # the connection to the killed worker broke
                    refused.append(f"{series}: {exc}")
                    continue
                if answer.status == 200:
                    acknowledged[series] = data
                else:
                    refused.append(f"{series}: {answer.status} {answer.body[:100]!r}")

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(UPLOADERS)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 10, "uploads to go on", timeout=60)
        # a part on its way when its worker is killed
        big = content(99, 3)
        op = start(server)
        cut = open_partial(
            server, "PUT", f"{DIST}/operations/upload?operationId={op}&partNumber=1", digest(big[:PART_SIZE]), PART_SIZE
        )
        cut.sendall(big[: PART_SIZE // 2])
        victim = serving(server, cut)
        os.kill(victim, signal.SIGKILL)
        cut.settimeout(30)
        with contextlib.suppress(ConnectionResetError):
            assert cut.recv(100) == b""  # the connection ends without an answer
        cut.close()
        killed_at = len(acknowledged)
        tried["20240101"] = big
        wait_for(lambda: len(acknowledged) >= killed_at + 20, "the other worker to go on", timeout=60)
        stop.set()
        for thread in threads:
            thread.join(60)
        wait_for(lambda: len(workers(server)) == 2, "a worker to take the killed one's place")
        assert victim not in workers(server) and set(first) - {victim} <= set(workers(server))
        # the cut upload goes on: its part 1 is not held, sent again it completes
        assert server.api("GET", f"{DIST}/operations/upload?operationId={op}").json()["parts"] == []
        assert put_part(server, op, 1, big[:PART_SIZE]).status == 200
        assert put_part(server, op, 2, big[PART_SIZE:]).status == 200
        assert complete(server, op, big).status == 200 and server.api("GET", DIST).body == big

        listed = changes(server)
        for series, data in acknowledged.items():  # nothing acknowledged is lost
            row = listed[f"D/{series}/distribution.bin"]
            assert row[1:3] == [str(len(data)), f"SHA-256={fsync_digest_of([data])}"], series
        for key, row in listed.items():  # and only complete versions are listed
            data = tried[key.split("/")[1]]
            assert row[1:3] == [str(len(data)), f"SHA-256={fsync_digest_of([data])}"], key
        sample = sorted(acknowledged)[:: max(1, len(acknowledged) // 8)]
        for series in sample:
            url = f"catalogs/cat/datasets/D/datasetseries/{series}/distributions/bin/operationType/download"
            assert server.api("GET", url).body == acknowledged[series]
        assert len(refused) <= UPLOADERS * 2, refused  # only what was in flight on the killed worker
    finally:
        server.stop()
