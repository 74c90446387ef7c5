"""Interop with the official SDK's fsync: what one side uploads, the other downloads, byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest

from fusionsync import FusionFileSystem, UsageError, fsync
from fusionsync.catalog.layout import DistKey, local_relative_path
from tests.helpers import RunningServer
from tests.sync_fixtures import local_files, payload, seed, sync_once, write_local

SDK_FSYNC = textwrap.dedent(
    """
    import sys, fsspec
    from fusion import Fusion
    from fusion.credentials import FusionCredentials
    from fusion.fs_sync import fsync
    creds_file, root_url, direction, local_path, log_path = sys.argv[1:6]
    fusion = Fusion(credentials=FusionCredentials.from_file(creds_file), root_url=root_url)
    fsync(fusion.get_fusion_filesystem(), fsspec.filesystem("file"), datasets=["A"], catalog="cat",
          direction=direction, local_path=local_path, show_progress=False, log_path=log_path)
    """
)

pytestmark = pytest.mark.scaled


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def run_sdk_fsync_until(server: RunningServer, direction: str, root: Path, done: Callable[[], bool]) -> None:
    """The SDK's fsync never returns: run it in a child process and stop it once ``done()`` holds."""
    log_path = root.parent / "sdk-logs"
    log_path.mkdir(exist_ok=True)
    args = [str(server.credentials_file), server.root_url, direction, str(root) + "/", str(log_path)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SDK_FSYNC, *args],
        cwd=root.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 90
        while not done():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "SDK fsync exited"
            assert time.monotonic() < deadline, "SDK fsync did not finish in time"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.communicate()


KEYS = [DistKey("cat", "A", "20240101", "csv"), DistKey("cat", "A", "20240102", "csv")]
SIZES = [1000, 7 * 2**20]  # one single-request upload, one multipart


def test_what_we_upload_the_sdk_downloads(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "A")
    ours = tmp_path / "ours"
    for key, size in zip(KEYS, SIZES, strict=True):
        write_local(ours, key, payload(key, size))
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    report = sync_once(fs, ours, tmp_path, datasets=["A"], direction="upload")
    assert report.ok and len(report.transferred) == 2
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    expected = {local_relative_path(k): payload(k, s) for k, s in zip(KEYS, SIZES, strict=True)}
    run_sdk_fsync_until(server, "download", theirs, lambda: local_files(theirs) == expected)


def test_what_the_sdk_uploads_we_download(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "A")
    theirs = tmp_path / "theirs"
    for key, size in zip(KEYS, SIZES, strict=True):
        write_local(theirs, key, payload(key, size))
    listing = "catalogs/cat/datasets/changes?datasets=A"

    def published() -> bool:
        data = server.api("GET", listing).json()["datasets"]
        return bool(data) and len(data[0]["distributions"]) == 2

    run_sdk_fsync_until(server, "upload", theirs, published)
    ours = tmp_path / "ours"
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    report = sync_once(fs, ours, tmp_path, datasets=["A"], direction="download")
    assert report.ok
    assert local_files(ours) == {local_relative_path(k): payload(k, s) for k, s in zip(KEYS, SIZES, strict=True)}


# -- the SDK's own objects and mirrors, taken over by fusionsync.fsync ------------------------------------


