"""FusionFileSystem against a real server: listings, round trips, verification, tokens, errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import fsspec
import pytest

from fusionsync import AuthError, ChecksumError, FusionFileSystem, NotFoundError, TransferError
from fusionsync.catalog.digest import PART_SIZE
from tests.helpers import RunningServer, start_server
from tests.proxy import Proxy

DIST = "cat/datasets/D/datasetseries/20240101/distributions/csv"


@pytest.fixture
def fs(server: RunningServer) -> FusionFileSystem:
    server.create_dataset("cat", "D")
    return FusionFileSystem(credentials=str(server.credentials_file), range_size=4 * 2**20, max_ranges=4)


@pytest.mark.parametrize("size", [0, 1, PART_SIZE, PART_SIZE + 1, 40 * 2**20])
def test_round_trip_is_byte_identical(fs: FusionFileSystem, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src, dest = tmp_path / "src.bin", tmp_path / "out" / "dest.bin"
    src.write_bytes(data)
    dest.parent.mkdir()
    fs.put_file(str(src), DIST)
    fs.get_file(DIST, str(dest))
    assert dest.read_bytes() == data
    assert fs.info(DIST)["size"] == size
    assert os.listdir(dest.parent) == ["dest.bin"]


def test_ls_and_info_on_every_level_with_paging(fs: FusionFileSystem, server: RunningServer) -> None:
    for i in range(3):
        server.create_dataset("cat", f"E{i}")
        server.upload("cat", "D", f"2024010{i}", "csv", b"x" * (i + 1))
    assert fs.ls("", detail=False) == ["cat"]
    assert sorted(fs.ls("cat", detail=False)) == ["cat/datasets", "cat/products"]
    assert fs.ls("cat/datasets", detail=False) == [
        "cat/datasets/D",
        "cat/datasets/E0",
        "cat/datasets/E1",
        "cat/datasets/E2",
    ]
    series = fs.ls("cat/datasets/D/datasetseries", detail=False)
    assert series == [f"cat/datasets/D/datasetseries/2024010{i}" for i in range(3)]
    dists = fs.ls("cat/datasets/D/datasetseries/20240102/distributions")
    assert dists == [{"name": "cat/datasets/D/datasetseries/20240102/distributions/csv", "type": "file", "size": 3}]
    assert fs.info("cat/datasets/D")["isRawData"] is False
    assert fs.info("cat/datasets/D/datasetseries/20240102/distributions/csv")["size"] == 3
    assert fs.isdir("cat/datasets/D") and fs.isfile("cat/datasets/D/datasetseries/20240102/distributions/csv")
    assert fs.cat("cat/datasets/D/datasetseries/20240102/distributions/csv") == b"xxx"
    assert fs.cat_file("cat/datasets/D/datasetseries/20240102/distributions/csv", start=1, end=2) == b"x"
    changes = fs.dataset_changes("cat", "D")
    assert [(c.series, c.format, c.size) for c in changes] == [(f"2024010{i}", "csv", i + 1) for i in range(3)]
    assert not fs.exists("cat/datasets/NOPE")


def test_product_datasets_and_raw_flag(fs: FusionFileSystem, server: RunningServer) -> None:
    server.create_dataset("cat", "R", raw=True)
    server.create_product("cat", "P", ["D", "R"])
    assert fs.product_datasets("cat", "P") == ["D", "R"]
    assert fs.is_raw("cat", "R") and not fs.is_raw("cat", "D")


def test_corrupted_blob_fails_the_download_and_leaves_nothing(
    fs: FusionFileSystem, server: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(9 * 2**20)
    server.upload("cat", "D", "20240101", "csv", data)
    (blob,) = [p for p in (server.root / "blobs").rglob("*") if p.is_file()]
    corrupted = bytearray(data)
    corrupted[7 * 2**20] ^= 0xFF
    blob.write_bytes(bytes(corrupted))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ChecksumError, match="checksum"):
        fs.get_file(DIST, str(out / "dest.bin"))
    assert list(out.iterdir()) == []


def test_token_refresh_across_short_token_lifetimes(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root", "--token-ttl", "2")
    try:
        server.create_dataset("cat", "D")
        server.upload("cat", "D", "20240101", "csv", b"abc")
        fs = FusionFileSystem(credentials=str(server.credentials_file))
        for _ in range(3):
            assert fs.cat(DIST) == b"abc"
            time.sleep(1.5)
        assert fs.cat(DIST) == b"abc"
    finally:
        server.stop()


def test_memory_target_and_source(
    fs: FusionFileSystem, server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusionsync import fsync

    mem = fsspec.filesystem("memory")
    data = os.urandom(PART_SIZE + 10)
    mem.pipe("/pub/cat/D/20240101/D__cat__20240101.csv", data)
    with mem.open("/pub/cat/D/20240101/D__cat__20240101.csv", "rb") as fh:
        fs.put_file(fh, DIST)
    assert server.api("GET", "catalogs/" + DIST).body == data
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))
    report = fsync(
        fs,
        mem,
        datasets=["D"],
        catalog="cat",
        direction="download",
        local_path="memory://mirror/",
        show_progress=False,
        log_path=str(tmp_path),
        once=True,
    )
    assert report is not None and report.ok, report
    assert mem.cat("/mirror/cat/D/20240101/D__cat__20240101.csv") == data


def test_sdk_credentials_formats_and_the_entry_point(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "D")
    via_entry_point = fsspec.filesystem("fusion", credentials=str(server.credentials_file))
    assert isinstance(via_entry_point, FusionFileSystem)
    assert via_entry_point.ls("", detail=False) == ["cat"]
    bearer = tmp_path / "bearer.json"
    bearer.write_text(json.dumps({"grant_type": "bearer", "bearer_token": server.token(), "root_url": server.root_url}))
    assert FusionFileSystem(credentials=str(bearer)).ls("cat/datasets", detail=False) == ["cat/datasets/D"]
    assert FusionFileSystem(credentials=server.credentials()).ls("", detail=False) == ["cat"]


def test_errors_name_the_resource(fs: FusionFileSystem, server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(NotFoundError, match="NOPE"):
        fs.get_file("cat/datasets/D/datasetseries/NOPE/distributions/csv", str(out / "x"))
    wrong = server.credentials() | {"client_secret": "wrong"}
    with pytest.raises(AuthError, match="refused"):
        FusionFileSystem(credentials=wrong).ls("")
    assert list(out.iterdir()) == []


def test_503_with_retry_after_is_retried(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"payload")

    def downloads(method: str, path: str) -> bool:
        return method == "GET" and path.endswith("/operationType/download")

    with Proxy(server.base, downloads, refuse=2) as proxy:
        fs = FusionFileSystem(credentials=server.credentials() | {"root_url": proxy.base + "/api/v1/"})
        assert fs.cat(DIST) == b"payload"
    with Proxy(server.base, downloads, refuse=100) as proxy:
        fs = FusionFileSystem(credentials=server.credentials() | {"root_url": proxy.base + "/api/v1/"}, retries=2)
        with pytest.raises(TransferError, match="gave up after 3 tries"):
            fs.cat(DIST)
