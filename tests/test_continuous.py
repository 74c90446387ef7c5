"""Continuous mode wakes up on changes: a download on the catalog's change events, an upload on local file
events, each within a second although the interval is a minute; bursts make a few passes, not one per
change; where there are no events (refused, unanswered, a plain fsspec remote, --poll) passes come every
interval with at most one log line; signals stop a waiting sync at once; nothing it started outlives it.
One server for the module, a catalog per test."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.client import FusionFileSystem
from fusionsync.sync.sources import EventFollower
from fusionsync.sync.wakeup import Wakeup
from tests.helpers import RunningServer, Start, start_server, wait_for
from tests.proxy import Proxy
from tests.sync_fixtures import payload, remote_bytes, write_local

Sync = Callable[..., "subprocess.Popen[str]"]
NAMES = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("server") / "root")
    yield srv
    srv.stop()


@pytest.fixture
def cat(server: RunningServer) -> str:
    """A catalog of this test's own on the shared server, with datasets A and B."""
    name = f"c{next(NAMES)}"
    for dataset in ("A", "B"):
        server.create_dataset(name, dataset)
    return name


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def sync(start: Start, tmp_path: Path, cat: str) -> Sync:
    """Starts ``fusionsync sync`` on ``cat``, logging at INFO into tmp_path."""

    def run(creds: Path, direction: str, root: Path, *extra: str, datasets: tuple[str, ...] = ("A",)) -> Any:
        return start([
            sys.executable, "-m", "fusionsync", "sync", direction, "--local-path", str(root), "--catalog", cat,
            *[arg for d in datasets for arg in ("--dataset", d)], "--credentials", str(creds),
            "--log-path", str(tmp_path), "--log-level", "INFO", "--no-progress", "--json", *extra,
        ])  # fmt: skip

    return run


def next_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "the sync ended"
    report: dict[str, Any] = json.loads(line)
    return report


def log_lines(tmp_path: Path, text: str) -> list[str]:
    log = tmp_path / "fusion_fsync.log"
    return [line for line in log.read_text().splitlines() if text in line] if log.exists() else []


def passes(tmp_path: Path, direction: str) -> int:
    """The passes a sync has finished so far (each logs its summary at INFO)."""
    return len(log_lines(tmp_path, f"INFO {direction}: "))


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[dict[str, Any], str, float]:
    """Send ``signum``; the last report, stderr and how long the sync took to end."""
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "never retrieved" not in err, err
    return json.loads(out.splitlines()[-1]), err, took


def proxied(server: RunningServer, proxy: Proxy, tmp_path: Path) -> Path:
    creds = tmp_path / "proxied.json"
    creds.write_text(json.dumps(server.credentials() | {"root_url": proxy.base + "/api/v1/"}))
    return creds


def test_a_continuous_download_reacts_to_change_events(
    server: RunningServer, tmp_path: Path, sync: Sync, cat: str
) -> None:
    server.upload(cat, "A", "20240101", "csv", b"first")
    root = tmp_path / "m"
    proc = sync(server.credentials_file, "download", root, "--interval", "60")
    assert len(next_report(proc)["transferred"]) == 1
    wait_for(lambda: passes(tmp_path, "download") == 1, "the first pass's log line")
    for series in ("x1", "x2", "x3"):  # a dataset not synced: its events are no reason for a pass
        assert server.upload(cat, "B", series, "csv", b"elsewhere").status == 200
    time.sleep(0.3)
    assert passes(tmp_path, "download") == 1

    key = DistKey(cat, "A", "20240102", "csv")
    assert server.upload(cat, "A", key.series, "csv", payload(key)).status == 200
    answered = time.monotonic()
    wait_for((root / local_relative_path(key)).exists, "the change in the mirror", timeout=5)
    assert time.monotonic() - answered < 1.0, "only the change event can explain it: the interval is a minute"
    assert next_report(proc)["transferred"] == [local_relative_path(key)]

    before = passes(tmp_path, "download")
    for i in range(40):
        assert server.upload(cat, "A", f"b{i:02}", "csv", b"burst").status == 200
    wait_for(lambda: len(list((root / cat / "A").iterdir())) == 42, "the burst in the mirror", timeout=10)
    time.sleep(0.2)
    assert passes(tmp_path, "download") - before <= 5, "a pass per settled burst (or per second of it)"

    last, err, took = stop(proc, signal.SIGTERM)
    assert took < 1.0, "a sync waiting for events stops at once"
    assert last["interrupted_by"] == "SIGTERM" and last["transferred"] == [] and err == ""


