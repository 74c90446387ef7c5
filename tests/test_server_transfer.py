"""Uploads and downloads over real HTTP: digests checked, ranges exact, replacement atomic, crashes harmless."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusionsync.catalog.digest import PART_SIZE, fsync_digest_of
from tests.api_doc import internal_errors, watch_for_internal_errors
from tests.helpers import Answer, RunningServer, start_server

DIST = "catalogs/cat/datasets/D/datasetseries/20240101/distributions/csv"


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def digest(data: bytes) -> dict[str, str]:
    return {"Digest": f"SHA-256={sha(data)}"}


def whole(data: bytes) -> dict[str, str]:
    return {"Digest": f"SHA-256={fsync_digest_of([data])}"}


def start(server: RunningServer, url: str = DIST) -> str:
    answer = server.api("POST", url + "/operationType/upload")
    assert answer.status == 200, answer.body
    return str(answer.json()["operationId"])


def put_part(server: RunningServer, op: str, number: int, data: bytes, url: str = DIST) -> Answer:
    return server.api(
        "PUT", f"{url}/operations/upload?operationId={op}&partNumber={number}", body=data, headers=digest(data)
    )


def complete(server: RunningServer, op: str, data: bytes, parts: list[object] | None = None) -> Answer:
    body = {"parts": parts} if parts is not None else {}
    return server.api("POST", f"{DIST}/operations/upload?operationId={op}", json_body=body, headers=whole(data))


def changes(server: RunningServer) -> dict[str, list[str]]:
    listing = server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json()["datasets"]
    return {row["key"]: row["values"] for entry in listing for row in entry["distributions"]}


def open_partial(server: RunningServer, method: str, url: str, headers: dict[str, str], total: int) -> socket.socket:
    """Start a request announcing a ``total``-byte body and leave it open for the caller to feed."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    auth = {
        "Authorization": f"Bearer {server.token()}",
        "Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'D')}",
    }
    lines = [f"{method} /api/v1/{url} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {total}"]
    lines += [f"{k}: {v}" for k, v in {**auth, **headers}.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def starts_with(path: Path, offset: int, data: bytes) -> Callable[[], bool]:
    """Whether ``path`` holds ``data`` at ``offset`` (the server has written those bytes)."""

    def check() -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(len(data)) == data
        except FileNotFoundError:
            return False

    return check


@pytest.fixture
def data() -> bytes:
    return os.urandom(3 * 2**20 + 17)


# -- downloads ---------------------------------------------------------------------------


@pytest.mark.scaled
def test_head_and_get_report_size_and_plain_checksum_on_every_url(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    for size in (0, 11, PART_SIZE + 5):  # each replaces the one before: HEAD and GET follow the new bytes
        content = os.urandom(size)
        assert server.upload("cat", "D", "20240101", "csv", content).status == 200
        for url in (DIST, DIST + "/operationType/download", DIST + "/files/operationType/download?file=csv"):
            head = server.api("HEAD", url)
            assert head.status == 200 and head.body == b"", (size, url)
            assert int(head.headers["Content-Length"]) == size
            assert head.headers["x-jpmc-checksum"] == sha(content)  # the whole file's SHA-256, never with "-N"
            assert head.headers["x-jpmc-checksum-algorithm"] == "SHA-256"
            got = server.api("GET", url)
            assert got.status == 200 and got.body == content, (size, url)
            assert got.headers["x-jpmc-checksum"] == sha(content)


RANGES = [  # asked for, first and last byte answered
    ("0-0", 0, 0),
    ("5-99", 5, 99),
    ("1048576-3145728", 2**20, 3 * 2**20),
    ("3145728-3145744", 3 * 2**20, 3 * 2**20 + 16),  # the last byte, exactly
    ("3145740-99999999", 3 * 2**20 + 12, 3 * 2**20 + 16),  # clipped at the end
    ("3145700-", 3 * 2**20 - 28, 3 * 2**20 + 16),
    ("-7", 3 * 2**20 + 10, 3 * 2**20 + 16),
]


@pytest.mark.scaled
def test_ranges_are_exact_by_query_and_by_header(server: RunningServer, data: bytes) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", data)
    for wanted, first, last in RANGES:
        for url in (DIST, DIST + "/operationType/download", DIST + "/files/operationType/download"):
            by_query = server.api("GET", f"{url}?downloadRange=bytes={wanted}")
            by_header = server.api("GET", url, headers={"Range": f"bytes={wanted}"})
            for answer in (by_query, by_header):
                assert answer.status == 206 and answer.body == data[first : last + 1], (url, wanted)
                assert answer.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}", (url, wanted)
                assert answer.headers["x-jpmc-checksum"] == sha(data)
    # both: the query parameter wins
    both = server.api("GET", f"{DIST}?downloadRange=bytes=0-1", headers={"Range": "bytes=2-3"})
    assert both.body == data[0:2]


@pytest.mark.scaled
def test_ranges_outside_the_content_are_416(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"0123456789")
    for wanted in ("10-20", "5-2", "99-"):
        assert server.api("GET", f"{DIST}?downloadRange=bytes={wanted}").status == 416
        assert server.api("GET", DIST, headers={"Range": f"bytes={wanted}"}).status == 416


@pytest.mark.scaled
def test_files_listing_and_file_download(server: RunningServer, data: bytes) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", data)
    files = server.api("GET", DIST + "/files").json()["resources"]
    assert [(f["identifier"], f["title"], f["size"]) for f in files] == [("csv", "D__cat__20240101.csv", len(data))]
    assert server.api("GET", DIST + "/files/operationType/download?file=csv").body == data
    assert server.api("GET", DIST + "/files/operationType/download").body == data
    assert server.api("GET", DIST + "/files/operationType/download?file=other").status == 404
    # an upload that names its file
    headers = {**whole(b"a,b\n"), "File-Name": "prices.csv"}
    assert server.api("PUT", DIST, body=b"a,b\n", headers=headers).status == 200
    files = server.api("GET", DIST + "/files").json()["resources"]
    assert [(f["identifier"], f["title"]) for f in files] == [("prices", "prices.csv")]
    for name in ("prices", "prices.csv"):
        answer = server.api("GET", f"{DIST}/files/operationType/download?file={name}")
        assert answer.body == b"a,b\n" and 'filename="prices.csv"' in answer.headers["Content-Disposition"]


# -- uploads -------------------------------------------------------------------------------


@pytest.mark.scaled
def test_single_and_multipart_uploads_store_exact_bytes(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    for size in (0, 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE + 3):
        payload = os.urandom(size)
        answer = server.upload("cat", "D", f"s{size}", "bin", payload)
        assert answer.status == 200, answer.body
        assert answer.json()["size"] == size and answer.json()["digest"] == f"SHA-256={fsync_digest_of([payload])}"
        url = f"catalogs/cat/datasets/D/datasetseries/s{size}/distributions/bin/operationType/download"
        assert server.api("GET", url).body == payload
        row = changes(server)[f"D/s{size}/distribution.bin"]
        assert row[1] == str(size) and row[2] == f"SHA-256={fsync_digest_of([payload])}"
    assert server.temporaries() == []


@pytest.mark.scaled
def test_a_large_single_request_is_stored_whole(server: RunningServer) -> None:
    """Streamed to the store as it arrives (S3: as a multipart upload of its own); the SDK sends such a body
    with the plain SHA-256 as its Digest."""
    server.create_dataset("cat", "D")
    for n, size in enumerate([2**20 + 1, 17 * 2**20 + 5], start=1):
        content = os.urandom(size)
        url = DIST.replace("20240101", f"s{n}")
        answer = server.api(
            "PUT", url, body=content, headers={**digest(content), "Content-Type": "application/octet-stream"}
        )
        assert answer.status == 200, answer.body
        assert answer.json()["digest"] == f"SHA-256={fsync_digest_of([content])}"
        assert server.api("GET", url).body == content
        assert server.api("HEAD", url).headers["x-jpmc-checksum"] == sha(content)
        assert server.temporaries() == [] and len(server.blobs()) == n, size


@pytest.mark.scaled
def test_a_new_series_member_appears_with_its_first_distribution(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    member = "catalogs/cat/datasets/D/datasetseries/20240101"
    assert server.api("GET", member).status == 404
    assert server.upload("cat", "D", "20240101", "csv", b"single").status == 200
    assert server.api("GET", member).json()["identifier"] == "20240101"
    # a multipart upload: nothing shows before the completion
    big = os.urandom(PART_SIZE + 10)
    url = "catalogs/cat/datasets/D/datasetseries/20240102/distributions/csv"
    op = start(server, url)
    parts = [put_part(server, op, 1, big[:PART_SIZE], url), put_part(server, op, 2, big[PART_SIZE:], url)]
    assert [p.status for p in parts] == [200, 200]
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries/20240102").status == 404
    assert set(changes(server)) == {"D/20240101/distribution.csv"}
    done = server.api(
        "POST",
        f"{url}/operations/upload?operationId={op}",
        json_body={"parts": [p.json() for p in parts]},
        headers=whole(big),
    )
    assert done.status == 200, done.body
    series = server.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"]
    assert [s["identifier"] for s in series] == ["20240101", "20240102"]
    assert set(changes(server)) == {"D/20240101/distribution.csv", "D/20240102/distribution.csv"}


@pytest.mark.scaled
def test_a_single_upload_with_a_wrong_or_missing_digest_stores_nothing(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    answer = server.api("PUT", DIST, body=b"payload", headers=whole(b"other"))
    assert answer.status == 400 and "digest mismatch" in answer.json()["message"]
    answer = server.api("PUT", DIST, body=b"payload")
    assert answer.status == 400 and "Digest" in answer.json()["message"]
    big = os.urandom(PART_SIZE + 1)  # a single request may be larger than a part
    assert server.api("PUT", DIST, body=big, headers=digest(big[:-1])).status == 400
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"] == []
    assert changes(server) == {}
    assert server.temporaries() == []
    assert server.api("PUT", DIST, body=big, headers=whole(big)).status == 200  # its fsync digest
    assert server.api("PUT", DIST, body=big, headers=digest(big)).status == 200  # or its SHA-256, as the SDK sends


@pytest.mark.scaled
def test_a_part_with_a_wrong_digest_must_be_sent_again(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 100)
    one, two = content[:PART_SIZE], content[PART_SIZE:]
    op = start(server)
    ops = f"{DIST}/operations/upload?operationId={op}"
    bad = server.api("PUT", f"{ops}&partNumber=1", body=one, headers=digest(b"something else"))
    assert bad.status == 400 and "digest mismatch" in bad.json()["message"]
    assert server.api("PUT", f"{ops}&partNumber=1", body=one).status == 400  # no Digest
    assert put_part(server, op, 2, two).status == 200
    refused = complete(server, op, content)
    assert refused.status == 400 and "part 1" in refused.json()["message"]
    assert changes(server) == {}
    assert put_part(server, op, 1, one).status == 200
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content


@pytest.mark.scaled
def test_a_completion_with_a_wrong_or_missing_digest_stores_nothing(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"old")
    content = os.urandom(PART_SIZE + 100)
    op = start(server)
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    ops = f"{DIST}/operations/upload?operationId={op}"
    assert server.api("POST", ops, json_body={}).status == 400  # no Digest
    wrong = server.api("POST", ops, json_body={}, headers=whole(content + b"!"))
    assert wrong.status == 400 and "digest mismatch" in wrong.json()["message"]
    assert server.api("GET", DIST).body == b"old"
    assert changes(server)["D/20240101/distribution.csv"][1] == "3"
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 404  # the operation is over
    assert server.temporaries() == []


@pytest.mark.scaled
def test_completion_checks_the_parts(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(2 * PART_SIZE)
    op = start(server)
    two = put_part(server, op, 2, content[PART_SIZE:])
    assert two.status == 200
    missing = complete(server, op, content, [two.json()])
    assert missing.status == 400 and "part 1 is missing" in missing.json()["message"]
    one = put_part(server, op, 1, content[:PART_SIZE])
    assert complete(server, op, content, [one.json()]).status == 400  # lists 1 of 2 parts
    assert complete(server, op, content, [two.json(), one.json()]).status == 400  # out of order
    assert complete(server, op, content, "parts").status == 400  # type: ignore[arg-type]
    short = start(server)  # a part that is not the last must be exactly 5 MiB
    assert put_part(server, short, 1, content[:100]).status == 200
    assert put_part(server, short, 2, content[100:200]).status == 200
    answer = server.api("POST", f"{DIST}/operations/upload?operationId={short}", json_body={}, headers=whole(content))
    assert answer.status == 400 and "part 1 has 100 bytes" in answer.json()["message"]
    empty = start(server)
    answer = server.api("POST", f"{DIST}/operations/upload?operationId={empty}", json_body={}, headers=whole(b""))
    assert answer.status == 400 and "no parts" in answer.json()["message"]
    assert changes(server) == {}
    assert complete(server, op, content, [one.json(), two.json()]).status == 200
    assert server.api("GET", DIST).body == content


@pytest.mark.scaled
def test_operations_belong_to_one_distribution(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    op = start(server)
    other = "catalogs/cat/datasets/D/datasetseries/20240101/distributions/parquet"
    assert put_part(server, op, 1, b"x", url=other).status == 400
    assert put_part(server, "nope", 1, b"x").status == 404
    assert server.api("PUT", f"{DIST}/operations/upload?partNumber=1", body=b"x", headers=digest(b"x")).status == 404


def parts_digest(parts: list[bytes]) -> dict[str, str]:
    """The completion's Digest for parts of any size: the SHA-256 of their concatenated SHA-256s."""
    raw = b"".join(hashlib.sha256(p).digest() for p in parts)
    return {"Digest": "SHA-256=" + base64.b64encode(hashlib.sha256(raw).digest()).decode()}


@pytest.mark.scaled
def test_parts_of_any_size_from_5_mib_make_one_distribution(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(2 * 8 * 2**20 + 12345)  # the SDK's upload(chunk_size=8 MiB): 8 MiB, 8 MiB, the rest
    parts = [content[: 8 * 2**20], content[8 * 2**20 : 16 * 2**20], content[16 * 2**20 :]]
    op = start(server)
    answers = [put_part(server, op, i, part) for i, part in enumerate(parts, start=1)]
    assert [a.status for a in answers] == [200, 200, 200]
    body = {"parts": [a.json() for a in answers]}
    url = f"{DIST}/operations/upload?operationId={op}"
    assert server.api("POST", url, json_body=body, headers=whole(content)).status == 400  # not what was sent
    op = start(server)
    answers = [put_part(server, op, i, part) for i, part in enumerate(parts, start=1)]
    url = f"{DIST}/operations/upload?operationId={op}"
    done = server.api("POST", url, json_body={"parts": [a.json() for a in answers]}, headers=parts_digest(parts))
    assert done.status == 200, done.body
    assert server.api("GET", DIST).body == content
    # the change listing still gives the fsync digest (5 MiB pieces), whatever the parts were
    assert changes(server)["D/20240101/distribution.csv"][1:3] == [
        str(len(content)),
        f"SHA-256={fsync_digest_of([content])}",
    ]
    assert server.temporaries() == []


@pytest.mark.scaled
def test_a_part_below_5_mib_must_be_the_last(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 100)
    small, rest = content[: PART_SIZE - 1], content[PART_SIZE - 1 :]
    op = start(server)
    assert put_part(server, op, 1, small).status == 200
    assert put_part(server, op, 2, rest).status == 200
    refused = server.api(
        "POST", f"{DIST}/operations/upload?operationId={op}", json_body={}, headers=parts_digest([small, rest])
    )
    assert refused.status == 400 and "part 1 has" in refused.json()["message"], refused.body
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200  # sent again, right: the part is replaced
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content


def test_a_part_cut_off_midway_must_be_sent_again(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 100)
    op = start(server)
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    url = f"{DIST}/operations/upload?operationId={op}&partNumber=1"
    sock = open_partial(server, "PUT", url, digest(content[:PART_SIZE]), PART_SIZE)
    sock.sendall(b"\xab" * (2 * 2**20))
    wait_for(starts_with(server.root / "tmp" / f"op-{op}", 0, b"\xab" * 64), "the server to write the part")
    sock.close()  # the client goes away: part 1 now holds 2 MiB of other bytes
    wait_for(lambda: complete(server, op, content).status != 409, "the server to notice")
    refused = complete(server, op, content)
    assert refused.status == 400 and "part 1" in refused.json()["message"]
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content


def test_parts_still_arriving_block_the_completion(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    content = os.urandom(PART_SIZE + 100)
    op = start(server)
    assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
    assert put_part(server, op, 2, content[PART_SIZE:]).status == 200
    url = f"{DIST}/operations/upload?operationId={op}&partNumber=1"
    sock = open_partial(server, "PUT", url, digest(content[:PART_SIZE]), PART_SIZE)
    try:
        sock.sendall(content[: 2 * 2**20])
        wait_for(starts_with(server.root / "tmp" / f"op-{op}", 0, content[:64]), "the server to get the part")
        busy = complete(server, op, content)
        assert busy.status == 409 and "still arriving" in busy.json()["message"], busy.body
        twice = put_part(server, op, 1, content[:PART_SIZE])
        assert twice.status == 409 and "already being received" in twice.json()["message"], twice.body
        assert changes(server) == {}
        sock.sendall(content[2 * 2**20 : PART_SIZE])
        sock.settimeout(30)
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    assert complete(server, op, content).status == 200
    assert server.api("GET", DIST).body == content


@pytest.mark.scaled
def test_replacing_switches_to_the_new_bytes_and_downloads_in_flight_finish(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    old = os.urandom(6 * 2**20)
    server.upload("cat", "D", "20240101", "csv", old)
    request = urllib.request.Request(
        server.base + "/api/v1/" + DIST,
        headers={
            "Authorization": f"Bearer {server.token()}",
            "Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'D')}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as streaming:
        head = streaming.read(2**20)
        assert server.upload("cat", "D", "20240101", "csv", b"new contents").status == 200
        assert server.api("GET", DIST).body == b"new contents"
        assert head + streaming.read() == old
    assert server.api("HEAD", DIST).headers["x-jpmc-checksum"] == sha(b"new contents")
    assert changes(server)["D/20240101/distribution.csv"][1:3] == [
        "12",
        f"SHA-256={fsync_digest_of([b'new contents'])}",
    ]


@pytest.mark.scaled
def test_concurrent_uploads_of_one_distribution_leave_one_whole_file(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.token(), server.fusion_token("cat", "D")
    contents = [os.urandom(6 * 2**20) for _ in range(8)] + [os.urandom(1000 + i) for i in range(4)]
    answers: list[int] = []

    def send(content: bytes) -> None:
        answers.append(server.upload("cat", "D", "20240101", "csv", content).status)

    threads = [threading.Thread(target=send, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(contents)
    body = server.api("GET", DIST).body
    assert body in contents
    assert server.api("HEAD", DIST).headers["x-jpmc-checksum"] == sha(body)
    row = changes(server)["D/20240101/distribution.csv"]
    assert row[1:3] == [str(len(body)), f"SHA-256={fsync_digest_of([body])}"]
    assert server.temporaries() == []


def test_kill_during_uploads_keeps_the_catalog_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_server(root)
    content = os.urandom(PART_SIZE + 3 * 2**20)
    try:
        server.create_dataset("cat", "D")
        server.upload("cat", "D", "20240101", "csv", b"version 1")
        before = (server.api("GET", "catalogs/cat/datasets/D/datasetseries").json(), changes(server))
        op = start(server)
        assert put_part(server, op, 1, content[:PART_SIZE]).status == 200
        # part 2 half sent, and a single upload half sent, when the server dies
        part2 = content[PART_SIZE:]
        url = f"{DIST}/operations/upload?operationId={op}&partNumber=2"
        in_part = open_partial(server, "PUT", url, digest(part2), len(part2))
        in_part.sendall(part2[: 2 * 2**20])
        single = open_partial(server, "PUT", DIST, whole(content), len(content))
        single.sendall(content[: 2 * 2**20])
        wait_for(starts_with(root / "tmp" / f"op-{op}", PART_SIZE, part2[:64]), "part 2 to be written")
        wait_for(lambda: any(p.name.startswith("put-") for p in (root / "tmp").iterdir()), "the single upload")
        server.kill()
        in_part.close()
        single.close()
    finally:
        server.stop()
    (root / "tmp" / "put-left-by-another-crash").write_bytes(b"half an upload")
    again = start_server(root)
    try:
        assert again.api("GET", DIST).body == b"version 1"
        assert (again.api("GET", "catalogs/cat/datasets/D/datasetseries").json(), changes(again)) == before
        assert sorted(p.name for p in (root / "tmp").iterdir()) == [f"op-{op}"]  # the live upload only
        assert len([p for p in (root / "blobs").rglob("*") if p.is_file()]) == 1
        # the upload goes on where it stopped: part 2 was cut off, so it must come again
        refused = complete(again, op, content)
        assert refused.status == 400 and "part 2" in refused.json()["message"]
        assert put_part(again, op, 2, content[PART_SIZE:]).status == 200
        assert complete(again, op, content).status == 200
        assert again.api("GET", DIST).body == content
        assert list((root / "tmp").iterdir()) == []
        assert internal_errors(again.log) == []
    finally:
        again.stop()
