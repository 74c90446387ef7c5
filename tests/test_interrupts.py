"""Signals at any moment of a sync (the scan, transfers, between passes), from the CLI and the Python API:
the pass stops, its report is printed (interrupted), exit 130 for SIGINT and 143 for SIGTERM, no
traceback. And what continuous mode prints: one line (or JSON object) per pass that did something."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO

import pytest

from fusionsync.catalog.layout import local_relative_path
from tests.helpers import RunningServer, Start, wait_for
from tests.proxy import Proxy
from tests.sync_fixtures import local_files, payload, seed


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def sync_command(creds: Path, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "fusionsync", "sync", "download", "--local-path", str(root), "--catalog", "cat",
        "--dataset", "A", "--credentials", str(creds), "--log-path", str(root.parent), "--no-progress", *extra,
    ]  # fmt: skip


def proxied_credentials(server: RunningServer, proxy: Proxy, tmp_path: Path) -> Path:
    creds = tmp_path / "proxied.json"
    creds.write_text(json.dumps(server.credentials() | {"root_url": proxy.base + "/api/v1/"}))
    return creds


def read_line(stream: IO[str] | None) -> str:
    assert stream is not None
    line = stream.readline()
    assert line, "the process ended without printing a line"
    return line


def clean_exit(proc: subprocess.Popen[str], code: int) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == code, err
    assert "Traceback" not in err and "never retrieved" not in err, err
    return out, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_scan_stops_the_pass_with_its_report(
    server: RunningServer, tmp_path: Path, start: Start, signum: int
) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    with Proxy(server.base, lambda method, path: path.endswith("/changes"), delay=3) as proxy:
        proc = start(sync_command(proxied_credentials(server, proxy, tmp_path), tmp_path / "m", "--once", "--json"))
        wait_for(lambda: proxy.seen.in_flight > 0)
        started = time.monotonic()
        proc.send_signal(signum)
        out, _ = clean_exit(proc, 128 + signum)
        assert time.monotonic() - started < 2, "the listing is not waited for"
    report = json.loads(out)
    assert report["interrupted"] is True and report["interrupted_by"] == signal.Signals(signum).name
    assert report["transferred"] == [] and not (tmp_path / "m").exists()


def test_sigint_during_transfers_in_continuous_mode(server: RunningServer, tmp_path: Path, start: Start) -> None:
    (first,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "m"
    slow = {"on": False}

    def watched(method: str, path: str) -> bool:
        return slow["on"] and method == "GET" and "/distributions/" in path

    with Proxy(server.base, watched, delay=3) as proxy:
        proc = start(sync_command(proxied_credentials(server, proxy, tmp_path), root, "--interval", "0.2", "--json"))
        assert json.loads(read_line(proc.stdout))["transferred"] == [local_relative_path(first)]
        slow["on"] = True
        keys = seed(server, "cat", {"A": {"20240102": ["csv"], "20240103": ["csv"]}}, size=3 * 2**20)
        wait_for(lambda: proxy.seen.in_flight > 0)
        proc.send_signal(signal.SIGINT)
        out, _ = clean_exit(proc, 130)
    (last,) = [json.loads(line) for line in out.splitlines()]
    assert last["interrupted"] is True and last["interrupted_by"] == "SIGINT" and last["transferred"] == []
    assert local_files(root) == {local_relative_path(first): payload(first)}, "no partial file, no temporary"
    assert not any(local_relative_path(k) in local_files(root) for k in keys)


def test_continuous_mode_prints_passes_that_did_something_and_a_conflict_once(
    server: RunningServer, tmp_path: Path, start: Start
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "m"
    path = root / local_relative_path(key)
    proc = start(sync_command(server.credentials_file, root, "--interval", "0.1", "--json"))
    first = json.loads(read_line(proc.stdout))
    assert first["transferred"] == [local_relative_path(key)]
    path.write_bytes(b"my edit")
    assert server.upload("cat", "A", key.series, "csv", payload(key, version=2)).status == 200
    conflict = json.loads(read_line(proc.stdout))
    assert [c["path"] for c in conflict["conflicts"]] == [local_relative_path(key)]
    time.sleep(1.5)  # a dozen more passes, each with the same conflict: nothing new to print
    (new,) = seed(server, "cat", {"A": {"20240102": ["csv"]}})
    news = json.loads(read_line(proc.stdout))
    assert news["transferred"] == [local_relative_path(new)] and news["conflicts"] == conflict["conflicts"]
    proc.send_signal(signal.SIGTERM)
    out, _ = clean_exit(proc, 143)
    (last,) = [json.loads(line) for line in out.splitlines()]  # between passes: an empty, interrupted report
    assert last["interrupted_by"] == "SIGTERM" and last["transferred"] == [] and last["planned"] == {}
    assert path.read_bytes() == b"my edit"


def test_continuous_mode_in_text_prints_one_line_per_pass_and_a_conflict_once(
    server: RunningServer, tmp_path: Path, start: Start
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "m"
    proc = start(sync_command(server.credentials_file, root, "--interval", "0.1"))
    assert read_line(proc.stdout).startswith("download: transferred 1 files")
    (root / local_relative_path(key)).write_bytes(b"my edit")
    assert server.upload("cat", "A", key.series, "csv", payload(key, version=2)).status == 200
    assert "1 conflicts kept" in read_line(proc.stdout)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = clean_exit(proc, 130)
    assert out.splitlines() == [out.splitlines()[0]] and "interrupted by SIGINT" in out
    assert [line for line in err.splitlines() if line.startswith("kept: ")] == [
        f"kept: {local_relative_path(key)}: changed locally since the last sync; kept "
        "(give a backup folder to keep a copy and take the remote one)"
    ]


API = textwrap.dedent(
    """
    import json, sys, fsspec
    from fusionsync import FusionFileSystem, fsync
    creds, root, log_path = sys.argv[1:4]

    def on_pass(report, news):
        print("pass", len(report.transferred), flush=True)

    report = fsync(FusionFileSystem(credentials=creds), fsspec.filesystem("file"), datasets=["A"], catalog="cat",
                   direction="download", local_path=root, log_path=log_path, show_progress=False, interval=0.1,
                   on_pass=on_pass)
    print(json.dumps(report.to_dict()), flush=True)
    """
)


def test_the_python_api_returns_the_report_of_an_interrupted_run(
    server: RunningServer, tmp_path: Path, start: Start
) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "m"
    proc = start([sys.executable, "-c", API, str(server.credentials_file), str(root), str(tmp_path)])
    assert read_line(proc.stdout) == "pass 1\n"
    proc.send_signal(signal.SIGINT)
    out, _ = clean_exit(proc, 0)
    report = json.loads(out.splitlines()[-1])
    assert report["interrupted"] is True and report["interrupted_by"] == "SIGINT"
    assert len(local_files(root)) == 1 and os.path.isdir(root)
