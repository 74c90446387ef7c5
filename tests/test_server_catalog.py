"""Catalog metadata over real HTTP: every collection and item, writes, paging, the change listing."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from operator import itemgetter

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from tests.api_doc import watch_for_internal_errors
from tests.helpers import RunningServer

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pytestmark = pytest.mark.scaled


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


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
        assert pages < 100


def ids(items: list[dict[str, object]]) -> list[object]:
    return [item["identifier"] for item in items]


def test_collections_and_items_at_every_level(server: RunningServer) -> None:
    server.create_dataset("cat", "D", raw=True, title="A dataset")
    server.create_product("cat", "P", ["D"])
    server.upload("cat", "D", "20240101", "csv", b"a,b\n1,2\n")
    assert ids(collect(server, "catalogs")[0]) == ["cat"]
    assert ids(collect(server, "catalogs/")[0]) == ["cat"]
    catalog = server.api("GET", "catalogs/cat").json()
    assert catalog["identifier"] == "cat" and ids(catalog["resources"]) == ["datasets", "products"]
    assert ids(collect(server, "catalogs/cat/products")[0]) == ["P"]
    product = server.api("GET", "catalogs/cat/products/P").json()
    assert product["identifier"] == "P" and ids(product["resources"]) == ["D"]
    assert collect(server, "catalogs/cat/productDatasets")[0] == [{"product": "P", "dataset": "D"}]
    dataset = server.api("GET", "catalogs/cat/datasets/D").json()
    assert dataset["identifier"] == "D" and dataset["isRawData"] is True and dataset["title"] == "A dataset"
    assert dataset["resources"] == [{"identifier": "datasetseries"}]
    datasets = collect(server, "catalogs/cat/datasets")[0]
    assert ids(datasets) == ["D"] and datasets[0]["isRawData"] is True
    assert ids(collect(server, "catalogs/cat/datasets/D/datasetseries")[0]) == ["20240101"]
    member = server.api("GET", "catalogs/cat/datasets/D/datasetseries/20240101").json()
    assert member["identifier"] == "20240101" and ids(member["resources"]) == ["distributions"]
    dists = collect(server, "catalogs/cat/datasets/D/datasetseries/20240101/distributions")[0]
    assert ids(dists) == ["csv"] and dists[0]["size"] == 8
    assert dists[0]["checksum"] == "SHA-256=" + base64.b64encode(hashlib.sha256(b"a,b\n1,2\n").digest()).decode()


def test_a_new_dataset_answers_a_non_empty_resources_list(server: RunningServer) -> None:
    """The official SDK's filesystem needs one (KeyError without, IndexError when empty)."""
    server.create_dataset("cat", "EMPTY")
    assert server.api("GET", "catalogs/cat/datasets/EMPTY").json()["resources"] == [{"identifier": "datasetseries"}]
    assert server.api("GET", "catalogs/cat/datasets/EMPTY/datasetseries").json() == {"resources": []}


def _catalogs(server: RunningServer, i: int) -> None:
    server.create_catalog(f"c{i}")


def _products(server: RunningServer, i: int) -> None:
    server.create_product("cat", f"P{i}", ["D"])


def _product_members(server: RunningServer, i: int) -> None:
    server.create_dataset("cat", f"D{i}")
    server.create_product("cat", "P", [f"D{i}"])


def _datasets(server: RunningServer, i: int) -> None:
    server.create_dataset("cat", f"D{i}")


def _series(server: RunningServer, i: int) -> None:
    server.upload("cat", "D", f"2024010{i}", "csv", b"x")


def _distributions(server: RunningServer, i: int) -> None:
    server.upload("cat", "D", "s", f"f{i}", b"x")


PAGED: dict[str, tuple[Callable[[RunningServer, int], None], str, Callable[[dict[str, object]], object]]] = {
    "catalogs": (_catalogs, "catalogs", itemgetter("identifier")),
    "products": (_products, "catalogs/cat/products", itemgetter("identifier")),
    "productDatasets": (_products, "catalogs/cat/productDatasets", itemgetter("product")),
    "product": (_product_members, "catalogs/cat/products/P", itemgetter("identifier")),
    "datasets": (_datasets, "catalogs/cat/datasets", itemgetter("identifier")),
    "datasetseries": (_series, "catalogs/cat/datasets/D/datasetseries", itemgetter("identifier")),
    "distributions": (
        _distributions,
        "catalogs/cat/datasets/D/datasetseries/s/distributions",
        itemgetter("identifier"),
    ),
}


