"""Downloads and uploads (small and multipart) through every fault of a real misbehaving proxy.

Each case must end in one of two ways: the pass completes with byte-identical results (the fault
was retried away), or it reports the item failed and leaves the destination untouched. Either way
no partial file stands at a destination path, and the next pass, without the fault, converges.
The cases share one server per configuration, each case in a catalog of its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.report import SyncReport
from tests.faults.proxy import Fault, FaultProxy
from tests.helpers import RunningServer
from tests.sync_fixtures import local_files, payload, remote_bytes, sync_once, write_local

SMALL, BIG = 6000, 24 * 2**20  # a small answer is still long enough for every fault to land in its body
UPLOAD_BIG = 12 * 2**20
FAULTS = {
    "reset": dict(kind="reset", after=2000),
    "truncate": dict(kind="truncate", after=2000),
    "flip": dict(kind="flip", after=1000),
    "delay": dict(kind="delay", delay=0.01),
    "503": dict(kind="status", status=503),
    "429": dict(kind="status", status=429),
}
UPLOAD_FAULTS = {  # on the way up the request's body is cut or damaged; on the way back, the answer
    "reset-request": dict(kind="reset", after=2000, upstream=True),
    "truncate-request": dict(kind="truncate", after=2000, upstream=True),
    "flip-request": dict(kind="flip", after=500, upstream=True),
    "reset-answer": dict(kind="reset", after=100),
    "truncate-answer": dict(kind="truncate", after=100),
    "delay": FAULTS["delay"],
    "503": FAULTS["503"],
    "429": FAULTS["429"],
}


def is_transfer(direction: str):  # type: ignore[no-untyped-def]
    if direction == "download":
        return lambda method, path: method == "GET" and "/distributions/" in path
    return lambda method, path: method in ("PUT", "POST") and "/distributions/" in path


def run(
    server: RunningServer, proxy_root: str | None, root: Path, direction: str, tmp: Path, catalog: str
) -> SyncReport:
    creds = server.credentials() | ({"root_url": proxy_root} if proxy_root else {})
    fs = FusionFileSystem(credentials=creds, retries=3)
    try:
        report: SyncReport = sync_once(fs, root, tmp, catalog=catalog, datasets=["A"], direction=direction)
    finally:
        fs.close()
    return report


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def key(shared_server: RunningServer, unique_catalog: str) -> DistKey:
    """The case's distribution, in a dataset of a catalog of the case's own on the module's server."""
    shared_server.create_dataset(unique_catalog, "A")
    return DistKey(unique_catalog, "A", "20240101", "csv")


@pytest.mark.parametrize("size", [SMALL, BIG], ids=["small", "multipart"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_download_through_fault(
    shared_server: RunningServer, key: DistKey, tmp_path: Path, fault: str, size: int
) -> None:
    server = shared_server
    server.upload(key.catalog, "A", key.series, key.format, payload(key, size))
    root = tmp_path / "mirror"
    with FaultProxy(server.port, Fault(match=is_transfer("download"), **FAULTS[fault])) as proxy:  # type: ignore[arg-type]
        report = run(server, proxy.root_url, root, "download", tmp_path, key.catalog)
        assert proxy.injected == 1 and proxy.fired == 1
    files = local_files(root)
    if report.ok:
        assert files == {local_relative_path(key): payload(key, size)}
    else:
        assert files == {}, "a failed download leaves nothing behind"
        assert report.failed and report.failed[0].reason
    again = run(server, None, root, "download", tmp_path, key.catalog)
    assert again.ok and local_files(root) == {local_relative_path(key): payload(key, size)}
    record(f"download {'small' if size == SMALL else 'multipart'}", fault, report)


# Uploads also run against the scaled-out server (their parts and completions are server state: PostgreSQL, S3,
# two workers); a download's faults are the client's to handle, the same whatever stores the bytes.
@pytest.mark.scaled
@pytest.mark.parametrize("size", [SMALL, UPLOAD_BIG], ids=["small", "multipart"])
@pytest.mark.parametrize("fault", list(UPLOAD_FAULTS))
def test_upload_through_fault(
    shared_server: RunningServer, key: DistKey, tmp_path: Path, fault: str, size: int
) -> None:
    server = shared_server
    root = tmp_path / "pub"
    write_local(root, key, payload(key, size))
    spec = UPLOAD_FAULTS[fault]
    match = is_transfer("upload")
    if spec.get("upstream"):  # the first request that carries file bytes (a single upload or a part)
        match = lambda method, path: method == "PUT" and "/distributions/" in path  # noqa: E731
    with FaultProxy(server.port, Fault(match=match, **spec)) as proxy:  # type: ignore[arg-type]
        report = run(server, proxy.root_url, root, "upload", tmp_path, key.catalog)
        assert proxy.injected == 1 and proxy.fired == 1
    stored = remote_bytes(server, key)
    if report.ok:
        assert stored == payload(key, size)
    else:
        assert stored in (None, payload(key, size)), "a failed upload never stores wrong bytes"
        assert report.failed and report.failed[0].reason
    again = run(server, None, root, "upload", tmp_path, key.catalog)
    assert again.ok and remote_bytes(server, key) == payload(key, size)
    record(f"upload {'small' if size == SMALL else 'multipart'}", fault, report)


def record(operation: str, fault: str, report: SyncReport) -> None:
    """Append the outcome to FAULT_MATRIX_LOG when set (for the fault matrix table)."""
    import os

    target = os.environ.get("FAULT_MATRIX_LOG")
    if target:
        outcome = "retried, identical" if report.ok else f"failed, untouched: {report.failed[0].reason[:60]}"
        with open(target, "a") as fh:
            fh.write(json.dumps({"operation": operation, "fault": fault, "outcome": outcome, "t": time.time()}) + "\n")
