"""Bad input over real HTTP: unsafe identifiers, malformed bodies, headers and query parameters.

Every one is answered 4xx with a JSON message, never 500, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from tests.api_doc import api_operations, operations, watch_for_internal_errors
from tests.helpers import RunningServer, start_server

DIST = "catalogs/cat/datasets/D/datasetseries/s/distributions/csv"
HELLO = {"Digest": f"SHA-256={fsync_digest_of([b'hello'])}"}

# Path segments as sent on the wire (already percent-encoded where needed).
UNSAFE_SEGMENTS = [
    ".",
    "..",
    "%2E%2E",
    "a%2Fb",
    "%2F",
    "a%5Cb",
    "a%00b",
    "a%0Ab",
    "tab%09x",
    "%7F",
    "x" * 256,
    "%C3%A9" * 128,  # 128 characters, 256 bytes
    "%FF",  # not UTF-8
    "%C3",  # truncated UTF-8
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module (bad input changes nothing, which the tests check), page size 2."""
    server = start_server(tmp_path_factory.mktemp("input") / "server-root", "--page-size", "2")
    server.create_dataset("cat", "D")
    server.create_product("cat", "P", ["D"])
    server.upload("cat", "D", "s", "csv", b"hello")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request, ("server", "open_server", "seeded"))


def snapshot(server: RunningServer) -> object:
    """What the catalog holds, as the API shows it."""
    paths = [
        "catalogs",
        "catalogs/cat/products",
        "catalogs/cat/productDatasets",
        "catalogs/cat/datasets",
        "catalogs/cat/datasets/D",
        "catalogs/cat/datasets/D/datasetseries",
        "catalogs/cat/datasets/changes?datasets=D",
    ]
    return [server.api("GET", p, headers={"x-jpmc-next-token": "0"}).json() for p in paths]


def test_unsafe_identifiers_anywhere_in_any_path_are_400(seeded: RunningServer) -> None:
    server = seeded
    before = snapshot(server)
    checked = 0
    for op in api_operations():
        for param in op.params:
            values = list(UNSAFE_SEGMENTS)
            if not op.path.endswith("{" + param + "}"):
                values.append("")  # an empty segment in the middle of the path
            for value in values:
                url = op.url(**{param: value})
                headers = {"Fusion-Authorization": "Bearer unused", **HELLO}
                body = b"hello" if op.method in ("PUT", "POST") else None
                answer = server.request(op.method, url, body=body, headers=headers)
                assert answer.status == 400, (str(op), url, answer.status, answer.body[:200])
                if op.method != "HEAD":
                    assert answer.json()["message"]
                checked += 1
    assert checked > 700
    assert snapshot(server) == before


def test_unsafe_segments_are_refused_before_authentication(server: RunningServer) -> None:
    assert server.request("GET", "/api/v1/catalogs/..", auth=False).status == 400
    assert server.request("GET", "/api/v1/catalogs/a%2Fb/datasets", auth=False).status == 400
    assert server.request("GET", "/api/v1/catalogs/ok", auth=False).status == 401


def test_names_that_look_odd_but_are_safe_work(server: RunningServer) -> None:
    for name in ("...", "a.b", "with space", "\u00e9t\u00e9", "x" * 255, "\u00e9" * 127, "changes.csv", "%25", "a;b"):
        q = quote(name, safe="")
        assert server.api("POST", f"catalogs/{q}", json_body={}).status == 201, name
        assert server.api("POST", f"catalogs/{q}/datasets/{q}", json_body={}).status == 201, name
        url = f"catalogs/{q}/datasets/{q}/datasetseries/{q}/distributions/{q}"
        assert server.api("PUT", url, body=b"hello", headers=HELLO).status == 200, name
        assert server.api("GET", f"catalogs/{q}/datasets/{q}").json()["identifier"] == name
        listing = server.api("GET", f"catalogs/{q}/datasets/changes?datasets={q}").json()["datasets"]
        assert listing[0]["distributions"][0]["key"] == f"{name}/{name}/distribution.{name}"
        assert server.api("GET", url).body == b"hello"


