"""Transfers spread over worker processes (``fsync(executor=...)``, ``--processes N``): the batches, the
progress channel, the pickled client settings, and the CLI end to end with real worker processes,
including a worker killed with SIGKILL and Ctrl+C sent to the whole process group."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.batch import Channel, Reporter
from fusionsync.sync.plan import Action, Op
from fusionsync.sync.report import Stats
from fusionsync.sync.spread import Hub, split
from tests.helpers import RunningServer, wait_for
from tests.proxy import Proxy
from tests.sync_fixtures import local_files, no_temporaries, payload, remote_bytes, seed


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def action(dataset: str, series: str, size: int) -> Action:
    key = DistKey("cat", dataset, series, "csv")
    return Action(Op.NEW, key, local_relative_path(key), size)


def test_batches_keep_order_split_bytes_evenly_and_prefer_dataset_ends() -> None:
    small = [action(d, f"s{i:03d}", 100) for d in "ABCD" for i in range(10)]
    transfers = [*small, action("E", "big", 10_000), *(action("F", f"s{i:03d}", 100) for i in range(60))]
    batches = split(transfers, workers=2)  # 8 shares: at most 2,500 bytes and 14 files each
    assert [a for batch in batches for a in batch] == transfers  # every item once, in plan order
    assert len(batches) >= 8  # several per worker: a fast one takes over a slow one's share
    assert [[a.key.dataset for a in b] for b in batches[:5]] == [[d] * 10 for d in "ABCD"] + [["E"]]
    assert all(len(b) <= 14 and sum(a.size for a in b) <= max(2_500, b[0].size) for b in batches)
    assert all({a.key.dataset for a in b} == {"F"} for b in batches[5:])  # F: cut where the batches are full
    assert split([], workers=4) == []


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s) for what other threads and the channel do."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)


def test_progress_reaches_the_caller_live_and_stop_reaches_every_batch() -> None:
    async def main() -> None:
        stats = Stats()
        stats.begin(20, 2000)
        hub = Hub(stats)
        await hub.start("127.0.0.1")
        channel = Channel("127.0.0.1", hub.port, hub.token)
        workers = [Stats(), Stats()]
        stopped: list[int] = []
        loop = asyncio.get_running_loop()
        reporters = await asyncio.gather(*(loop.run_in_executor(None, Reporter, channel, n) for n in (0, 1)))
        assert not any(r.stopped for r in reporters)
        for n, (reporter, worker) in enumerate(zip(reporters, workers, strict=True)):
            reporter.start(worker, lambda n=n: stopped.append(n))  # type: ignore[misc]
            worker.open("f", 100)
            worker.advance("f", 60 + n)
        await until(lambda: stats.bytes_done == 121)
        assert stats.bytes_done == 121 and set(stats.active) == {"f"}  # both workers' bytes, while in flight
        hub.finish(0, 100, 1, 0)  # batch 0 ends: its outcome replaces its snapshots for good
        assert (stats.bytes_done, stats.files_done) == (161, 1)
        hub.stop()
        await until(lambda: len(stopped) == 2)
        assert sorted(stopped) == [0, 1]
        late = await loop.run_in_executor(None, Reporter, channel, 2)
        assert late.stopped  # a batch that begins after the stop does nothing
        for reporter in [*reporters, late]:
            await loop.run_in_executor(None, reporter.close)
        await hub.close()

    asyncio.run(main())


def test_a_strangers_connection_changes_nothing() -> None:
    async def main() -> None:
        stats = Stats()
        hub = Hub(stats)
        await hub.start("127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(b'{"token": "guess", "batch": 0}\n{"b": 999, "d": 9, "f": 0, "a": {}}\n')
        await writer.drain()
        assert await reader.read() == b""  # closed without an answer
        writer.close()
        await writer.wait_closed()
        assert stats.bytes_done == 0
        await hub.close()

    asyncio.run(main())


def test_a_pickled_client_carries_its_settings_not_the_path_of_its_credentials(
    server: RunningServer, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(server.credentials()))
    fs = FusionFileSystem(credentials=str(creds), root_url=server.base + "/api/v1/", max_ranges=3, retries=2)
    data = pickle.dumps(fs)
    creds.unlink()  # a worker elsewhere has no such file
    copy = pickle.loads(data)
    assert copy is not fs and copy.settings() == fs.settings()
    assert copy.settings()["max_ranges"] == 3 and copy.settings()["retries"] == 2
    server.create_catalog("cat")
    assert "cat" in copy.ls("", detail=False)


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid``: pid → parent."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, int] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found[child] = parent
                frontier.append(child)
    return found


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def cli_args(server: RunningServer, creds: Path, root: Path, *extra: str, direction: str = "download") -> list[str]:
    return [
        sys.executable, "-m", "fusionsync", "sync", direction, "--local-path", str(root), "--catalog", "cat",
        "--dataset", "A", "--dataset", "B", "--credentials", str(creds), "--log-path", str(root.parent), "--once",
        "--json", *extra,
    ]  # fmt: skip


LAYOUT = {d: {f"2024{i:04d}": ["csv"] for i in range(20)} for d in "AB"}


def in_place(root: Path) -> dict[str, bytes]:
    """The files at their destination paths (not the hidden temporaries of transfers in flight)."""
    if not root.exists():
        return {}
    return {rel: data for rel, data in local_files(root).items() if not rel.rsplit("/", 1)[-1].startswith(".")}


def is_download(method: str, path: str) -> bool:
    return method == "GET" and "/distributions/" in path


def start_through(
    proxy: Proxy, server: RunningServer, tmp_path: Path, root: Path, *extra: str, start_new_session: bool = False
) -> subprocess.Popen[str]:
    """``sync download --processes 2`` of datasets A and B, started through ``proxy``."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(server.credentials() | {"root_url": proxy.base + "/api/v1/"}))
    args = cli_args(server, creds, root, "--processes", "2", *extra)
    pipe = subprocess.PIPE
    return subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, start_new_session=start_new_session)