def test_a_continuous_upload_reacts_to_file_events(server: RunningServer, tmp_path: Path, sync: Sync, cat: str) -> None:
    root = tmp_path / "m"
    write_local(root, DistKey(cat, "A", "20240101", "csv"), b"first")
    proc = sync(server.credentials_file, "upload", root, "--interval", "60", datasets=("A", "B"))
    assert len(next_report(proc)["transferred"]) == 1
    wait_for(lambda: passes(tmp_path, "upload") == 1, "the first pass's log line")
    (root / cat / "A" / "20240101" / ".fusionsync-tmp-abc").write_bytes(b"ours")  # the sync's own temporaries
    time.sleep(0.3)
    assert passes(tmp_path, "upload") == 1

    key = DistKey(cat, "A", "20240102", "csv")
    write_local(root, key, b"new,file\n")
    written = time.monotonic()
    wait_for(lambda: remote_bytes(server, key) == b"new,file\n", "the upload", timeout=5)
    assert time.monotonic() - written < 1.0, "only the file event can explain it: the interval is a minute"
    assert next_report(proc)["transferred"] == [local_relative_path(key)]

    other = DistKey(cat, "B", "20240101", "csv")  # B's folder did not exist when the sync started
    write_local(root, other, b"b,file\n")
    written = time.monotonic()
    wait_for(lambda: remote_bytes(server, other) == b"b,file\n", "the upload from a new folder", timeout=5)
    assert time.monotonic() - written < 2.5, "a new dataset folder is watched within a second or so"
    last, err, took = stop(proc, signal.SIGINT)
    assert took < 1.0, "a sync waiting for file events stops at once"
    assert last["interrupted_by"] == "SIGINT" and err == ""


def test_an_unanswered_subscription_leaves_a_download_polling(
    server: RunningServer, tmp_path: Path, sync: Sync, cat: str
) -> None:
    server.upload(cat, "A", "20240101", "csv", b"first")
    with Proxy(server.base, lambda method, path: path.endswith("/notifications/subscribe"), silent=True) as proxy:
        proc = sync(proxied(server, proxy, tmp_path), "download", tmp_path / "m", "--interval", "0.3")
        next_report(proc)
        key = DistKey(cat, "A", "20240102", "csv")
        assert server.upload(cat, "A", key.series, "csv", payload(key)).status == 200
        assert next_report(proc)["transferred"] == [local_relative_path(key)]
        wait_for(lambda: passes(tmp_path, "download") >= 3, "a few more polls")
        assert proxy.seen.in_flight == 1, "the subscription is still waiting for an answer"
        _, err, took = stop(proc, signal.SIGTERM)
    assert err == "" and took < 1.0
    (said,) = log_lines(tmp_path, "change events")
    assert "does not answer the subscription to change events" in said and "a pass runs every 0.3 s" in said


def test_poll_turns_events_off(server: RunningServer, tmp_path: Path, sync: Sync, cat: str) -> None:
    with Proxy(server.base, lambda method, path: False) as proxy:
        proc = sync(proxied(server, proxy, tmp_path), "download", tmp_path / "m", "--interval", "0.2", "--poll")
        wait_for(lambda: passes(tmp_path, "download") >= 2, "two polls")
        stop(proc, signal.SIGINT)
    assert [p for _, p in proxy.seen.requests if "/changes" in p]
    assert not [p for _, p in proxy.seen.requests if p.endswith("/subscribe")]


