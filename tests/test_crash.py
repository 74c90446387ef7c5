"""The server crashes (SIGKILL) in the middle of a sync pass, end to end.

The server is frozen (SIGSTOP) the moment bytes of a transfer are on their way, so the crash
falls inside a transfer, then killed. The pass must report every unfinished item failed in one
line, keep only whole, verified files (or nothing) at destination paths and no temporaries; after
a restart on the same root and port the catalog holds only complete versions, and the next pass
converges byte-identical.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.digest import FusionHasher
from fusionsync.catalog.layout import TEMP_MARK, DistKey, local_relative_path
from fusionsync.sync.report import SyncReport
from tests.helpers import RunningServer, start_server
from tests.sync_fixtures import (
    local_files,
    no_temporaries,
    payload,
    remote_bytes,
    seed,
    sync_once,
    write_local,
)

DOWNLOAD_SIZE = 8 * 2**20
UPLOAD_SIZE = 16 * 2**20  # four parts each


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def has_bytes(paths: list[Path]) -> bool:
    """Some of ``paths`` hold written bytes (they may vanish while we look)."""
    for path in paths:
        try:
            if path.stat().st_blocks > 0:
                return True
        except FileNotFoundError:
            continue
    return False


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{TEMP_MARK}*")] if root.exists() else []


def crash(server: RunningServer) -> None:
    """Freeze the server where it is (no answer can complete from now on), then SIGKILL it."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    server.kill()


def failed_lines(stderr: str) -> dict[str, str]:
    assert "Traceback" not in stderr, stderr
    lines = [line.removeprefix("failed: ") for line in stderr.splitlines() if line.startswith("failed: ")]
    return dict(line.split(": ", 1) for line in lines)


def test_server_killed_mid_download(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server-root")
    again: RunningServer | None = None
    try:
        keys = seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 7)}}, size=DOWNLOAD_SIZE)
        expected = {local_relative_path(k): payload(k, DOWNLOAD_SIZE) for k in keys}
        root = tmp_path / "mirror"
        command = [
            sys.executable, "-m", "fusionsync", "sync", "download", "--local-path", str(root), "--catalog", "cat",
            "--dataset", "A", "--credentials", str(server.credentials_file), "--log-path", str(tmp_path),
            "--once", "--no-progress", "--n-par", "2",
        ]  # fmt: skip
        sync = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: has_bytes(temporaries(root)), "a download to write bytes")
            crash(server)
            in_flight = temporaries(root)
            out, err = sync.communicate(timeout=60)
        finally:
            sync.kill()
            sync.wait()
        assert in_flight, "the crash fell inside a transfer"
        assert sync.returncode == 1, err
        failed = failed_lines(err)
        assert failed and set(failed) <= set(expected)
        waiting = f"not started: nothing answers at {server.root_url} any more (an earlier download gave up), "
        by_path = {local_relative_path(k): k for k in keys}
        for path, reason in failed.items():
            assert reason.startswith(waiting) or (by_path[path].remote_path in reason and "gave up after" in reason)
        gave_up = [r for r in failed.values() if not r.startswith(waiting)]
        assert 1 <= len(gave_up) <= 2 < len(failed), (
            "transfers waiting for their turn (--n-par 2) fail at once instead of each waiting through the retries"
        )
        assert f"transferred {len(expected) - len(failed)} files" in out
        for path, data in local_files(root).items():
            assert expected.get(path) == data, f"{path} is partial"
        assert no_temporaries(root)
        again = start_server(tmp_path / "server-root", port=server.port)
        redo = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert redo.returncode == 0, redo.stderr
        assert local_files(root) == expected
    finally:
        server.stop()
        if again is not None:
            again.stop()


def upload_once(server: RunningServer, root: Path, tmp_path: Path, retries: int) -> SyncReport:
    fs = FusionFileSystem(credentials=str(server.credentials_file), retries=retries)
    try:
        report: SyncReport = sync_once(fs, root, tmp_path, datasets=["A"], direction="upload", n_par=1)
    finally:
        fs.close()
    return report


def test_server_killed_mid_multipart_upload(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server-root")
    again: RunningServer | None = None
    try:
        keys = [DistKey("cat", "A", f"2024010{i}", "csv") for i in (1, 2, 3)]
        (first,) = seed(server, "cat", {"A": {"20240101": ["csv"]}}, size=UPLOAD_SIZE)  # version 0 is published
        root = tmp_path / "pub"
        new = {k: payload(k, UPLOAD_SIZE, version=1) for k in keys}
        later = time.time() + 2  # edited after the published version (the listing gives times to the second)
        for key, data in new.items():
            os.utime(write_local(root, key, data), (later, later))
        reports: list[SyncReport] = []
        sync = threading.Thread(target=lambda: reports.append(upload_once(server, root, tmp_path, retries=2)))
        sync.start()
        try:
            parts = server.root / "tmp"
            wait_for(lambda: has_bytes(list(parts.glob("op-*"))), "a part to arrive")
            crash(server)
        finally:
            sync.join(60)
        (report,) = reports
        by_path = {local_relative_path(k): k for k in keys}
        done = [by_path[p] for p in report.transferred]  # complete before the crash (normally none)
        cut_off, *waiting = report.failed
        assert [f.path for f in report.failed] == sorted(set(by_path) - set(report.transferred))
        assert by_path[cut_off.path].remote_path in cut_off.reason and "gave up after 3 tries" in cut_off.reason
        not_started = f"not started: nothing answers at {server.root_url} any more (an earlier upload gave up), "
        assert waiting and all(w.reason.startswith(not_started) for w in waiting)

        again = start_server(tmp_path / "server-root", port=server.port)
        reader = FusionFileSystem(credentials=str(again.credentials_file))
        try:
            listed = {DistKey("cat", "A", d.series, d.format): d for d in reader.changes("cat", "A")}
        finally:
            reader.close()
        assert set(listed) == {first, *done}, "what was not completed is not published"
        for key, dist in listed.items():
            stored = remote_bytes(again, key)
            assert stored is not None and stored == (new[key] if key in done else payload(first, UPLOAD_SIZE)), key
            hasher = FusionHasher()
            hasher.update(stored)
            assert (dist.size, dist.digest) == (len(stored), hasher.fsync_digest()), "the listing matches the bytes"

        report = upload_once(again, root, tmp_path, retries=2)
        assert report.ok and sorted(report.transferred) == sorted(local_relative_path(k) for k in keys if k not in done)
        assert {k: remote_bytes(again, k) for k in keys} == new
    finally:
        server.stop()
        if again is not None:
            again.stop()