def test_paging_returns_everything_exactly_once(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.create_product("cat", "P", ["D"])
    server.upload("cat", "D", "s", "f0", b"x")
    for kind, (make, path, key) in PAGED.items():  # each collection grows by 5 from what it holds already
        start = len(collect(server, path)[0])
        for i in range(start, start + 5):
            make(server, i)
        items, pages = collect(server, path)
        keys = [key(item) for item in items]
        assert len(keys) == len(set(keys)) == start + 5, (kind, keys)
        assert keys == sorted(keys), kind
        assert pages == (start + 5 + 1) // 2, kind  # the fixture's page size is 2
        # A token past the end (the collection shrank between two pages) is an empty last page.
        beyond = server.api("GET", path, headers={"x-jpmc-next-token": "50"})
        assert beyond.status == 200 and beyond.json()["resources"] == [], kind
        assert "x-jpmc-next-token" not in beyond.headers, kind
        bad = server.api("GET", path, headers={"x-jpmc-next-token": "nonsense"})
        assert bad.status == 400 and "x-jpmc-next-token" in bad.json()["message"], kind


def test_paging_five_datasets_in_three_pages(server: RunningServer) -> None:
    for i in range(5):
        server.create_dataset("cat", f"D{i}")
    first = server.api("GET", "catalogs/cat/datasets")
    token = first.headers["x-jpmc-next-token"]
    second = server.api("GET", "catalogs/cat/datasets", headers={"x-jpmc-next-token": token})
    third = server.api(
        "GET", "catalogs/cat/datasets", headers={"x-jpmc-next-token": second.headers["x-jpmc-next-token"]}
    )
    assert [ids(a.json()["resources"]) for a in (first, second, third)] == [["D0", "D1"], ["D2", "D3"], ["D4"]]
    assert "x-jpmc-next-token" not in third.headers


def test_change_listing_reports_sizes_and_fsync_digests(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.create_dataset("cat", "E")
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json() == {"datasets": []}
    big = bytes(range(256)) * (6 * 2**20 // 256)
    server.upload("cat", "D", "20240101", "csv", b"hello world")
    server.upload("cat", "D", "20240102", "parquet", big)
    answer = server.api("GET", "catalogs/cat/datasets/changes?datasets=D")
    assert answer.headers["Content-Type"].startswith("application/json")
    listing = answer.json()["datasets"]
    assert [entry["key"] for entry in listing] == ["D"] and ISO.match(listing[0]["lastModified"])
    rows = {row["key"]: row["values"] for row in listing[0]["distributions"]}
    assert set(rows) == {"D/20240101/distribution.csv", "D/20240102/distribution.parquet"}
    small = rows["D/20240101/distribution.csv"]
    assert ISO.match(small[0])
    assert small[1] == "11" and small[2] == "SHA-256=uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
    assert small[3:7] == ["cat", "D", "20240101", "csv"] and len(small) == 9
    large = rows["D/20240102/distribution.parquet"]
    assert large[1] == str(len(big)) and large[2] == f"SHA-256={fsync_digest_of([big])}"
    assert fsync_digest_of([big]) != base64.b64encode(hashlib.sha256(big).digest()).decode()  # two parts
    # several datasets at once; one without distributions is left out
    both = server.api("GET", "catalogs/cat/datasets/changes?datasets=E,D").json()["datasets"]
    assert [entry["key"] for entry in both] == ["D"]
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=NOPE").status == 404
    assert server.api("GET", "catalogs/cat/datasets/changes").status == 400


def test_change_listing_follows_replacements_and_deletions(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "s1", "csv", b"one")
    server.upload("cat", "D", "s2", "csv", b"two")

    def rows() -> dict[str, list[str]]:
        listing = server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json()["datasets"]
        return {r["key"]: r["values"] for entry in listing for r in entry["distributions"]}

    server.upload("cat", "D", "s1", "csv", b"one, again")
    assert rows()["D/s1/distribution.csv"][1:3] == ["10", f"SHA-256={fsync_digest_of([b'one, again'])}"]
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/s1/distributions/csv").status == 200
    assert set(rows()) == {"D/s2/distribution.csv"}
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/s2").status == 200
    assert rows() == {}


def test_metadata_writes(server: RunningServer) -> None:
    assert server.api("POST", "catalogs/cat", json_body={}).status == 201
    assert server.api("POST", "catalogs/cat", json_body={}).status == 409
    created = server.api("POST", "catalogs/cat/datasets/D", json_body={"isRawData": False, "title": "T"})
    assert created.status == 201 and created.json()["identifier"] == "D" and created.json()["isRawData"] is False
    assert server.api("POST", "catalogs/cat/datasets/D", json_body={}).status == 409
    updated = server.api("PUT", "catalogs/cat/datasets/D", json_body={"description": "New"})
    assert updated.status == 200
    dataset = server.api("GET", "catalogs/cat/datasets/D").json()
    assert dataset["description"] == "New" and dataset["title"] == "T" and dataset["isRawData"] is False  # merged
    assert server.api("PUT", "catalogs/cat/datasets/E", json_body={}).status == 404  # an update: as Fusion answers
    assert server.api("POST", "catalogs/cat/datasets/E", json_body={}).status == 201
    assert server.api("GET", "catalogs/cat/datasets/E").json()["isRawData"] is True  # the default
    assert server.api("POST", "catalogs/cat/products/P", json_body={"title": "Prod"}).status == 201
    assert server.api("POST", "catalogs/cat/products/P", json_body={}).status == 409
    assert server.api("PUT", "catalogs/cat/products/P", json_body={"description": "d"}).status == 200
    product = server.api("GET", "catalogs/cat/products/P").json()
    assert product["title"] == "Prod" and product["description"] == "d" and product["resources"] == []
    assert server.api("PUT", "catalogs/cat/products/Q", json_body={}).status == 404
    assert server.api("POST", "catalogs/cat/products/Q", json_body={}).status == 201
    link = server.api("PUT", "catalogs/cat/productDatasets", json_body={"product": "P", "datasets": ["D", "E"]})
    assert link.status == 200 and link.json() == {"product": "P", "datasets": ["D", "E"]}
    again = server.api("POST", "catalogs/cat/productDatasets", json_body={"product": "P", "datasets": ["D"]})
    assert again.status == 200  # linking twice is harmless
    assert ids(server.api("GET", "catalogs/cat/products/P").json()["resources"]) == ["D", "E"]
    assert server.api("DELETE", "catalogs/cat/productDatasets/P/E").status == 200
    assert server.api("DELETE", "catalogs/cat/productDatasets/P/E").status == 404
    assert collect(server, "catalogs/cat/productDatasets")[0] == [{"product": "P", "dataset": "D"}]


def test_deletes_take_everything_below_with_them(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.create_dataset("cat", "E")
    server.create_product("cat", "P", ["D", "E"])
    server.upload("cat", "D", "s1", "csv", b"x")
    server.upload("cat", "D", "s2", "csv", b"y")
    assert server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/s1").json()["deleted"] is True
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries/s1").status == 404
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries/s1/distributions/csv").status == 404
    assert ids(collect(server, "catalogs/cat/datasets/D/datasetseries")[0]) == ["s2"]
    assert server.api("DELETE", "catalogs/cat/datasets/D").status == 200
    assert server.api("GET", "catalogs/cat/datasets/D").status == 404
    assert server.api("GET", "catalogs/cat/datasets/changes?datasets=D").status == 404
    assert ids(server.api("GET", "catalogs/cat/products/P").json()["resources"]) == ["E"]
    server.create_dataset("cat", "D")  # a dataset made again under the same name starts empty
    assert server.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"] == []
    assert server.api("DELETE", "catalogs/cat/products/P").status == 200
    assert server.api("GET", "catalogs/cat/products/P").status == 404
    assert collect(server, "catalogs/cat/productDatasets")[0] == []
    assert ids(collect(server, "catalogs/cat/datasets")[0]) == ["D", "E"]