@pytest.mark.parametrize(
    "body",
    [
        {"product": "P", "datasets": ["../x"]},
        {"product": "P", "datasets": ["a/b"]},
        {"product": "P", "datasets": ["a\\b"]},
        {"product": "P", "datasets": ["a\x00b"]},
        {"product": "P", "datasets": [""]},
        {"product": "P", "datasets": ["x" * 256]},
        {"product": "P", "datasets": ["D", ".."]},
        {"product": "..", "datasets": ["D"]},
        {"product": "", "datasets": ["D"]},
        {"product": "P", "datasets": []},
        {"product": "P", "datasets": "D"},
        {"product": "P", "datasets": [7]},
        {"product": "P", "datasets": [None]},
        {"product": ["P"], "datasets": ["D"]},
        {"datasets": ["D"]},
        {"product": "P"},
    ],
)
def test_unsafe_or_malformed_product_links_are_400(seeded: RunningServer, body: dict[str, object]) -> None:
    for method in ("PUT", "POST"):
        answer = seeded.api(method, "catalogs/cat/productDatasets", json_body=body)
        assert answer.status == 400 and answer.json()["message"], answer.body
    assert seeded.api("GET", "catalogs/cat/productDatasets").json()["resources"] == [{"product": "P", "dataset": "D"}]


MALFORMED_JSON = [
    b"{not json",
    b"[1, 2]",
    b'"a string"',
    b"null",
    b"\xff\xfe{}",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": ' + b"1" * 5000 + b"}",
    b"[" * 30_000 + b"]" * 30_000,  # nested far too deep (under the metadata cap: refused as JSON, not 413)
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"a":' * 33 + b"1" + b"}" * 33,  # JSON, nested deeper than any reader should have to follow
]


def json_body_operations() -> list[tuple[str, str]]:
    out = []
    for op in operations():
        body = op.spec.get("requestBody", {}).get("content", {})
        if "application/json" in body and "/operations/upload" not in op.path:
            out.append((op.method, op.url(catalog="cat", dataset="D", product="P")))
    return out


@pytest.mark.parametrize("body", MALFORMED_JSON, ids=lambda b: repr(b[:20]))
def test_malformed_json_bodies_are_400(seeded: RunningServer, body: bytes) -> None:
    targets = json_body_operations()
    assert len(targets) == 12
    headers = {"Content-Type": "application/json"}
    for method, url in targets:
        answer = seeded.request(method, url, body=body, headers=headers)
        assert answer.status == 400 and answer.json()["message"], (method, url, answer.body[:200])
    op = seeded.api("POST", DIST + "/operationType/upload").json()["operationId"]
    answer = seeded.api("POST", f"{DIST}/operations/upload?operationId={op}", body=body, headers={**headers, **HELLO})
    assert answer.status == 400, answer.body[:200]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("catalogs/cat", {"identifier": "other"}),
        ("catalogs/new", {"identifier": ".."}),
        ("catalogs/cat/products/P", {"identifier": "Q"}),
        ("catalogs/cat/products/P", {"identifier": 7}),
        ("catalogs/cat/datasets/D", {"identifier": "E"}),
        ("catalogs/cat/datasets/D", {"identifier": "../D"}),
        ("catalogs/cat/datasets/D", {"isRawData": "yes"}),
        ("catalogs/cat/datasets/D", {"isRawData": 1}),
        ("catalogs/cat/datasets/D", {"isRawData": None}),
    ],
)
def test_bodies_that_contradict_the_url_or_mistype_fields_are_400(
    seeded: RunningServer, url: str, body: dict[str, object]
) -> None:
    before = snapshot(seeded)
    attempts = [("POST", url.rsplit("/", 1)[0] + "/N")]  # a new one (an existing one is a 409 first)
    if url.count("/") > 1:
        attempts.append(("PUT", url))  # catalogs have no PUT
    for method, target in attempts:
        answer = seeded.api(method, target, json_body=body)
        assert answer.status == 400 and answer.json()["message"], (method, target, answer.body)
    assert snapshot(seeded) == before


def test_the_change_listing_url_is_not_a_dataset(seeded: RunningServer) -> None:
    for method in ("PUT", "POST", "DELETE"):
        answer = seeded.api(method, "catalogs/cat/datasets/changes", json_body={})
        assert answer.status == 405 and answer.headers["Allow"] == "GET,HEAD", answer.body
    assert seeded.api("GET", "catalogs/cat/datasets/changes/authorize/token").status == 404


@pytest.mark.parametrize("value", ["", ",", "D,", ",D", "D,,D", "..", "D,..", "a/b", "D,a%2Fb", "x" * 256, "%00"])
def test_bad_dataset_lists_in_the_change_listing_are_400(seeded: RunningServer, value: str) -> None:
    answer = seeded.api("GET", f"catalogs/cat/datasets/changes?datasets={quote(value, safe='%,')}")
    assert answer.status == 400 and answer.json()["message"], answer.body


@pytest.mark.parametrize("token", ["", "x", "-1", "+1", "1 2", "1.0", "1_0", "\u00b2", "0x1", "9" * 19, "1e3"])
def test_bad_page_tokens_are_400(seeded: RunningServer, token: str) -> None:
    answer = seeded.api("GET", "catalogs/cat/datasets", headers={"x-jpmc-next-token": token})
    assert answer.status == 400 and "x-jpmc-next-token" in answer.json()["message"], (token, answer.body)


