"""Catalog metadata over real HTTP: every collection and item, paging, the change listing, bad input."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from tests.helpers import RunningServer


def collect(server: RunningServer, path: str) -> tuple[list[dict[str, object]], int]:
    """Follow x-jpmc-next-token pages; return every resource and the number of pages."""
    items: list[dict[str, object]] = []
    token = None
    pages = 0
    while True:
        answer = server.api("GET", path, headers={"x-jpmc-next-token": token} if token else None)
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"].startswith("application/json")
        items.extend(answer.json()["resources"])
        pages += 1
        token = answer.headers.get("x-jpmc-next-token")
        if not token:
            return items, pages


def test_collections_and_items_at_every_level(server: RunningServer) -> None:
    server.create_dataset("cat", "D", raw=True, title="A dataset")
    server.create_product("cat", "P", ["D"])
    server.upload("cat", "D", "20240101", "csv", b"a,b\n1,2\n")
    assert [c["identifier"] for c in collect(server, "catalogs")[0]] == ["cat"]
    assert [c["identifier"] for c in collect(server, "catalogs/")[0]] == ["cat"]
    catalog = server.api("GET", "catalogs/cat").json()
    assert catalog["identifier"] == "cat" and catalog["resources"]
    assert [p["identifier"] for p in collect(server, "catalogs/cat/products")[0]] == ["P"]
    product = server.api("GET", "catalogs/cat/products/P").json()
    assert [r["identifier"] for r in product["resources"]] == ["D"]
    assert collect(server, "catalogs/cat/productDatasets")[0] == [{"product": "P", "dataset": "D"}]
    dataset = server.api("GET", "catalogs/cat/datasets/D").json()
    assert dataset["isRawData"] is True and dataset["title"] == "A dataset" and dataset["resources"]
    assert [d["identifier"] for d in collect(server, "catalogs/cat/datasets")[0]] == ["D"]
    assert [s["identifier"] for s in collect(server, "catalogs/cat/datasets/D/datasetseries")[0]] == ["20240101"]
    member = server.api("GET", "catalogs/cat/datasets/D/datasetseries/20240101").json()
    assert member["identifier"] == "20240101" and member["resources"]
    dists = collect(server, "catalogs/cat/datasets/D/datasetseries/20240101/distributions")[0]
    assert [d["identifier"] for d in dists] == ["csv"] and dists[0]["size"] == 8


def test_a_new_dataset_answers_a_non_empty_resources_list(server: RunningServer) -> None:
    server.create_dataset("cat", "EMPTY")
    assert server.api("GET", "catalogs/cat/datasets/EMPTY").json()["resources"] == [{"identifier": "datasetseries"}]


def test_paging_returns_everything_exactly_once(server: RunningServer) -> None:
    for i in range(5):
        server.create_dataset("cat", f"D{i}")
    items, pages = collect(server, "catalogs/cat/datasets")
    assert [d["identifier"] for d in items] == [f"D{i}" for i in range(5)]
    assert pages == 3  # the fixture's page size is 2
    bad = server.api("GET", "catalogs/cat/datasets", headers={"x-jpmc-next-token": "nonsense"})
    assert bad.status == 400 and "x-jpmc-next-token" in bad.json()["message"]


def test_change_listing_reports_sizes_and_fsync_digests(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json() == {"datasets": []}
    big = bytes(range(256)) * (6 * 2**20 // 256)
    server.upload("cat", "D", "20240101", "csv", b"hello world")
    server.upload("cat", "D", "20240102", "parquet", big)
    listing = server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json()["datasets"]
    assert [entry["key"] for entry in listing] == ["D"]
    rows = {row["key"]: row["values"] for row in listing[0]["distributions"]}
    assert set(rows) == {"D/20240101/distribution.csv", "D/20240102/distribution.parquet"}
    small = rows["D/20240101/distribution.csv"]
    assert small[1] == "11" and small[2] == "SHA-256=uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
    assert small[3:7] == ["cat", "D", "20240101", "csv"]
    assert rows["D/20240102/distribution.parquet"][2] == f"SHA-256={fsync_digest_of([big])}"
    assert fsync_digest_of([big]) != base64.b64encode(hashlib.sha256(big).digest()).decode()
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=NOPE").status == 404
    assert server.api("GET", "catalogs/cat/datasets/changes").status == 400


def test_metadata_writes(server: RunningServer) -> None:
    assert server.api("POST", "catalogs/cat", json_body={}).status == 201
    assert server.api("POST", "catalogs/cat", json_body={}).status == 409
    assert server.api("POST", "catalogs/cat/datasets/D", json_body={"isRawData": False}).status == 201
    assert server.api("POST", "catalogs/cat/datasets/D", json_body={}).status == 409
    assert server.api("PUT", "catalogs/cat/datasets/D", json_body={"title": "New"}).status == 200
    assert server.api("GET", "catalogs/cat/datasets/D").json()["title"] == "New"
    assert server.api("POST", "catalogs/cat/products/P", json_body={"title": "Prod"}).status == 201
    assert server.api("POST", "catalogs/cat/products/P", json_body={}).status == 409
    assert (
        server.api("PUT", "catalogs/cat/productDatasets", json_body={"product": "P", "datasets": ["D"]}).status == 200
    )
    assert server.api("DELETE", "catalogs/cat/productDatasets/P/D").status == 200
    assert server.api("DELETE", "catalogs/cat/productDatasets/P/D").status == 404
    server.upload("cat", "D", "20240101", "csv", b"x")
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/20240101").status == 200
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries/20240101").status == 404
    assert server.api("DELETE", "catalogs/cat/products/P").status == 200
    assert server.api("DELETE", "catalogs/cat/datasets/D").status == 200
    assert server.api("GET", "catalogs/cat/datasets/D").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "catalogs/NOPE",
        "catalogs/NOPE/datasets",
        "catalogs/cat/datasets/NOPE",
        "catalogs/cat/products/NOPE",
        "catalogs/cat/datasets/D/datasetseries/NOPE",
        "catalogs/cat/datasets/D/datasetseries/20240101/distributions/NOPE",
    ],
)
def test_unknown_resources_are_404_with_a_message(server: RunningServer, path: str) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"x")
    answer = server.api("GET", path)
    assert answer.status == 404 and "not found" in answer.json()["message"]


@pytest.mark.parametrize(
    "segment",
    ["..", "%2E%2E", "a%2Fb", "a%5Cb", "a%00b", "x" * 256, "%C3%A9" * 128, "tab%09x", "%FF"],
)
def test_unsafe_identifiers_in_paths_are_400_never_500(server: RunningServer, segment: str) -> None:
    server.create_catalog("cat")
    for path in (f"catalogs/{segment}", f"catalogs/cat/datasets/{segment}", f"catalogs/cat/datasets/{segment}/x"):
        for method in ("GET", "POST", "PUT", "DELETE"):
            answer = server.api(method, path, json_body={} if method in ("POST", "PUT") else None)
            assert answer.status == 400, (method, path, answer.status, answer.body)
            assert answer.json()["message"]


def test_empty_path_segments_are_400(server: RunningServer) -> None:
    assert server.api("GET", "catalogs//datasets").status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"product": "P", "datasets": ["../x"]},
        {"product": "P", "datasets": ["a/b"]},
        {"product": "", "datasets": ["D"]},
        {"product": "P", "datasets": []},
        {"product": "P", "datasets": "D"},
        {"product": "P", "datasets": [7]},
        {"product": ["P"], "datasets": ["D"]},
    ],
)
def test_unsafe_or_malformed_bodies_are_400(server: RunningServer, body: dict[str, object]) -> None:
    server.create_dataset("cat", "D")
    server.create_product("cat", "P", ["D"])
    answer = server.api("PUT", "catalogs/cat/productDatasets", json_body=body)
    assert answer.status == 400, answer.body


def test_bad_json_and_mismatched_identifiers_are_400(server: RunningServer) -> None:
    server.create_catalog("cat")
    bad = server.api("POST", "catalogs/cat/datasets/D", body=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status == 400 and "JSON" in bad.json()["message"]
    assert server.api("POST", "catalogs/cat/datasets/D", json_body=[1, 2]).status == 400
    assert server.api("POST", "catalogs/cat/datasets/D", json_body={"identifier": "E"}).status == 400
    assert server.api("POST", "catalogs/cat/datasets/D", json_body={"isRawData": "yes"}).status == 400
    assert server.api("POST", "catalogs/cat/datasets/changes", json_body={}).status == 400
