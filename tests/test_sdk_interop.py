"""The official SDK (pyfusion) as a client of our server: list, upload, download, its filesystem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RunningServer

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:Sending a large body directly:ResourceWarning"
)


@pytest.fixture
def fusion(server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fusion import Fusion
    from fusion.credentials import FusionCredentials

    monkeypatch.chdir(tmp_path)  # the SDK writes its log and default folders into the current one
    server.create_dataset("cat", "DS")
    return Fusion(credentials=FusionCredentials.from_file(server.credentials_file), root_url=server.root_url)


def test_sdk_lists_uploads_and_downloads_byte_identical(fusion: Any, tmp_path: Path) -> None:
    assert list(fusion.list_catalogs()["identifier"]) == ["cat"]
    assert list(fusion.list_datasets(catalog="cat")["identifier"]) == ["DS"]
    small = tmp_path / "DS__cat__20240101.csv"
    small.write_bytes(b"a,b\n1,2\n")
    big = tmp_path / "DS__cat__20240102.csv"
    big.write_bytes(os.urandom(12 * 2**20))
    for path, series in ((small, "20240101"), (big, "20240102")):
        failures = fusion.upload(path=str(path), dataset="DS", dt_str=series, catalog="cat", show_progress=False)
        assert not failures
    assert list(fusion.list_datasetmembers("DS", catalog="cat")["identifier"]) == ["20240101", "20240102"]
    assert list(fusion.list_distributions("DS", "20240102", catalog="cat")["identifier"]) == ["csv"]
    out = tmp_path / "down"
    for series, source in (("20240101", small), ("20240102", big)):
        fusion.download(
            "DS", dt_str=series, dataset_format="csv", catalog="cat", show_progress=False, download_folder=str(out)
        )
        assert (out / source.name).read_bytes() == source.read_bytes()


def test_sdk_filesystem_lists_and_reads_the_change_listing(fusion: Any, server: RunningServer) -> None:
    server.upload("cat", "DS", "20240101", "csv", b"x,y\n")
    fs = fusion.get_fusion_filesystem()
    assert fs.ls("cat/datasets/DS/datasetseries") == ["cat/datasets/DS/datasetseries/20240101"]
    info = fs.info("cat/datasets/DS")
    rows = info["changes"]["datasets"][0]["distributions"]
    assert [r["key"] for r in rows] == ["DS/20240101/distribution.csv"] and rows[0]["values"][1] == "4"