def sdk_filesystem(server: RunningServer) -> Any:
    """``fusion.Fusion(...).get_fusion_filesystem()``: what an SDK user already holds."""
    from fusion import Fusion
    from fusion.credentials import FusionCredentials

    fusion = Fusion(credentials=FusionCredentials.from_file(server.credentials_file), root_url=server.root_url)
    return fusion.get_fusion_filesystem()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_the_sdk_filesystem_drives_our_fsync_both_ways_byte_identical(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the SDK makes a downloads folder and a log in the current one
    server.create_dataset("cat", "A")
    sdk_fs = sdk_filesystem(server)
    ours = tmp_path / "ours"
    expected = {local_relative_path(k): payload(k, s) for k, s in zip(KEYS, SIZES, strict=True)}
    for key, size in zip(KEYS, SIZES, strict=True):
        write_local(ours, key, payload(key, size))
    up = sync_once(sdk_fs, ours, tmp_path, datasets=["A"], direction="upload")
    assert up.ok and sorted(up.transferred) == sorted(expected)
    theirs = tmp_path / "theirs"
    down = sync_once(sdk_fs, theirs, tmp_path, datasets=["A"], direction="download")
    assert down.ok and local_files(theirs) == expected
    assert sync_once(sdk_fs, ours, tmp_path, datasets=["A"], direction="upload").transferred == []


def test_a_wrong_fs_fusion_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^fs_fusion must be a fusionsync FusionFileSystem.* not dict$"):
        sync_once({"root_url": "x"}, tmp_path, tmp_path, datasets=["A"], direction="download")
    with pytest.raises(UsageError, match=r"^fs_local must be the fsspec filesystem of the local side"):
        fsync(fsspec.filesystem("file"), "/tmp", datasets=["A"], once=True)


def test_any_fsspec_filesystem_serving_the_catalog_paths_is_a_remote(tmp_path: Path) -> None:
    """A plain tree of ``{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{format}``
    files (here in memory) is listed, digested, downloaded, uploaded and deleted through fsspec alone."""
    remote = fsspec.filesystem("memory")
    catalog = f"cat{uuid.uuid4().hex[:8]}"
    keys = [DistKey(catalog, "A", "20240101", "csv"), DistKey(catalog, "A", "20240102", "csv")]
    for key in keys:
        remote.pipe(key.remote_path, payload(key, 6 * 2**20 if key.series.endswith("2") else 100))
    try:
        mirror = tmp_path / "mirror"
        down = sync_once(remote, mirror, tmp_path, catalog=catalog, datasets=["A"], direction="download")
        assert down.ok and local_files(mirror) == {local_relative_path(k): remote.cat(k.remote_path) for k in keys}
        again = sync_once(remote, mirror, tmp_path, catalog=catalog, datasets=["A"], direction="download")
        assert again.transferred == [] and again.skipped == 2
        (mirror / local_relative_path(keys[0])).write_bytes(b"edited")
        (mirror / local_relative_path(keys[1])).unlink()
        up = sync_once(remote, mirror, tmp_path, catalog=catalog, datasets=["A"], direction="upload", delete=True)
        assert up.ok and up.transferred == [local_relative_path(keys[0])] and up.deleted == [keys[1].remote_path]
        assert remote.cat(keys[0].remote_path) == b"edited" and not remote.exists(keys[1].remote_path)
    finally:
        remote.rm(f"/{catalog}", recursive=True)


def wait_for_the_next_second(root: Path) -> None:
    """Until the clock is a second past the newest file under ``root`` (the listing's times are to the second)."""
    newest = max(p.stat().st_mtime for p in root.rglob("*") if p.is_file())
    while time.time() < newest + 1:
        time.sleep(0.05)


def test_a_mirror_the_sdk_made_is_adopted_without_a_false_conflict(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 5)}})
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    first = {local_relative_path(k): payload(k) for k in keys}
    run_sdk_fsync_until(server, "download", theirs, lambda: local_files(theirs) == first)
    changed, edited, same = keys[:2], keys[2], keys[3]
    copied = tmp_path / "copied"
    shutil.copytree(theirs, copied)  # a copy that keeps the files' times (cp -a, rsync -a)
    wait_for_the_next_second(theirs)
    (theirs / local_relative_path(edited)).write_bytes(b"edited here, after the server's version")
    for key in changed:  # upstream, after the SDK's pass
        assert server.upload("cat", "A", key.series, "csv", payload(key, version=1)).status == 200

    fs = FusionFileSystem(credentials=str(server.credentials_file))
    report = sync_once(fs, theirs, tmp_path, datasets=["A"], direction="download")
    assert sorted(report.transferred) == sorted(local_relative_path(k) for k in changed)
    assert [(c.path, c.reason.split(" (")[0]) for c in report.conflicts] == [
        (local_relative_path(edited), "never synced here, and modified")
    ]
    assert "after the server's version" in report.conflicts[0].reason
    assert local_files(theirs) == {
        **{local_relative_path(k): payload(k, version=1) for k in changed},
        local_relative_path(edited): b"edited here, after the server's version",
        local_relative_path(same): payload(same),
    }
    backup = tmp_path / "backup"
    taken = sync_once(fs, theirs, tmp_path, datasets=["A"], direction="download", backup_dir=str(backup))
    assert taken.ok and taken.transferred == [local_relative_path(edited)]
    assert [(b.path, b.backup) for b in taken.backups] == [
        (local_relative_path(edited), str(backup / local_relative_path(edited)))
    ]
    assert (backup / local_relative_path(edited)).read_bytes() == b"edited here, after the server's version"
    assert sync_once(fs, theirs, tmp_path, datasets=["A"], direction="download").transferred == []
    from_copy = sync_once(fs, copied, tmp_path, datasets=["A"], direction="download")
    assert from_copy.ok and sorted(from_copy.transferred) == sorted(local_relative_path(k) for k in changed)