@pytest.mark.parametrize("status", [404, 405])
def test_refused_events_are_said_once(
    server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.INFO, logger="fusionsync")
    with Proxy(server.base, lambda m, p: p.endswith("/subscribe"), refuse=10**6, status=status) as proxy:
        fs = FusionFileSystem(credentials=str(proxied(server, proxy, tmp_path)))
        wakeup = Wakeup()
        follower = EventFollower(fs, "cat", {"A"}, wakeup, 60)
        follower.start()
        assert follower.ready.wait(5)
        wait_for(lambda: bool(caplog.records), "the log line")
        follower.stop()
        wakeup.close()
        fs.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"no change events from {proxy.base}/api/v1/ ("
        + ("change events of catalog 'cat' not found: try later" if status == 404 else "change events of catalog "
           "'cat': try later (HTTP 405)")
        + "): a pass runs every 60 s"
    ]  # fmt: skip


def test_a_plain_fsspec_remote_offers_no_events(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fusionsync")
    from fusionsync.sync.fsspec_remote import FsspecRemote

    wakeup = Wakeup()
    follower = EventFollower(FsspecRemote(fsspec.filesystem("memory")), "cat", {"A"}, wakeup, 5)
    follower.start()
    assert follower.ready.wait(5)
    follower.stop()
    wakeup.close()
    assert [r.getMessage() for r in caplog.records] == ["memory:// offers no change events: a pass runs every 5 s"]


API = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, threading, fsspec
    from fsspec.asyn import get_loop, sync
    from fusion import Fusion
    from fusion.credentials import FusionCredentials
    from fusionsync import fsync
    creds, root_url, root, log_path, cat = sys.argv[1:6]
    get_loop()  # fsspec's loop thread, shared by every filesystem of the process
    before = {t.name for t in threading.enumerate()}
    memory = fsspec.filesystem("memory")
    memory.pipe(f"{cat}/datasets/A/datasetseries/s1/distributions/csv", b"1")

    async def tasks():
        return [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    for kind in ("sdk", "fsspec"):
        if kind == "sdk":
            fusion = Fusion(credentials=FusionCredentials.from_file(creds), root_url=root_url)
            fs_fusion = fusion.get_fusion_filesystem()
        else:
            fs_fusion = memory
        seen = []

        def on_pass(report, news):
            seen.append(len(report.transferred))
            print(kind, len(report.transferred), flush=True)
            if len(seen) == 1:
                sys.stdin.readline()  # the test changes the remote, then says so
                if kind == "fsspec":
                    memory.pipe(f"{cat}/datasets/A/datasetseries/s2/distributions/csv", b"2")
            elif len(seen) == 2:
                os.kill(os.getpid(), signal.SIGINT)

        report = fsync(fs_fusion, fsspec.filesystem("file"), datasets=["A"], catalog=cat, direction="download",
                       local_path=f"{root}-{kind}", log_path=log_path, log_level=20, show_progress=False,
                       interval=60 if kind == "sdk" else 0.2, on_pass=on_pass)
        # Idle workers of the shared loop's default executor (asyncio_N, which the generic remote's calls use)
        # stay with that loop for its next user; any other thread, and any task on the loop, would be ours.
        after = {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}
        print(json.dumps({"interrupted": report.interrupted, "threads": sorted(after - before),
                          "tasks": sync(get_loop(), tasks)}), flush=True)
    """
)


def test_nothing_the_python_api_started_outlives_it(server: RunningServer, tmp_path: Path, cat: str) -> None:
    """The SDK's own filesystem gets change events (our client drives it: the interval is a minute); a plain
    fsspec remote is polled. After each run, no thread, task or stream of it is left."""
    server.upload(cat, "A", "20240101", "csv", b"first")
    args = [str(server.credentials_file), server.root_url, str(tmp_path / "m"), str(tmp_path), cat]
    proc = subprocess.Popen(
        [sys.executable, "-c", API, *args],
        cwd=tmp_path,  # where the SDK writes its own log
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for kind in ("sdk", "fsspec"):
            assert proc.stdout.readline() == f"{kind} 1\n", proc.stderr.read() if proc.poll() is not None else ""
            if kind == "sdk":
                assert server.upload(cat, "A", "20240102", "csv", b"new").status == 200
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"{kind} 1\n"
            assert proc.stdout.readline() == f"{kind} 0\n"  # the signal's empty, interrupted report
            assert json.loads(proc.stdout.readline()) == {"interrupted": True, "threads": [], "tasks": []}
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    (said,) = log_lines(tmp_path, "change events")
    assert said.endswith("memory:// offers no change events: a pass runs every 0.2 s")
