"""Interop with the official SDK's fsync: what one side uploads, the other downloads, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.layout import DistKey, local_relative_path
from tests.helpers import RunningServer
from tests.sync_fixtures import local_files, payload, sync_once, write_local

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