@pytest.mark.parametrize("number", ["", "0", "-1", "+1", "1.0", "\u0661", "\u00b2", "10001", "9" * 20, "one"])
def test_bad_part_numbers_are_400(seeded: RunningServer, number: str) -> None:
    op = seeded.api("POST", DIST + "/operationType/upload").json()["operationId"]
    url = f"{DIST}/operations/upload?operationId={op}&partNumber={quote(number)}"
    answer = seeded.api("PUT", url, body=b"hello", headers=HELLO)
    assert answer.status == 400 and "partNumber" in answer.json()["message"], answer.body


@pytest.mark.parametrize(
    "value", ["lines=1-2", "bytes=1-2,4-5", "bytes=a-b", "bytes=1-2\n", "1-2", "bytes=\u0661-2", "bytes=1", ""]
)
def test_bad_download_ranges_are_400(seeded: RunningServer, value: str) -> None:
    answer = seeded.api("GET", f"{DIST}/operationType/download?downloadRange={quote(value)}")
    assert answer.status == 400 and "downloadRange" in answer.json()["message"], answer.body


@pytest.mark.parametrize("name", ["../../etc/passwd.csv", "a/b.csv", "a\\b.csv", "..", "x" * 256, 'a".csv', "a;b.csv"])
def test_unsafe_upload_file_names_are_400(seeded: RunningServer, name: str) -> None:
    headers = {**HELLO, "File-Name": name}
    assert seeded.api("PUT", DIST, body=b"hello", headers=headers).status == 400
    assert seeded.api("POST", DIST + "/operationType/upload", headers=headers).status == 400
    files = seeded.api("GET", DIST + "/files").json()["resources"]
    assert [f["title"] for f in files] == ["D__cat__s.csv"]


@pytest.mark.parametrize(
    "digest", [None, "", "SHA-256=", "MD5=abc", "sha-256=!!!!", f"SHA-256={fsync_digest_of([b'other'])}"]
)
def test_uploads_without_the_right_digest_are_400(seeded: RunningServer, digest: str | None) -> None:
    headers = {} if digest is None else {"Digest": digest}
    assert seeded.api("PUT", DIST, body=b"new bytes", headers=headers).status == 400
    assert seeded.api("GET", DIST).body == b"hello"


def test_unknown_methods_are_405_with_allow(seeded: RunningServer) -> None:
    answer = seeded.api("PATCH", "catalogs/cat/datasets/D", json_body={})
    assert answer.status == 405 and answer.json()["message"]
    assert set(answer.headers["Allow"].split(",")) == {"GET", "HEAD", "POST", "PUT", "DELETE"}
    assert seeded.api("GET", "no/such/thing").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "catalogs/NOPE",
        "catalogs/NOPE/datasets",
        "catalogs/NOPE/products",
        "catalogs/NOPE/productDatasets",
        "catalogs/NOPE/datasets/changes?datasets=D",
        "catalogs/cat/datasets/NOPE",
        "catalogs/cat/datasets/changes?datasets=NOPE",
        "catalogs/cat/datasets/changes?datasets=D,NOPE",
        "catalogs/cat/datasets/NOPE/authorize/token",
        "catalogs/cat/datasets/NOPE/datasetseries",
        "catalogs/cat/products/NOPE",
        "catalogs/cat/datasets/D/datasetseries/NOPE",
        "catalogs/cat/datasets/D/datasetseries/NOPE/distributions",
        "catalogs/cat/datasets/D/datasetseries/s/distributions/NOPE",
        "catalogs/cat/datasets/D/datasetseries/s/distributions/NOPE/operationType/download",
        "catalogs/cat/datasets/D/datasetseries/s/distributions/NOPE/files",
        "catalogs/cat/datasets/D/datasetseries/s/distributions/csv/files/operationType/download?file=NOPE",
    ],
)
def test_unknown_resources_are_404_with_a_message(seeded: RunningServer, path: str) -> None:
    answer = seeded.api("GET", path)
    assert answer.status == 404 and "not found" in answer.json()["message"], answer.body