def test_processes_end_to_end_down_and_up_through_the_cli(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", LAYOUT, size=3000)
    root = tmp_path / "mirror"
    down = run(cli_args(server, server.credentials_file, root, "--processes", "2"))
    report = json.loads(down.stdout)
    assert down.returncode == 0 and report["ok"], down.stderr
    assert sorted(report["transferred"]) == sorted(local_relative_path(k) for k in keys)  # one report, each once
    assert report["bytes"] == 3000 * len(keys)
    assert local_files(root) == {local_relative_path(k): payload(k, 3000) for k in keys}
    edited = {keys[0]: b"edited", keys[-1]: b"also edited"}
    for key, data in edited.items():
        (root / local_relative_path(key)).write_bytes(data)
    up = run(cli_args(server, server.credentials_file, root, "--processes", "2", direction="upload"))
    report = json.loads(up.stdout)
    assert up.returncode == 0 and sorted(report["transferred"]) == sorted(local_relative_path(k) for k in edited)
    again = run(cli_args(server, server.credentials_file, root, direction="upload"))
    report = json.loads(again.stdout)  # the cache knows what the workers sent: nothing to do, nothing rehashed
    assert report["transferred"] == [] and report["hashed"] == 0 and report["ok"]
    assert all(remote_bytes(server, key) == data for key, data in edited.items())


def test_a_worker_killed_mid_sync_loses_nothing(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", LAYOUT, size=3000)
    expected = {local_relative_path(k): payload(k, 3000) for k in keys}
    root = tmp_path / "mirror"
    with Proxy(server.base, is_download, delay=0.1) as proxy:
        proc = start_through(proxy, server, tmp_path, root, "--n-par", "2")
        try:
            wait_for(lambda: len(in_place(root)) >= 4, "the first files")
            workers = [pid for pid, parent in descendants(proc.pid).items() if parent != proc.pid]
            assert len(workers) == 2, descendants(proc.pid)
            os.kill(workers[0], signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    report = json.loads(out)
    # Its batches (and those of the pool it broke) ran again in new worker processes: the pass is complete.
    assert proc.returncode == 0 and report["ok"], err
    assert sorted(report["transferred"]) == sorted(expected)
    assert in_place(root) == expected  # nothing partial in place
    again = run(cli_args(server, server.credentials_file, root))
    assert json.loads(again.stdout)["transferred"] == [] and again.returncode == 0
    assert local_files(root) == expected and no_temporaries(root)  # a killed transfer's temporary is gone


def test_ctrl_c_to_the_process_group_stops_every_worker_cleanly(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", LAYOUT, size=3000)
    expected = {local_relative_path(k): payload(k, 3000) for k in keys}
    root = tmp_path / "mirror"
    with Proxy(server.base, is_download, delay=1.0) as proxy:
        # Its own process group, as a terminal's: Ctrl+C reaches the command and its worker processes.
        proc = start_through(proxy, server, tmp_path, root, "--n-par", "1", start_new_session=True)
        try:
            wait_for(lambda: len(in_place(root)) >= 2, "the first files")
            os.killpg(proc.pid, signal.SIGINT)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            proc.kill()
    report = json.loads(out)
    assert proc.returncode == 130 and report["interrupted"] and report["interrupted_by"] == "SIGINT", err
    assert "Traceback" not in err
    assert took < 8, f"the workers' transfers were not cancelled ({took:.1f} s)"  # 40 x 1 s, 2 at once
    got = local_files(root)
    assert 2 <= len(got) < len(expected) and all(data == expected[rel] for rel, data in got.items())
    assert no_temporaries(root)  # cancelled downloads removed their temporaries
    assert not descendants(proc.pid)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its parent to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_that_lose_their_caller_stop_and_leave_only_whole_files(server: RunningServer, tmp_path: Path) -> None:
    """The command killed with SIGKILL (no Ctrl+C, nothing said to the workers): its worker processes see their
    caller gone, cancel their transfers (removing the temporaries), run none of the batches still queued and
    end, within a second or so (8 s allowed; before, they ran what was queued and then waited forever); the
    next pass converges."""
    keys = seed(server, "cat", LAYOUT, size=3000)
    expected = {local_relative_path(k): payload(k, 3000) for k in keys}
    root = tmp_path / "mirror"
    with Proxy(server.base, is_download, delay=1.0) as proxy:
        proc = start_through(proxy, server, tmp_path, root, "--n-par", "1")
        workers: dict[int, int] = {}
        try:
            wait_for(lambda: len(in_place(root)) >= 2, "the first files")
            workers = descendants(proc.pid)
            assert len(workers) >= 2, workers  # the pool's processes (and its fork server)
            proc.kill()
            proc.wait()  # (its workers hold its output pipes until they end)
            wait_for(lambda: not any(running(pid) for pid in workers), "the workers to stop", timeout=8)
        finally:
            for pid in [proc.pid, *workers]:
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate()
    got = local_files(root)
    assert 2 <= len(got) < len(expected) and all(data == expected[rel] for rel, data in got.items()), sorted(got)
    assert no_temporaries(root)
    again = run(cli_args(server, server.credentials_file, root))
    assert again.returncode == 0, again.stderr
    assert local_files(root) == expected


def test_scheduler_without_dask_installed_is_one_sentence(tmp_path: Path) -> None:
    hidden = tmp_path / "no-dask"
    (hidden / "distributed").mkdir(parents=True)
    (hidden / "distributed" / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"client_id": "a", "client_secret": "b", "root_url": "http://127.0.0.1:9/api/v1/"}))
    proc = subprocess.run(
        [sys.executable, "-m", "fusionsync", "sync", "download", "--dataset", "A", "--credentials", str(creds),
         "--local-path", str(tmp_path / "m"), "--scheduler", "tcp://127.0.0.1:9", "--once"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(hidden)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        "fusionsync: error: --scheduler needs the optional Dask support, which is not installed: "
        "pip install 'fusionsync[dask]'\n"
    )


def test_any_executor_runs_the_batches_and_anything_else_is_refused(server: RunningServer, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fusionsync import fsync
    from fusionsync.errors import UsageError
    from tests.sync_fixtures import local_fs

    keys = seed(server, "cat", LAYOUT, size=3000)
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    root = tmp_path / "mirror"
    args = dict(catalog="cat", datasets=["A", "B"], direction="download", local_path=str(root), once=True,
                log_path=str(tmp_path), show_progress=False)  # fmt: skip
    with ThreadPoolExecutor(3) as threads:
        report = fsync(fs, local_fs(), executor=threads, **args)  # type: ignore[arg-type]
    assert report.ok and sorted(report.transferred) == sorted(local_relative_path(k) for k in keys)
    assert in_place(root) == {local_relative_path(k): payload(k, 3000) for k in keys}
    with pytest.raises(UsageError) as refused:
        fsync(fs, local_fs(), executor=4, **args)  # type: ignore[arg-type]
    assert str(refused.value) == "executor must be a concurrent.futures.Executor or a distributed.Client, not int"
