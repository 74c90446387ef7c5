"""Every request is bounded: header lines and their count, JSON and form bodies, single-request uploads.

What is over a bound is answered 4xx at once (JSON with a message once the request reached the
application), nothing is stored, and the server goes on answering. Bodies are counted as they arrive
(chunked, compressed) and refused before they are read when their Content-Length is already too large.
Parts of multipart uploads (5 MiB at most) are tested in test_server_transfer.py.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync.catalog.digest import PART_SIZE, fsync_digest_of
from fusionsync.server.common import MAX_JSON_BODY, MAX_METADATA_BYTES
from tests.api_doc import watch_for_internal_errors
from tests.conftest import Storage
from tests.helpers import RunningServer, start_server

DIST = "catalogs/cat/datasets/D/datasetseries/s/distributions/csv"


def dist(series: str) -> str:
    return f"catalogs/cat/datasets/D/datasetseries/{series}/distributions/csv"


CEILING = 1000
"""The --max-upload-size of the server that checks the upload ceiling."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[RunningServer]:
    """One server for the module, whose single-request uploads may hold CEILING bytes at most.

    Each test writes only names of its own.
    """
    root = tmp_path_factory.mktemp("bounds") / "server-root"
    srv = start_server(root, "--max-upload-size", str(CEILING), *storage())
    srv.create_dataset("cat", "D")
    srv.create_product("cat", "P", ["D"])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def raw(server: RunningServer, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send ``head`` (and whatever of a body) on a fresh connection; the status and body answered.

    Only the answer is waited for, never the connection's end: a server that waits for the rest of a body
    announced but not sent makes this time out.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock, sock.makefile("rb") as reader:
        sock.sendall(head + body)
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, reader.read(length)


def request_head(server: RunningServer, method: str, path: str, headers: dict[str, str]) -> bytes:
    auth = {"Authorization": f"Bearer {server.token()}"}
    if "/distributions/" in path:
        auth["Fusion-Authorization"] = f"Bearer {server.fusion_token('cat', 'D')}"
    lines = [f"{method} /api/v1/{path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in auth.items())]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(server: RunningServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """A request whose body is sent chunked (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        auth = {"Authorization": f"Bearer {server.token()}"}
        if "/distributions/" in path:
            auth["Fusion-Authorization"] = f"Bearer {server.fusion_token('cat', 'D')}"
        pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
        conn.request(method, "/api/v1/" + path, body=pieces, headers={**auth, **headers}, encode_chunked=True)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def upload_temporaries(server: RunningServer) -> list[Path]:
    """The temporary files of single-request uploads (multipart operations keep theirs until completed)."""
    return [path for path in (server.root / "tmp").iterdir() if not path.name.startswith("op-")]


def assert_alive(server: RunningServer) -> None:
    assert server.api("GET", "catalogs").status == 200


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "head"),
    [
        ("a header value of 9000 bytes", b"X-Big: " + b"a" * 9000 + b"\r\n"),
        ("a header name of 9000 bytes", b"X-" + b"a" * 9000 + b": 1\r\n"),
        ("an Authorization of 20000 bytes", b"Authorization: Bearer " + b"a" * 20000 + b"\r\n"),
        ("200 headers", b"".join(b"X-H%d: 1\r\n" % i for i in range(200))),
        ("1 MiB of headers", b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 8000) for i in range(128))),
    ],
)
def test_oversized_or_too_many_headers_are_refused_at_once(server: RunningServer, what: str, head: bytes) -> None:
    started = time.monotonic()
    status, body = raw(server, b"GET /api/v1/catalogs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
    assert status in (400, 431), (what, status, body[:200])
    assert time.monotonic() - started < 5, what
    assert_alive(server)


def test_an_overlong_request_line_is_refused_at_once(server: RunningServer) -> None:
    status, body = raw(server, b"GET /api/v1/catalogs?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status in (400, 414), (status, body[:200])
    long_path = "catalogs/" + "/".join(["x" * 200] * 45)
    status, body = raw(server, request_head(server, "GET", long_path, {}))
    assert status in (400, 414), (status, body[:200])
    assert_alive(server)


def test_headers_within_the_bounds_are_fine(server: RunningServer) -> None:
    many = {f"X-H{i}": "b" * 100 for i in range(100)}
    answer = server.api("GET", "catalogs", headers={"X-Big": "a" * 8000, **many})
    assert answer.status == 200, answer.body[:200]


# -- JSON and form bodies ----------------------------------------------------------------------


def json_targets(server: RunningServer) -> list[tuple[str, str, dict[str, str], int]]:
    """Every kind of route that reads a JSON body: (method, path, extra headers, its cap). Metadata is capped
    lower than lists (of datasets, of parts)."""
    op = server.api("POST", DIST + "/operationType/upload").json()["operationId"]
    whole = {"Digest": f"SHA-256={fsync_digest_of([b'x'])}"}
    return [
        ("POST", "catalogs/new", {}, MAX_METADATA_BYTES),
        ("PUT", "catalogs/cat/products/NEW", {}, MAX_METADATA_BYTES),
        ("PUT", "catalogs/cat/datasets/NEW", {}, MAX_METADATA_BYTES),
        ("PUT", "catalogs/cat/productDatasets", {}, MAX_JSON_BODY),
        ("POST", f"{DIST}/operations/upload?operationId={op}", whole, MAX_JSON_BODY),
    ]


def padded(size: int) -> bytes:
    """A valid JSON object of exactly ``size`` bytes."""
    body = json.dumps({"description": ""}).encode()
    return json.dumps({"description": "x" * (size - len(body))}).encode()


def test_json_bodies_above_the_cap_are_413_and_change_nothing(server: RunningServer) -> None:
    for method, path, headers, cap in json_targets(server):
        body = padded(cap + 1)
        answer = server.api(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        assert answer.status == 413, (method, path, answer.status, answer.body[:200])
        assert answer.json()["message"] == f"request body is larger than {cap} bytes"
        status, text = chunked(server, method, path, body, {"Content-Type": "application/json", **headers})
        assert status == 413 and json.loads(text)["message"], (method, path, status, text[:200])
    assert server.api("GET", "catalogs/new").status == 404
    assert server.api("GET", "catalogs/cat/datasets/NEW").status == 404
    assert server.api("GET", "catalogs/cat/products/NEW").status == 404


def test_a_json_body_at_the_cap_is_read(server: RunningServer) -> None:
    body = padded(MAX_METADATA_BYTES)
    answer = server.api("POST", "catalogs/big", body=body, headers={"Content-Type": "application/json"})
    assert answer.status == 201, answer.body[:200]
    assert len(server.api("GET", "catalogs/big").json()["description"]) > MAX_METADATA_BYTES - 100


def test_a_completion_listing_the_most_parts_fits_under_the_cap(server: RunningServer) -> None:
    """The largest JSON a client sends: the answers of 10,000 part uploads, as the SDK sends them back."""
    op = server.api("POST", DIST + "/operationType/upload").json()["operationId"]
    answer = {"operationId": op, "partNumber": 10_000, "size": PART_SIZE, "digest": "A" * 43 + "="}
    body = json.dumps({"parts": [answer] * 10_000}).encode()
    assert MAX_JSON_BODY // 2 < len(body) < MAX_JSON_BODY
    headers = {"Content-Type": "application/json", "Digest": f"SHA-256={fsync_digest_of([b'x'])}"}
    refused = server.api("POST", f"{DIST}/operations/upload?operationId={op}", body=body, headers=headers)
    assert refused.status == 400 and refused.json()["message"] == "the upload has no parts", refused.body[:200]


def test_a_part_above_5_gib_is_refused_before_it_is_sent(server: RunningServer) -> None:
    op = server.api("POST", DIST + "/operationType/upload").json()["operationId"]
    headers = {"Content-Length": str(5 * 2**30 + 1), "Digest": f"SHA-256={fsync_digest_of([b'x'])}"}
    head = request_head(server, "PUT", f"{DIST}/operations/upload?operationId={op}&partNumber=1", headers)
    status, body = raw(server, head, b"some of the bytes")
    # a part is bounded by 5 GiB, and by what the one upload limit leaves (here the lower)
    assert status == 413, body
    assert json.loads(body)["message"] == f"request body is larger than {min(5 * 2**30, CEILING)} bytes"


def test_a_huge_announced_json_body_is_refused_before_it_is_sent(server: RunningServer) -> None:
    head = request_head(server, "PUT", "catalogs/cat/datasets/D", {"Content-Length": str(10**12)})
    status, body = raw(server, head, b'{"title": "')
    assert status == 413 and json.loads(body)["message"] == f"request body is larger than {MAX_METADATA_BYTES} bytes"
    assert server.api("GET", "catalogs/cat/datasets/D").json()["title"] == "D"


def test_a_token_form_above_the_cap_is_413(server: RunningServer) -> None:
    creds = server.credentials()
    form = {
        "grant_type": "client_credentials",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
    }
    form["padding"] = "x" * MAX_JSON_BODY
    answer = server.request("POST", "/oauth2/token", form=form, auth=False)
    assert answer.status == 413 and answer.json()["message"], answer.body[:200]
    assert "access_token" not in answer.json()


def test_a_compressed_json_body_is_bounded_once_decompressed(server: RunningServer) -> None:
    bomb = gzip.compress(padded(64 * 2**20), 9)
    assert len(bomb) < MAX_JSON_BODY // 10
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    answer = server.api("POST", "catalogs/bomb", body=bomb, headers=headers)
    assert answer.status == 413, answer.body
    assert answer.json()["message"] == f"request body is larger than {MAX_METADATA_BYTES} bytes"
    assert server.api("GET", "catalogs/bomb").status == 404


# -- single-request uploads -------------------------------------------------------------------


def upload(server: RunningServer, series: str, data: bytes) -> tuple[int, bytes]:
    headers = {"Digest": f"SHA-256={fsync_digest_of([data])}"}
    answer = server.api("PUT", dist(series), body=data, headers=headers)
    return answer.status, answer.body


def test_a_single_upload_up_to_the_ceiling_is_stored(server: RunningServer) -> None:
    data = bytes(range(256)) * 3 + b"x" * (CEILING - 768)
    assert upload(server, "up-to", data)[0] == 200
    assert server.api("GET", dist("up-to")).body == data


def test_a_single_upload_above_the_ceiling_is_413_and_stores_nothing(server: RunningServer) -> None:
    data = b"y" * (CEILING + 1)
    status, body = upload(server, "above", data)
    assert status == 413 and json.loads(body)["message"] == f"request body is larger than {CEILING} bytes"
    digest = {"Digest": f"SHA-256={fsync_digest_of([data])}"}
    status, body = chunked(server, "PUT", dist("above"), data, digest)  # no Content-Length: counted as it comes
    assert status == 413 and json.loads(body)["message"] == f"request body is larger than {CEILING} bytes"
    assert server.api("GET", dist("above")).status == 404
    assert upload_temporaries(server) == []
    assert upload(server, "above", b"z" * CEILING)[0] == 200


def test_a_huge_announced_upload_is_refused_before_it_is_sent(server: RunningServer) -> None:
    headers = {"Content-Length": str(10**12), "Digest": "SHA-256=" + "A" * 43 + "="}
    status, body = raw(server, request_head(server, "PUT", dist("huge"), headers), b"some of the bytes")
    assert status == 413 and json.loads(body)["message"] == f"request body is larger than {CEILING} bytes"
    assert upload_temporaries(server) == []
    assert server.api("GET", dist("huge")).status == 404


@pytest.mark.parametrize("size", [CEILING * 5, CEILING * 1000])
def test_a_compressed_upload_is_bounded_once_decompressed(server: RunningServer, size: int) -> None:
    data = bytes(size)
    body = gzip.compress(data, 9)
    assert size > CEILING and (len(body) < CEILING or size > 100 * CEILING)  # small when sent, big once decoded
    headers = {"Content-Encoding": "gzip", "Digest": f"SHA-256={fsync_digest_of([data])}"}
    answer = server.api("PUT", dist(f"bomb{size}"), body=body, headers=headers)
    assert answer.status == 413 and answer.json()["message"] == f"request body is larger than {CEILING} bytes"
    assert upload_temporaries(server) == []
    assert server.api("GET", dist(f"bomb{size}")).status == 404


def test_the_ceiling_must_be_a_positive_number_of_bytes(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="max-upload-size"):
        start_server(tmp_path / "root", "--max-upload-size", "0")