def test_writes_below_unknown_resources_are_404(seeded: RunningServer) -> None:
    server = seeded
    assert server.api("PUT", "catalogs/NOPE/datasets/D", json_body={}).status == 404
    assert server.api("PUT", "catalogs/NOPE/products/P", json_body={}).status == 404
    assert server.api("DELETE", "catalogs/cat/datasets/NOPE").status == 404
    assert server.api("DELETE", "catalogs/cat/products/NOPE").status == 404
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/NOPE").status == 404
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/s/distributions/NOPE").status == 404
    assert server.api("DELETE", "catalogs/cat/productDatasets/P/NOPE").status == 404
    body = {"product": "NOPE", "datasets": ["D"]}
    assert server.api("PUT", "catalogs/cat/productDatasets", json_body=body).status == 404
    body = {"product": "P", "datasets": ["D", "NOPE"]}
    assert server.api("PUT", "catalogs/cat/productDatasets", json_body=body).status == 404
    assert server.api("GET", "catalogs/cat/productDatasets").json()["resources"] == [{"product": "P", "dataset": "D"}]
    assert server.api("GET", "catalogs/cat/datasets/NOPE/authorize/token").status == 404


def test_uploads_to_unknown_datasets_are_404(open_server: RunningServer) -> None:
    srv = open_server
    srv.create_catalog("cat")
    dist = "catalogs/cat/datasets/NOPE/datasetseries/s/distributions/csv"
    assert srv.api("PUT", dist, body=b"hello", headers=HELLO).status == 404
    assert srv.api("POST", dist + "/operationType/upload").status == 404
    assert srv.api("PUT", dist.replace("cat", "NOPE", 1), body=b"hello", headers=HELLO).status == 404
    assert list((srv.root / "tmp").iterdir()) == []


@pytest.mark.parametrize("header", ["x-jpmc-distribution-from-date", "x-jpmc-distribution-created-date"])
@pytest.mark.parametrize("value", ["\u00e9t\u00e9", "2024\t01"])
def test_upload_dates_that_are_not_printable_ascii_are_400_before_anything_is_written(
    seeded: RunningServer, header: str, value: str
) -> None:
    """Bytes that are not UTF-8 in a date header once reached the database: a 500 after the blob was stored."""
    blobs = sorted((seeded.root / "blobs").rglob("*"))
    dates = {header: value}  # urllib sends it as Latin-1: "\u00e9" is the byte 0xE9, not UTF-8
    answer = seeded.api(
        "PUT", DIST, body=b"other", headers={**dates, "Digest": f"SHA-256={fsync_digest_of([b'other'])}"}
    )
    assert answer.status == 400 and header in answer.json()["message"], answer.body
    assert seeded.api("POST", DIST + "/operationType/upload", headers=dates).status == 400
    op = seeded.api("POST", DIST + "/operationType/upload").json()["operationId"]
    url = f"{DIST}/operations/upload?operationId={op}"
    part = {"Digest": f"SHA-256={fsync_digest_of([b'other'])}"}
    assert seeded.api("PUT", url + "&partNumber=1", body=b"other", headers={**part, **dates}).status == 400
    assert seeded.api("PUT", url + "&partNumber=1", body=b"other", headers=part).status == 200
    assert seeded.api("POST", url, json_body={}, headers={**part, **dates}).status == 400
    assert seeded.api("GET", DIST).body == b"hello"
    assert sorted((seeded.root / "blobs").rglob("*")) == blobs


def test_a_token_form_in_an_unknown_charset_is_400(server: RunningServer) -> None:
    creds = server.credentials()
    body = f"grant_type=client_credentials&client_id={creds['client_id']}&client_secret={creds['client_secret']}"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"}
    answer = server.request("POST", "/oauth2/token", body=body.encode(), headers=headers, auth=False)
    assert answer.status == 400 and "no-such-charset" in answer.json()["message"], answer.body


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_bodies_that_do_not_decode_as_their_content_encoding_are_400(seeded: RunningServer, encoding: str) -> None:
    before = snapshot(seeded)
    garbage = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    for method, url in json_body_operations():
        answer = seeded.request(method, url, body=b"not compressed", headers=garbage)
        assert answer.status == 400 and "content-encoding" in answer.json()["message"], (method, url, answer.body)
    form = {**garbage, "Content-Type": "application/x-www-form-urlencoded"}
    assert seeded.request("POST", "/oauth2/token", body=b"not compressed", headers=form, auth=False).status == 400
    upload = {**garbage, **HELLO, "Content-Type": "application/octet-stream"}
    assert seeded.api("PUT", DIST, body=b"not compressed", headers=upload).status == 400
    op = seeded.api("POST", DIST + "/operationType/upload").json()["operationId"]
    url = f"{DIST}/operations/upload?operationId={op}"
    assert seeded.api("PUT", url + "&partNumber=1", body=b"not compressed", headers=upload).status == 400
    assert seeded.api("POST", url, body=b"not compressed", headers={**garbage, **HELLO}).status == 400
    assert snapshot(seeded) == before
    assert seeded.api("GET", DIST).body == b"hello"
