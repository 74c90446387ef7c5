"""The official SDK (pyfusion 5.0.1) as a client of our server: listings, upload, download, its filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from tests.api_doc import watch_for_internal_errors
from tests.helpers import RunningServer

pytestmark = [
    pytest.mark.scaled,
    pytest.mark.filterwarnings(
        # pandas and the SDK's own deprecations, and aiohttp's note on the SDK's in-memory upload bodies
        "ignore::DeprecationWarning",
        "ignore::FutureWarning",
        "ignore:Sending a large body directly:ResourceWarning",
    ),
]


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


@pytest.fixture
def fusion(server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fusion import Fusion
    from fusion.credentials import FusionCredentials

    monkeypatch.chdir(tmp_path)  # the SDK writes its log and default folders into the current one
    server.create_dataset("cat", "DS", raw=False)
    return Fusion(credentials=FusionCredentials.from_file(server.credentials_file), root_url=server.root_url)


def test_sdk_lists_uploads_and_downloads_byte_identical(fusion: Any, server: RunningServer, tmp_path: Path) -> None:
    assert list(fusion.list_catalogs()["identifier"]) == ["cat"]
    assert list(fusion.list_datasets(catalog="cat")["identifier"]) == ["DS"]
    sources = tmp_path / "sources"
    sources.mkdir()
    small = sources / "DS__cat__20240101.csv"
    small.write_bytes(b"a,b\n1,2\n")
    big = sources / "DS__cat__20240102.csv"
    big.write_bytes(os.urandom(12 * 2**20))  # three parts of a multipart upload
    named = sources / "DS__cat__20240103.csv"
    named.write_bytes(b"x,y\n3,4\n")
    for path, series in ((small, "20240101"), (big, "20240102")):
        failures = fusion.upload(path=str(path), dataset="DS", dt_str=series, catalog="cat", show_progress=False)
        assert not failures
    failures = fusion.upload(
        path=str(named),
        dataset="DS",
        dt_str="20240103",
        catalog="cat",
        show_progress=False,
        preserve_original_name=True,
    )
    assert not failures
    # three series members: more than one page (the fixture's page size is 2)
    assert list(fusion.list_datasetmembers("DS", catalog="cat")["identifier"]) == ["20240101", "20240102", "20240103"]
    assert list(fusion.list_distributions("DS", "20240102", catalog="cat")["identifier"]) == ["csv"]
    listing = server.api("GET", "catalogs/cat/datasets/changes?datasets=DS").json()["datasets"][0]["distributions"]
    rows = {row["key"]: row["values"] for row in listing}
    assert rows["DS/20240102/distribution.csv"][1:3] == [
        str(12 * 2**20),
        f"SHA-256={fsync_digest_of([big.read_bytes()])}",
    ]
    files = "catalogs/cat/datasets/DS/datasetseries/20240103/distributions/csv/files"
    assert [f["title"] for f in server.api("GET", files).json()["resources"]] == [named.name]
    out = tmp_path / "down"
    for series, source in (("20240101", small), ("20240102", big), ("20240103", named)):
        fusion.download(
            "DS", dt_str=series, dataset_format="csv", catalog="cat", show_progress=False, download_folder=str(out)
        )
        assert (out / source.name).read_bytes() == source.read_bytes(), series


def test_sdk_downloads_what_another_client_uploaded(fusion: Any, server: RunningServer, tmp_path: Path) -> None:
    content = os.urandom(6 * 2**20 + 3)
    assert server.upload("cat", "DS", "20240105", "csv", content).status == 200
    out = tmp_path / "down"
    fusion.download(
        "DS", dt_str="20240105", dataset_format="csv", catalog="cat", show_progress=False, download_folder=str(out)
    )
    assert (out / "DS__cat__20240105.csv").read_bytes() == content


def test_sdk_filesystem_lists_and_reads_the_change_listing(fusion: Any, server: RunningServer) -> None:
    server.upload("cat", "DS", "20240101", "csv", b"x,y\n")
    server.upload("cat", "DS", "20240102", "csv", b"x,y\n1,2\n")
    fs = fusion.get_fusion_filesystem()
    assert fs.ls("cat/datasets/DS/datasetseries") == [
        "cat/datasets/DS/datasetseries/20240101",
        "cat/datasets/DS/datasetseries/20240102",
    ]
    info = fs.info("cat/datasets/DS")
    rows = info["changes"]["datasets"][0]["distributions"]
    assert [r["key"] for r in rows] == ["DS/20240101/distribution.csv", "DS/20240102/distribution.csv"]
    assert [r["values"][1] for r in rows] == ["4", "8"]
    assert rows[0]["values"][2] == "SHA-256=" + fsync_digest_of([b"x,y\n"])
