"""The `fusionsync` command: exit codes, JSON report, concurrency bound, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusionsync.catalog.layout import local_relative_path
from tests.helpers import RunningServer
from tests.proxy import Proxy
from tests.sync_fixtures import local_files, payload, seed


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusionsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(path))
    return path


def sync_args(server: RunningServer, root: Path, *extra: str, direction: str = "download") -> list[str]:
    return [
        "sync", direction, "--local-path", str(root), "--catalog", "cat", "--dataset", "A",
        "--credentials", str(server.credentials_file), "--log-path", str(root.parent), "--once", *extra,
    ]  # fmt: skip


def test_sync_json_report_and_exit_zero(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}})
    root = tmp_path / "mirror"
    done = cli(*sync_args(server, root, "--json"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and sorted(report["transferred"]) == sorted(local_relative_path(k) for k in keys)
    check = cli("check", "download", *sync_args(server, root)[2:-1])
    assert check.returncode == 0, check.stdout + check.stderr


def test_check_exits_one_on_differences(server: RunningServer, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "mirror"
    check = cli("check", "download", *sync_args(server, root)[2:-1])
    assert check.returncode == 1 and check.stdout.startswith("+ cat/A/20240101/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "sideways"], "Invalid value"),
        (["sync", "download", "--n-par", "0"], "--n-par"),
        (["sync", "download", "--credentials", "/nonexistent.json", "--dataset", "A"], "credentials file"),
        (["serve"], "--root"),
    ],
)
def test_misuse_is_one_line_and_exit_two(args: list[str], message: str) -> None:
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_refused_credentials_exit_three(server: RunningServer, tmp_path: Path) -> None:
    creds = tmp_path / "wrong.json"
    creds.write_text(json.dumps(server.credentials() | {"client_secret": "not the secret"}))
    args = sync_args(server, tmp_path / "mirror")
    args[args.index("--credentials") + 1] = str(creds)
    done = cli(*args)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("fusionsync: error: the token endpoint refused the credentials (HTTP 401)")
    assert len(done.stderr.splitlines()) == 1


def test_failed_items_exit_one(server: RunningServer, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "mirror"
    blocker = root / "cat" / "A" / "20240101"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the series folder should be")
    done = cli(*sync_args(server, root, "--no-progress"))
    assert done.returncode == 1
    assert "failed: cat/A/20240101/A__cat__20240101.csv" in done.stderr


def test_n_par_bounds_concurrent_transfers_at_the_server(server: RunningServer, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 9)}})

    def is_download(method: str, path: str) -> bool:
        return method == "GET" and "/distributions/" in path

    for n_par, bound in ((2, 2), (8, 8)):
        with Proxy(server.base, is_download, delay=0.3) as proxy:
            creds = server.credentials() | {"root_url": proxy.base + "/api/v1/"}
            creds_file = tmp_path / f"creds-{n_par}.json"
            creds_file.write_text(json.dumps(creds))
            root = tmp_path / f"mirror-{n_par}"
            args = sync_args(server, root, "--n-par", str(n_par))
            args[args.index("--credentials") + 1] = str(creds_file)
            done = cli(*args)
            assert done.returncode == 0, done.stderr
            assert len(local_files(root)) == 8
            assert proxy.seen.max_in_flight <= bound
            if n_par == 8:
                assert proxy.seen.max_in_flight > 2, "the bound must be observable"


def test_sigterm_mid_pass_stops_cleanly_and_leaves_no_partial_file(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 7)}}, size=3 * 2**20)

    def is_download(method: str, path: str) -> bool:
        return method == "GET" and "/distributions/" in path

    with Proxy(server.base, is_download, delay=1.0) as proxy:
        creds_file = tmp_path / "creds.json"
        creds_file.write_text(json.dumps(server.credentials() | {"root_url": proxy.base + "/api/v1/"}))
        root = tmp_path / "mirror"
        args = sync_args(server, root, "--n-par", "2", "--json")
        args[args.index("--credentials") + 1] = str(creds_file)
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusionsync", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while proxy.seen.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    report = json.loads(out)
    assert report["interrupted"] is True and report["interrupted_by"] == "SIGTERM"
    assert "Traceback" not in err and "never retrieved" not in err
    expected = {local_relative_path(k): payload(k, 3 * 2**20) for k in keys}
    for rel, data in local_files(root).items():
        assert rel in expected and data == expected[rel], f"{rel} is partial or foreign"
    assert len(local_files(root)) < len(keys)


def test_continuous_mode_picks_up_new_distributions_and_stops_on_sigterm(server: RunningServer, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "mirror"
    args = [a for a in sync_args(server, root, "--interval", "0.2", "--no-progress") if a != "--once"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusionsync", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(local_files(root)) == 1)
        (key,) = seed(server, "cat", {"A": {"20240102": ["csv"]}})
        wait_for(lambda: local_files(root).get(local_relative_path(key)) == payload(key))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "0 failed" not in out and "download:" in out


def test_errors_back_off_instead_of_spinning(tmp_path: Path) -> None:
    """Against a server that drops every connection, requests and passes are retried with growing delays."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections = 0

    def drop_all() -> None:
        nonlocal connections
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections += 1
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    creds = tmp_path / "creds.json"
    base = f"http://127.0.0.1:{port}"
    creds.write_text(
        json.dumps(
            {"client_id": "x", "client_secret": "y", "auth_url": base + "/oauth2/token", "root_url": base + "/api/v1/"}
        )
    )
    args = ["sync", "download", "--local-path", str(tmp_path / "m"), "--dataset", "A", "--credentials", str(creds),
            "--log-path", str(tmp_path), "--interval", "0.1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusionsync", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    listener.close()
    # Without backoff this would be thousands of connections in 6 s.
    assert 3 <= connections <= 20, connections
    assert proc.returncode == 143


def test_two_syncs_on_one_folder_do_not_interleave(server: RunningServer, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 5)}}, size=2**20)

    def is_download(method: str, path: str) -> bool:
        return method == "GET" and "/distributions/" in path

    # Each download is held 4 s: the second sync starts (it takes about a second) while the first holds the folder.
    with Proxy(server.base, is_download, delay=4.0) as proxy:
        creds_file = tmp_path / "creds.json"
        creds_file.write_text(json.dumps(server.credentials() | {"root_url": proxy.base + "/api/v1/"}))
        root = tmp_path / "mirror"
        args = sync_args(server, root)
        args[args.index("--credentials") + 1] = str(creds_file)
        first = subprocess.Popen(
            [sys.executable, "-m", "fusionsync", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: proxy.seen.in_flight > 0)
        second = cli(*args)
        _, err = first.communicate(timeout=60)
    assert second.returncode == 4 and "another sync is already running" in second.stderr
    assert first.returncode == 0, err


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
