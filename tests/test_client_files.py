"""FusionFileSystem as fsspec users see it: open(), fusion:// URLs, other filesystems on the other end."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import fsspec
import pytest

from fusionsync import FusionFileSystem, UsageError
from fusionsync.catalog.digest import PART_SIZE
from tests.helpers import RunningServer
from tests.proxy import Proxy

DIST = "cat/datasets/D/datasetseries/20240101/distributions/csv"


@pytest.fixture
def fs(server: RunningServer) -> FusionFileSystem:
    server.create_dataset("cat", "D")
    return FusionFileSystem(credentials=str(server.credentials_file), range_size=2 * 2**20, max_ranges=4)


def test_open_reads_with_ranges_and_seeks(fs: FusionFileSystem, server: RunningServer) -> None:
    data = os.urandom(PART_SIZE + 12345)
    server.upload("cat", "D", "20240101", "csv", data)
    with fs.open(DIST, block_size=2**20) as fh:
        assert fh.size == len(data)
        assert fh.read(10) == data[:10]
        fh.seek(PART_SIZE)
        assert fh.read(100) == data[PART_SIZE : PART_SIZE + 100]
        fh.seek(-5, 2)
        assert fh.read() == data[-5:]
    with fsspec.open(f"fusion://{DIST}", credentials=str(server.credentials_file)) as fh:
        assert fh.read() == data
    assert fs.cat_file(DIST, start=-3) == data[-3:]
    assert fs.cat_file(DIST, start=len(data) + 10, end=len(data) + 20) == b""
    with pytest.raises(UsageError, match="not a distribution"):
        fs.open("cat/datasets/D")


@pytest.mark.parametrize("size", [3, 2 * PART_SIZE + 7])
def test_open_for_writing_uploads_on_close(fs: FusionFileSystem, size: int) -> None:
    data = os.urandom(size)
    with fs.open(DIST, "wb", block_size=PART_SIZE) as fh:
        for i in range(0, size, 3 * 2**20):
            fh.write(data[i : i + 3 * 2**20])
        assert not fs.exists(DIST)  # nothing appears before close
    assert fs.cat(DIST) == data
    (change,) = fs.changes("cat", "D")
    assert (change.series, change.format, change.size) == ("20240101", "csv", size)


def test_a_failed_write_uploads_nothing(fs: FusionFileSystem) -> None:
    with pytest.raises(RuntimeError, match="boom"), fs.open(DIST, "wb") as fh:
        fh.write(b"half of it")
        raise RuntimeError("boom")
    assert not fs.exists(DIST)


def test_download_into_an_open_file_of_another_filesystem(fs: FusionFileSystem, server: RunningServer) -> None:
    data = os.urandom(PART_SIZE * 2 + 1)
    server.upload("cat", "D", "20240101", "csv", data)
    mem = fsspec.filesystem("memory")
    with mem.open("/target/copy.csv", "wb") as out:
        fs.get_file(DIST, out)
    assert mem.cat("/target/copy.csv") == data


def test_generic_copy_between_fusion_and_memory(fs: FusionFileSystem, server: RunningServer) -> None:
    from fsspec.generic import GenericFileSystem

    mem = fsspec.filesystem("memory")
    data = os.urandom(PART_SIZE + 3)
    mem.pipe("/src/D__cat__20240101.csv", data)
    options = {"fusion": {"credentials": str(server.credentials_file)}}
    generic = GenericFileSystem(default_method="options", storage_options=options)
    generic.cp_file("memory:///src/D__cat__20240101.csv", f"fusion://{DIST}")
    generic.cp_file(f"fusion://{DIST}", "memory:///back/copy.csv")
    assert mem.cat("/back/copy.csv") == data


def test_get_creates_the_destination_folder_and_the_fsspec_get(
    fs: FusionFileSystem, server: RunningServer, tmp_path: Path
) -> None:
    server.upload("cat", "D", "20240101", "csv", b"a,b\n")
    server.upload("cat", "D", "20240101", "parquet", b"PAR1")
    fs.get_file(DIST, str(tmp_path / "new" / "folder" / "x.csv"))
    assert (tmp_path / "new" / "folder" / "x.csv").read_bytes() == b"a,b\n"
    fs.get("cat/datasets/D/datasetseries/20240101/distributions", str(tmp_path / "all"), recursive=True)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["csv", "parquet"]


def test_listing_sizes_come_from_the_change_listing_when_missing(
    fs: FusionFileSystem, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.upload("cat", "D", "20240101", "csv", b"12345")
    server.upload("cat", "D", "20240101", "json", b"{}")
    real = fs.http.collection

    async def without_sizes(path: str, what: str) -> tuple[dict[str, Any], list[Any]]:
        first, items = await real(path, what)
        return first, [{k: v for k, v in item.items() if k != "size"} for item in items]

    monkeypatch.setattr(fs.http, "collection", without_sizes)
    listing = fs.ls("cat/datasets/D/datasetseries/20240101/distributions")
    assert {e["name"].rsplit("/", 1)[1]: e["size"] for e in listing} == {"csv": 5, "json": 2}


# The test proxy forwards each request body as one bytes object, which aiohttp warns about above 1 MiB.
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_parallel_ranges_parts_and_one_fusion_token_per_dataset(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "D")
    data = os.urandom(8 * PART_SIZE)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    def transfers(method: str, path: str) -> bool:
        return "/distributions/" in path and method in ("GET", "PUT")

    with Proxy(server.base, transfers, delay=0.05) as proxy:
        fs = FusionFileSystem(
            credentials=server.credentials(), root_url=proxy.base + "/api/v1/", range_size=2**20 * 4, max_ranges=4
        )
        fs.put_file(str(src), DIST)
        assert proxy.seen.max_in_flight > 1  # parts went in parallel
        proxy.seen.max_in_flight = 0
        fs.get_file(DIST, str(tmp_path / "out.bin"))
        assert 1 < proxy.seen.max_in_flight <= 4  # ranges went in parallel, bounded
        tokens = [p for _, p in proxy.seen.requests if p.endswith("/authorize/token")]
        assert len(tokens) == 1
    assert (tmp_path / "out.bin").read_bytes() == data


def test_asynchronous_use_inside_a_running_loop(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "D")
    payloads = {f"2024010{i}": os.urandom(i * 1000) for i in range(1, 4)}
    for series, data in payloads.items():
        (tmp_path / series).write_bytes(data)

    async def main() -> None:
        async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as afs:
            dist = "cat/datasets/D/datasetseries/{}/distributions/csv"
            await asyncio.gather(*(afs._put_file(str(tmp_path / s), dist.format(s)) for s in payloads))
            names = await afs._ls("cat/datasets/D/datasetseries", detail=False)
            assert names == [f"cat/datasets/D/datasetseries/{s}" for s in payloads]
            changes = await afs.list_distributions("cat", "D")
            assert {c.series: c.size for c in changes} == {s: len(d) for s, d in payloads.items()}
            await asyncio.gather(*(afs._get_file(dist.format(s), str(tmp_path / f"{s}.out")) for s in payloads))

    asyncio.run(main())
    for series, data in payloads.items():
        assert (tmp_path / f"{series}.out").read_bytes() == data


def test_missing_resources_are_file_not_found_for_fsspec(fs: FusionFileSystem) -> None:
    missing = "cat/datasets/D/datasetseries/20991231/distributions/csv"
    assert not fs.isdir("cat/datasets/NOPE") and not fs.isfile(missing) and not fs.exists(missing)
    with pytest.raises(FileNotFoundError, match="20991231"):
        fs.info(missing)
    with pytest.raises(FileNotFoundError, match="NOPE"):
        fs.ls("cat/datasets/NOPE/datasetseries")


def test_an_asynchronous_filesystem_serves_one_loop_after_another(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"twice")
    afs = FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True)

    async def read() -> bytes:
        async with afs:
            data: bytes = await afs._cat_file(DIST)
            return data

    assert asyncio.run(read()) == b"twice"
    assert asyncio.run(read()) == b"twice"  # a new pool and new token locks for the new loop
