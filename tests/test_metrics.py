"""Prometheus metrics: the server's ``/metrics`` (one process, and two workers on PostgreSQL and S3) moves
with a sync's requests and bytes; uploads in progress and expired are counted; a continuous sync serves its
own passes, files, bytes and last success on ``--metrics-port``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import RunningServer, Start, start_server, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DIST_ROUTE = "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{format}"


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def sync_once(server: RunningServer, direction: str, local: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "fusionsync", "sync", direction, "--once", "--local-path", str(local),
            "--catalog", "cat", "--dataset", "DS", "--credentials", str(server.credentials_file),
            "--log-path", str(tmp_path), "--no-progress",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.scaled
def test_server_metrics_move_with_a_sync(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))
    server.create_dataset("cat", "DS")
    url = server.base + "/metrics"
    before = scrape(url)
    local = tmp_path / "up"
    folder = local / "cat" / "DS"
    folder.mkdir(parents=True)
    sizes = {"20240101": 1000, "20240102": 6 * 2**20 + 5}  # a single-request upload and a multipart one
    for series, size in sizes.items():
        (folder / f"DS__cat__{series}.csv").write_bytes(b"x" * size)
    sync_once(server, "upload", local, tmp_path)
    sent = sum(sizes.values())

    def moved() -> bool:
        after = scrape(url)
        return (
            total(after, "fusionsync_http_received_bytes_total") - total(before, "fusionsync_http_received_bytes_total")
            >= sent
            and total(after, "fusionsync_http_requests_total", route=DIST_ROUTE) >= 1
        )

    wait_for(moved, "the upload's requests in /metrics (every worker's)", timeout=10)
    after = scrape(url)
    assert total(after, "fusionsync_storage_bytes") - total(before, "fusionsync_storage_bytes") == sent
    assert total(after, "fusionsync_catalog_objects", kind="distributions") == 2
    requests = total(after, "fusionsync_http_requests_total") - total(before, "fusionsync_http_requests_total")
    latencies = total(after, "fusionsync_http_request_duration_seconds_count") - total(
        before, "fusionsync_http_request_duration_seconds_count"
    )
    assert requests >= 5 and latencies >= 5  # tokens, listings, the uploads
    assert total(after, "fusionsync_http_requests_total", status="500") == 0

    down = tmp_path / "down"
    sync_once(server, "download", down, tmp_path)
    wait_for(
        lambda: (
            total(scrape(url), "fusionsync_http_sent_bytes_total", route=DIST_ROUTE + "/operationType/download") >= sent
        ),
        "the download's bytes in /metrics",
        timeout=10,
    )


def test_uploads_in_progress_and_expired_are_counted(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root", "--upload-expiry", "1")
    try:
        server.create_dataset("cat", "DS")
        target = "catalogs/cat/datasets/DS/datasetseries/20240101/distributions/csv/operationType/upload"
        assert server.api("POST", target).status == 200
        samples = scrape(server.base + "/metrics")
        assert total(samples, "fusionsync_uploads_in_progress") == 1
        assert total(samples, "fusionsync_uploads_expired_total") == 0
        wait_for(
            lambda: total(scrape(server.base + "/metrics"), "fusionsync_uploads_expired_total") == 1,
            "the idle upload to expire",
            timeout=15,
        )
        assert total(scrape(server.base + "/metrics"), "fusionsync_uploads_in_progress") == 0
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_continuous_sync_serves_its_own_metrics(
    server: RunningServer, tmp_path: Path, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))
    server.create_dataset("cat", "DS")
    folder = tmp_path / "up" / "cat" / "DS"
    folder.mkdir(parents=True)
    (folder / "DS__cat__20240101.csv").write_bytes(b"a" * 100)
    port = free_port()
    proc = start([
        sys.executable, "-m", "fusionsync", "sync", "upload", "--local-path", str(tmp_path / "up"), "--catalog", "cat",
        "--dataset", "DS", "--credentials", str(server.credentials_file), "--log-path", str(tmp_path),
        "--no-progress", "--interval", "30", "--metrics-port", str(port),
    ])  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"

    def samples() -> Samples:
        try:
            return scrape(url)
        except OSError:
            return {}

    wait_for(lambda: total(samples(), "fusionsync_sync_passes_total", outcome="ok") >= 1, "a first pass", 30)
    first = samples()
    assert total(first, "fusionsync_sync_files_total", direction="upload") == 1
    assert total(first, "fusionsync_sync_bytes_total", direction="upload") == 100
    assert total(first, "fusionsync_sync_last_success_timestamp_seconds") > 0
    assert total(first, "fusionsync_sync_pass_duration_seconds_count") >= 1
    assert total(first, "fusionsync_sync_failed_files_total") == 0
    (folder / "DS__cat__20240102.csv").write_bytes(b"b" * 50)  # a file event wakes the next pass
    wait_for(lambda: total(samples(), "fusionsync_sync_files_total") == 2, "the second file's pass", 30)
    later = samples()
    assert total(later, "fusionsync_sync_bytes_total") == 150
    assert total(later, "fusionsync_sync_passes_total", outcome="ok") >= 2
    assert total(later, "fusionsync_sync_last_success_timestamp_seconds") >= total(
        first, "fusionsync_sync_last_success_timestamp_seconds"
    )
    server.stop()  # the next pass fails: counted, and the last success stays where it was
    (folder / "DS__cat__20240103.csv").write_bytes(b"c" * 10)
    wait_for(lambda: total(samples(), "fusionsync_sync_passes_total", outcome="failed") >= 1, "a failed pass", 60)
    failed = samples()
    assert total(failed, "fusionsync_sync_last_success_timestamp_seconds") == total(
        later, "fusionsync_sync_last_success_timestamp_seconds"
    )
    assert total(failed, "fusionsync_sync_files_total") == 2
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode in (0, 143)
