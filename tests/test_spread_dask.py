"""A real Dask cluster (``distributed.LocalCluster``: 2 worker processes on 127.0.0.1, one per module)
runs the transfers of syncs down into a folder and an S3 bucket (moto) and up again, and survives the
loss of a worker mid-sync."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusionsync import FusionFileSystem, fsync
from fusionsync.catalog.digest import PART_SIZE
from fusionsync.catalog.layout import local_relative_path
from tests.helpers import RunningServer, wait_for
from tests.proxy import Proxy
from tests.s3 import s3_filesystem
from tests.sync_fixtures import local_files, local_fs, no_temporaries, payload, remote_bytes, seed


@pytest.fixture(scope="module")
def dask_client(s3_endpoint: str) -> Iterator[Any]:
    """A client of a 2-worker LocalCluster (started after the S3 fixture set the environment its workers inherit)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


BIG = PART_SIZE + 2**20  # a multipart upload, resumable through the journal the caller keeps


def test_a_cluster_syncs_down_into_a_folder_and_a_bucket_and_up_again(
    server: RunningServer, dask_client: Any, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    keys = seed(server, "cat", {d: {f"2024010{i}": ["csv"] for i in range(1, 7)} for d in "AB"}, size=3000)
    big = seed(server, "cat", {"C": {"20240101": ["parquet"]}}, size=BIG)[0]
    sizes = {k: 3000 for k in keys} | {big: BIG}
    expected = {local_relative_path(k): payload(k, size) for k, size in sizes.items()}
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    folder = tmp_path / "mirror"
    s3 = s3_filesystem(s3_endpoint)

    def once(fs_local: Any, root: str, direction: str, executor: Any = dask_client) -> Any:
        return fsync(fs, fs_local, catalog="cat", datasets=["A", "B", "C"], direction=direction, local_path=root,
                     log_path=str(tmp_path), once=True, show_progress=False, executor=executor)  # fmt: skip

    for fs_local, root in [(local_fs(), str(folder)), (s3, f"s3://{s3_bucket}/mirror")]:
        down = once(fs_local, root, "download")
        assert down.ok and sorted(down.transferred) == sorted(expected)  # one report, each file once
        assert down.bytes == sum(sizes.values())
        again = once(fs_local, root, "download", executor=None)  # the cache holds what the workers wrote
        assert again.ok and again.transferred == [] and again.skipped == len(expected)
    assert local_files(folder) == expected and no_temporaries(folder)
    assert {p[len(s3_bucket) + 8 :]: s3.cat_file(p) for p in s3.find(f"{s3_bucket}/mirror")} == expected

    edited = {keys[0]: b"edited in the folder", big: payload(big, BIG, version=1)}
    for key, data in edited.items():
        (folder / local_relative_path(key)).write_bytes(data)
    up = once(local_fs(), str(folder), "upload", executor=dask_client.get_executor())
    assert up.ok and sorted(up.transferred) == sorted(local_relative_path(k) for k in edited)
    assert all(remote_bytes(server, key) == data for key, data in edited.items())
    again = once(local_fs(), str(folder), "upload")
    assert again.ok and again.transferred == [] and again.hashed == 0


def test_a_dead_worker_s_batches_run_on_another(server: RunningServer, dask_client: Any, tmp_path: Path) -> None:
    keys = seed(server, "cat", {d: {f"2024{i:04d}": ["csv"] for i in range(12)} for d in "AB"}, size=3000)
    expected = {local_relative_path(k): payload(k, 3000) for k in keys}
    folder = tmp_path / "mirror"

    def is_download(method: str, path: str) -> bool:
        return method == "GET" and "/distributions/" in path

    with Proxy(server.base, is_download, delay=0.1) as proxy:
        fs = FusionFileSystem(credentials=str(server.credentials_file), root_url=proxy.base + "/api/v1/")
        pids = list(dask_client.run(os.getpid).values())

        def kill_one() -> None:
            wait_for(lambda: any(p.is_file() and not p.name.startswith(".") for p in folder.rglob("*")), "files")
            os.kill(pids[0], signal.SIGKILL)

        killer = threading.Thread(target=kill_one)
        killer.start()
        report = fsync(fs, local_fs(), catalog="cat", datasets=["A", "B"], direction="download",
                       local_path=str(folder), log_path=str(tmp_path), once=True, show_progress=False, n_par=2,
                       executor=dask_client)  # fmt: skip
        killer.join()
    assert report.ok and sorted(report.transferred) == sorted(expected)
    final = {rel: data for rel, data in local_files(folder).items() if not rel.rsplit("/", 1)[-1].startswith(".")}
    assert final == expected
    dask_client.wait_for_workers(2, timeout=30)  # the nanny restarts it, for the module's other tests
    assert pids[0] not in dask_client.run(os.getpid).values()  # it did die, during the pass


def test_the_command_runs_its_transfers_on_a_scheduler(server: RunningServer, dask_client: Any, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    keys = seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 7)}}, size=3000)
    root = tmp_path / "mirror"
    done = subprocess.run(
        [sys.executable, "-m", "fusionsync", "sync", "download", "--local-path", str(root), "--catalog", "cat",
         "--dataset", "A", "--credentials", str(server.credentials_file), "--log-path", str(tmp_path), "--once",
         "--json", "--scheduler", dask_client.scheduler.address],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], done.stderr
    assert sorted(report["transferred"]) == sorted(local_relative_path(k) for k in keys)
    assert local_files(root) == {local_relative_path(k): payload(k, 3000) for k in keys}
    unreachable = subprocess.run(
        [sys.executable, "-m", "fusionsync", "sync", "download", "--local-path", str(root), "--catalog", "cat",
         "--dataset", "A", "--credentials", str(server.credentials_file), "--once", "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith("fusionsync: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert unreachable.stderr.count("\n") == 1
