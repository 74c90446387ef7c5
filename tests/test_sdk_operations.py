"""Every public operation of the official SDK (pyfusion 5.0.1) that reads or writes catalog metadata or data,
driven against one real server and checked by reading the result back (bytes, metadata, listings).

One server for the module: each test works in a catalog of its own.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fusionsync.catalog.digest import fsync_digest_of
from tests.api_doc import internal_errors
from tests.conftest import Storage
from tests.helpers import RunningServer, start_server

pytestmark = [
    pytest.mark.scaled,
    pytest.mark.filterwarnings(
        "ignore::DeprecationWarning",
        "ignore::FutureWarning",
        "ignore:Sending a large body directly:ResourceWarning",
        "ignore:\\s*A value is trying to be set on a copy",  # pandas, inside the SDK's list_products
    ),
]
_serial = itertools.count()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("sdk") / "root", "--page-size", "2", *storage())
    yield server
    server.stop()
    assert internal_errors(server.log) == [], "the server answered 500"


@pytest.fixture
def cat(shared: RunningServer) -> str:
    """A catalog of the test's own, with datasets D (csv data) and E."""
    catalog = f"c{next(_serial)}"
    shared.create_dataset(catalog, "D", raw=False, title="Dee")
    shared.create_dataset(catalog, "E", raw=False)
    return catalog


