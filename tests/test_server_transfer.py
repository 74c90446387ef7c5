"""Uploads and downloads over real HTTP: digests checked, ranges exact, replacement atomic."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
from pathlib import Path

import pytest

from fusionsync.catalog.digest import PART_SIZE, fsync_digest_of
from tests.helpers import RunningServer, start_server

DIST = "catalogs/cat/datasets/D/datasetseries/20240101/distributions/csv"


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def data() -> bytes:
    return os.urandom(3 * 2**20 + 17)


def test_head_reports_size_and_checksum_on_both_urls(server: RunningServer, data: bytes) -> None:
    server.create_dataset("cat", "D")
    assert server.upload("cat", "D", "20240101", "csv", data).status == 200
    for url in (DIST, DIST + "/operationType/download"):
        answer = server.api("HEAD", url)
        assert answer.status == 200
        assert int(answer.headers["Content-Length"]) == len(data)
        assert answer.headers["x-jpmc-checksum"] == sha(data)
        assert answer.headers["x-jpmc-checksum-algorithm"] == "SHA-256"
        assert server.api("GET", url).body == data


@pytest.mark.parametrize(("first", "last"), [(0, 0), (5, 99), (2**20, 3 * 2**20), (3 * 2**20, 3 * 2**20 + 16)])
def test_ranges_are_exact_by_query_and_by_header(server: RunningServer, data: bytes, first: int, last: int) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", data)
    url = DIST + "/operationType/download"
    by_query = server.api("GET", f"{url}?downloadRange=bytes={first}-{last}")
    by_header = server.api("GET", url, headers={"Range": f"bytes={first}-{last}"})
    for answer in (by_query, by_header):
        assert answer.status == 206 and answer.body == data[first : last + 1]
    assert server.api("GET", f"{url}?downloadRange=lines=1-2").status == 400


def test_files_listing_and_file_download(server: RunningServer, data: bytes) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", data)
    files = server.api("GET", DIST + "/files").json()["resources"]
    assert [f["identifier"] for f in files] == ["csv"] and files[0]["size"] == len(data)
    assert server.api("GET", DIST + "/files/operationType/download?file=csv").body == data
    assert server.api("GET", DIST + "/files/operationType/download?file=other").status == 404


def test_single_and_multipart_uploads_store_exact_bytes(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    for size in (0, 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE + 3):
        payload = os.urandom(size)
        answer = server.upload("cat", "D", f"s{size}", "bin", payload)
        assert answer.status == 200, answer.body
        url = f"catalogs/cat/datasets/D/datasetseries/s{size}/distributions/bin/operationType/download"
        assert server.api("GET", url).body == payload
    members = server.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"]
    assert len(members) == 2  # page size 2: series members appeared with their distributions


def test_digest_mismatch_is_400_and_stores_nothing(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    wrong = {"Digest": f"SHA-256={fsync_digest_of([b'other'])}"}
    answer = server.api("PUT", DIST, body=b"payload", headers=wrong)
    assert answer.status == 400 and "digest mismatch" in answer.json()["message"]
    assert server.api("PUT", DIST, body=b"payload").status == 400  # no Digest at all
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"] == []
    assert list((server.root / "tmp").iterdir()) == []


def test_multipart_part_and_completion_checks(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    op = server.api("POST", DIST + "/operationType/upload").json()["operationId"]
    part = os.urandom(PART_SIZE)
    ops = f"{DIST}/operations/upload?operationId={op}"
    bad = server.api("PUT", f"{ops}&partNumber=1", body=part, headers={"Digest": f"SHA-256={sha(b'x')}"})
    assert bad.status == 400
    too_big = os.urandom(PART_SIZE + 1)
    assert (
        server.api("PUT", f"{ops}&partNumber=2", body=too_big, headers={"Digest": f"SHA-256={sha(too_big)}"}).status
        == 413
    )
    assert server.api("PUT", f"{ops}&partNumber=0", body=part, headers={"Digest": f"SHA-256={sha(part)}"}).status == 400
    ok = server.api("PUT", f"{ops}&partNumber=2", body=part, headers={"Digest": f"SHA-256={sha(part)}"})
    assert ok.status == 200
    missing = server.api("POST", ops, json_body={"parts": [ok.json()]}, headers={"Digest": f"SHA-256={sha(part)}"})
    assert missing.status == 400 and "part 1" in missing.json()["message"]
    assert (
        server.api(
            "PUT", f"{DIST}/operations/upload?operationId=nope&partNumber=1", body=b"x", headers={"Digest": "SHA-256=x"}
        ).status
        == 404
    )
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json() == {"datasets": []}


def test_replacing_switches_to_the_new_bytes(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"old")
    server.upload("cat", "D", "20240101", "csv", b"new contents")
    assert server.api("GET", DIST).body == b"new contents"
    assert server.api("HEAD", DIST).headers["x-jpmc-checksum"] == sha(b"new contents")


def test_concurrent_uploads_of_one_distribution_leave_one_whole_file(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    contents = [bytes([i]) * (PART_SIZE + 1000 * i) for i in range(6)] + [os.urandom(1000) for _ in range(4)]
    threads = [threading.Thread(target=server.upload, args=("cat", "D", "20240101", "csv", c)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    body = server.api("GET", DIST).body
    assert body in contents
    assert server.api("HEAD", DIST).headers["x-jpmc-checksum"] == sha(body)


def test_kill_mid_multipart_upload_keeps_the_catalog_consistent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_server(root)
    try:
        server.create_dataset("cat", "D")
        server.upload("cat", "D", "20240101", "csv", b"version 1")
        op = server.api("POST", DIST + "/operationType/upload").json()["operationId"]
        part = os.urandom(PART_SIZE)
        ops = f"{DIST}/operations/upload?operationId={op}"
        assert (
            server.api("PUT", f"{ops}&partNumber=1", body=part, headers={"Digest": f"SHA-256={sha(part)}"}).status
            == 200
        )
        (root / "tmp" / "put-stray").write_bytes(b"half an upload")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    finally:
        server.stop()
    again = start_server(root)
    try:
        assert again.api("GET", DIST).body == b"version 1"
        assert sorted(p.name for p in (root / "tmp").iterdir()) == [f"op-{op}"]  # the open upload may resume
        blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
        assert len(blobs) == 1
    finally:
        again.stop()
