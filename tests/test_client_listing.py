"""Listing and metadata on every level of the catalog, across pages (the fixture serves 2 items a page)."""

from __future__ import annotations

import json

import pytest

from fusionsync import FusionFileSystem
from tests.helpers import RunningServer

SERIES = "cat/datasets/D/datasetseries/20240102"


@pytest.fixture
def fs(server: RunningServer) -> FusionFileSystem:
    for catalog in ("alpha", "beta", "cat"):
        server.create_catalog(catalog)
    server.create_dataset("cat", "D", title="Daily prices")
    server.create_dataset("cat", "E", raw=True)
    for product in ("P1", "P2", "P3"):
        server.create_product("cat", product, ["D", "E"] if product == "P2" else ["D"])
    for day in ("20240101", "20240102", "20240103"):
        for fmt, body in (("csv", b"a,b\n1,2\n"), ("json", b"{}"), ("parquet", b"PAR1....PAR1")):
            server.upload("cat", "D", day, fmt, body)
    return FusionFileSystem(credentials=str(server.credentials_file))


def test_every_level_lists_all_pages(fs: FusionFileSystem) -> None:
    assert fs.ls("", detail=False) == ["alpha", "beta", "cat"]
    assert fs.ls("fusion://cat/", detail=False) == ["cat/datasets", "cat/products"]
    assert fs.ls("cat/products", detail=False) == ["cat/products/P1", "cat/products/P2", "cat/products/P3"]
    assert fs.ls("cat/datasets", detail=False) == ["cat/datasets/D", "cat/datasets/E"]
    assert fs.ls("cat/datasets/D", detail=False) == ["cat/datasets/D/datasetseries"]
    assert len(fs.ls("cat/datasets/D/datasetseries")) == 3
    assert fs.ls(SERIES, detail=False) == [f"{SERIES}/distributions"]
    assert fs.ls(f"{SERIES}/distributions") == [
        {"name": f"{SERIES}/distributions/csv", "type": "file", "size": 8},
        {"name": f"{SERIES}/distributions/json", "type": "file", "size": 2},
        {"name": f"{SERIES}/distributions/parquet", "type": "file", "size": 12},
    ]
    assert fs.ls(f"{SERIES}/distributions/json") == [fs.info(f"{SERIES}/distributions/json")]


def test_info_on_every_level(fs: FusionFileSystem) -> None:
    for path in ("", "cat", "cat/products", "cat/products/P2", "cat/datasets", "cat/datasets/D", SERIES):
        info = fs.info(path)
        assert (info["name"], info["type"], info["size"]) == (path, "directory", 0)
    assert fs.info("cat/datasets/D")["title"] == "Daily prices"
    assert fs.info(SERIES)["identifier"] == "20240102"
    dist = fs.info(f"{SERIES}/distributions/csv")
    assert (dist["type"], dist["size"], dist["checksum_algorithm"]) == ("file", 8, "SHA-256")


def test_walk_find_du_and_cat_of_a_collection(fs: FusionFileSystem) -> None:
    files = fs.find("cat/datasets/D")
    assert len(files) == 9 and all("/distributions/" in f for f in files)
    assert fs.du("cat/datasets/D/datasetseries") == 3 * (8 + 2 + 12)
    products = json.loads(fs.cat("cat/products"))
    assert [p["identifier"] for p in products["resources"]] == ["P1", "P2", "P3"]


def test_sync_helpers_return_typed_results(fs: FusionFileSystem) -> None:
    changes = fs.changes("cat", "D")
    assert len(changes) == 9
    first = changes[0]
    assert (first.series, first.format, first.size) == ("20240101", "csv", 8)
    assert len(first.digest) == 44 and not first.digest.startswith("SHA-256=")
    assert first.modified.endswith("Z")
    assert fs.changes("cat", "E") == []
    assert fs.product_datasets("cat", "P2") == ["D", "E"]
    assert fs.is_raw("cat", "E") is True and fs.is_raw("cat", "D") is False