@pytest.fixture
def fusion(shared: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fusion import Fusion
    from fusion.credentials import FusionCredentials

    monkeypatch.chdir(tmp_path)
    creds = FusionCredentials.from_file(shared.credentials_file)
    return Fusion(credentials=creds, root_url=shared.root_url, download_folder=str(tmp_path / "downloads"))


def put(fusion: Any, tmp_path: Path, cat: str, dataset: str, series: str, data: bytes, **kw: Any) -> None:
    path = tmp_path / f"{dataset}__{cat}__{series}.csv"
    path.write_bytes(data)
    assert not fusion.upload(str(path), dataset=dataset, dt_str=series, catalog=cat, show_progress=False, **kw)


def test_latest_and_date_ranges_download_to_df_and_to_table(fusion: Any, cat: str, tmp_path: Path) -> None:
    for day in ("20240101", "20240102", "20240103"):
        put(fusion, tmp_path, cat, "D", day, f"day,value\n{day},{day[-1]}\n".encode())
    out = tmp_path / "latest"
    res = fusion.download(
        "D", dataset_format="csv", catalog=cat, show_progress=False, download_folder=str(out), return_paths=True
    )  # dt_str="latest", the default
    assert [Path(r[1]).name for r in res if r[0]] == [f"D__{cat}__20240103.csv"]
    frame = fusion.to_df("D", dataset_format="csv", catalog=cat, show_progress=False)
    assert list(frame["value"]) == [3]
    ranged = fusion.to_df("D", "20240101:20240102", dataset_format="csv", catalog=cat, show_progress=False)
    assert sorted(ranged["value"]) == [1, 2]
    table = fusion.to_table("D", "2024-01-02:2024-01-03", dataset_format="csv", catalog=cat, show_progress=False)
    assert sorted(table.column("value").to_pylist()) == [2, 3]
    assert fusion.to_bytes("D", "20240102", dataset_format="csv", catalog=cat).getvalue() == b"day,value\n20240102,2\n"


def test_the_sample_uploads_and_downloads(fusion: Any, cat: str, tmp_path: Path, shared: RunningServer) -> None:
    put(fusion, tmp_path, cat, "D", "sample", b"a,b\n1,2\n")
    assert shared.api("GET", f"catalogs/{cat}/datasets/D/sample/distributions/csv").body == b"a,b\n1,2\n"
    out = tmp_path / "sample"
    fusion.download("D", "sample", dataset_format="csv", catalog=cat, show_progress=False, download_folder=str(out))
    assert (out / f"D__{cat}__sample.csv").read_bytes() == b"a,b\n1,2\n"
    assert list(fusion.to_df("D", "sample", catalog=cat, show_progress=False)["b"]) == [2]


def test_series_dates_come_from_the_upload(fusion: Any, cat: str, tmp_path: Path) -> None:
    put(fusion, tmp_path, cat, "D", "20240105", b"a\n1\n", from_date="2024-01-01", to_date="2024-01-05")
    member = fusion.list_datasetmembers("D", catalog=cat).iloc[0]
    assert (member["fromDate"], member["toDate"], member["@id"]) == ("2024-01-01", "2024-01-05", "20240105/")
    files = fusion.list_distribution_files("D", "20240105/", "csv", catalog=cat)  # a path built from that @id
    assert list(files["identifier"]) == ["csv"]


def test_multipart_uploads_with_larger_parts(fusion: Any, cat: str, tmp_path: Path, shared: RunningServer) -> None:
    data = os.urandom(17 * 2**20 + 5)
    put(fusion, tmp_path, cat, "D", "20240101", data, chunk_size=8 * 2**20)
    assert shared.api("GET", f"catalogs/{cat}/datasets/D/datasetseries/20240101/distributions/csv").body == data
    rows = shared.api("GET", f"catalogs/{cat}/datasets/changes?datasets=D").json()["datasets"][0]["distributions"]
    assert rows[0]["values"][2] == f"SHA-256={fsync_digest_of([data])}"
    buffer = io.BytesIO(os.urandom(6 * 2**20))
    fusion.from_bytes(buffer, "E", "20240102", catalog=cat, distribution="csv", show_progress=False)
    got = fusion.to_bytes("E", "20240102", dataset_format="csv", catalog=cat).getvalue()
    assert got == buffer.getvalue()


def test_dataset_and_product_objects(fusion: Any, cat: str, shared: RunningServer) -> None:
    fusion.product("P", title="Prod").create(catalog=cat)
    fusion.dataset("F", title="Eff", product="P", is_raw_data=False).create(catalog=cat)
    fusion.product("Q", dataset=["D", "E"]).create(catalog=cat)
    mapping = fusion.list_product_dataset_mapping(catalog=cat)
    assert sorted(zip(mapping["product"], mapping["dataset"], strict=True)) == [("P", "F"), ("Q", "D"), ("Q", "E")]
    assert [r["identifier"] for r in shared.api("GET", f"catalogs/{cat}/products/Q").json()["resources"]] == ["D", "E"]
    assert list(fusion.list_datasets(catalog=cat, product="Q")["identifier"]) == ["D", "E"]
    assert set(fusion.list_products(catalog=cat)["identifier"]) == {"P", "Q"}
    with pytest.raises(requests.HTTPError) as missing:
        fusion.dataset("NOPE").update(catalog=cat)
    assert missing.value.response.status_code == 404
    assert shared.api("GET", f"catalogs/{cat}/datasets/NOPE").status == 404
    found = fusion.dataset("F").from_catalog(catalog=cat)
    assert found.title == "Eff" and found.product == ["P"]
    found.description = "changed"
    found.update(catalog=cat)
    assert fusion.list_datasets("F", catalog=cat)["description"].iloc[0] == "changed"
    fusion.dataset("F").activate(catalog=cat)
    fusion.dataset("E").add_to_product("P", catalog=cat)
    fusion.dataset("E").remove_from_product("Q", catalog=cat)
    mapping = fusion.list_product_dataset_mapping(catalog=cat, product="P")
    assert sorted(mapping["dataset"]) == ["E", "F"]
    product = fusion.product("P").from_catalog(catalog=cat)
    product.description = "p"
    product.update(catalog=cat)
    assert fusion.list_products("P", catalog=cat)["description"].iloc[0] == "p"
    fusion.product("P").delete(catalog=cat)
    fusion.dataset("F").delete(catalog=cat)
    assert set(fusion.list_datasets(catalog=cat)["identifier"]) == {"D", "E"}
    assert list(fusion.list_products(catalog=cat)["identifier"]) == ["Q"]


def test_copying_a_dataset_to_another_catalog(fusion: Any, cat: str, shared: RunningServer) -> None:
    shared.create_catalog(cat + "x")
    fusion.dataset("D").copy(catalog_to=cat + "x", catalog_from=cat)
    assert fusion.list_datasets(catalog=cat + "x")["title"].iloc[0] == "Dee"


def test_attributes(fusion: Any, cat: str, shared: RunningServer) -> None:
    fusion.attribute("b", index=1, data_type="Integer").create(dataset="D", catalog=cat)
    fusion.attribute("a", index=0, title="Ay").create(dataset="D", catalog=cat)
    listed = fusion.list_dataset_attributes("D", catalog=cat)
    assert list(listed["identifier"]) == ["a", "b"] and list(listed["dataType"]) == ["String", "Integer"]
    fusion.attribute("b", index=1).delete(dataset="D", catalog=cat)
    assert list(fusion.list_dataset_attributes("D", catalog=cat)["identifier"]) == ["a"]
    attrs = fusion.attributes([fusion.attribute("x", index=0), fusion.attribute("y", index=1, is_dataset_key=True)])
    attrs.create(dataset="E", catalog=cat)
    back = fusion.attributes().from_catalog(dataset="E", catalog=cat)
    assert [(a.identifier, a.is_dataset_key) for a in back.attributes] == [("x", False), ("y", True)]
    back.create(dataset="D", catalog=cat)  # replaces D's attributes
    assert list(fusion.list_dataset_attributes("D", catalog=cat)["identifier"]) == ["x", "y"]
    back.delete(dataset="D", catalog=cat)
    assert shared.api("GET", f"catalogs/{cat}/datasets/D/attributes").json()["resources"] == []
    registered = [fusion.attribute(n, index=i, application_id="app1", publisher="Pub") for i, n in enumerate("pq")]
    fusion.attributes(registered).create(catalog=cat)
    assert list(fusion.list_registered_attributes(catalog=cat)["identifier"]) == ["p", "q"]
    registered[0].set_lineage([registered[1]], catalog=cat)
    lineage = shared.api("GET", f"catalogs/{cat}/attributes/lineage").json()
    app = {"id": "app1", "type": "Application (SEAL)"}  # as the SDK sends an application id
    assert lineage == [
        {
            "source": {"catalog": cat, "attribute": "p", "applicationId": app},
            "targets": [{"catalog": cat, "attribute": "q", "applicationId": app}],
        }
    ]


def test_dataset_lineage(fusion: Any, cat: str) -> None:
    fusion.create_dataset_lineage("E", [{"dataset": "D", "catalog": cat}], catalog=cat)
    lineage = fusion.list_dataset_lineage("E", catalog=cat)
    assert lineage.to_dict("records") == [{"type": "source", "dataset_identifier": "D", "title": "Dee", "catalog": cat}]
    assert list(fusion.list_dataset_lineage("D", catalog=cat)["type"]) == ["produced"]


def test_deleting_dataset_members(fusion: Any, cat: str, tmp_path: Path, shared: RunningServer) -> None:
    from fusion.exceptions import APIResponseError

    for day in ("20240101", "20240102", "20240103"):
        put(fusion, tmp_path, cat, "D", day, b"a\n1\n")
    fusion.delete_datasetmembers("D", "20240101", catalog=cat)
    assert list(fusion.list_datasetmembers("D", catalog=cat)["identifier"]) == ["20240102", "20240103"]
    fusion.delete_all_datasetmembers("D", catalog=cat)
    with pytest.raises(APIResponseError, match="No data found"):  # the SDK's answer to an empty listing
        fusion.list_datasetmembers("D", catalog=cat)
    assert shared.api("GET", f"catalogs/{cat}/datasets/D/datasetseries").json()["resources"] == []
    assert fusion.list_datasetmembers_distributions("D", catalog=cat).empty


def test_listings_and_resources(fusion: Any, cat: str, tmp_path: Path) -> None:
    put(fusion, tmp_path, cat, "D", "20240101", b"a\n1\n")
    assert cat in set(fusion.list_catalogs()["identifier"])
    assert list(fusion.catalog_resources(cat)["identifier"]) == ["datasets", "products"]
    assert list(fusion.dataset_resources("D", catalog=cat)["identifier"]) == ["datasetseries"]
    assert list(fusion.datasetmember_resources("D", "20240101", catalog=cat)["identifier"]) == ["distributions"]
    assert list(fusion.list_distributions("D", "20240101", catalog=cat)["identifier"]) == ["csv"]
    members = fusion.list_datasetmembers_distributions("D", catalog=cat)
    assert members.to_dict("records") == [{"identifier": "20240101", "format": "csv"}]
    assert fusion.list_datasets("D", catalog=cat)["title"].iloc[0] == "Dee"  # an exact match


def test_the_sdk_filesystem_sees_catalogs_and_datasets_as_folders(fusion: Any, cat: str, tmp_path: Path) -> None:
    put(fusion, tmp_path, cat, "D", "20240101", b"a\n1\n")
    fs = fusion.get_fusion_filesystem()
    for folder in (cat, f"{cat}/datasets", f"{cat}/datasets/D", f"{cat}/datasets/D/datasetseries/20240101"):
        assert fs.isdir(folder), folder
        assert fs.info(folder)["type"] == "directory", folder
    dist = f"{cat}/datasets/D/datasetseries/20240101/distributions/csv"
    assert not fs.isdir(dist) and fs.info(dist)["size"] == 4
    assert fs.ls(f"{cat}/datasets") == [f"{cat}/datasets/D", f"{cat}/datasets/E"]
    assert fs.exists(f"{cat}/datasets/D") and not fs.exists(f"{cat}/datasets/NOPE")
    assert fs.cat(dist) == b"a\n1\n"
