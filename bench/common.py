"""Shared pieces of the benchmarks: a server with data, timing, curl, peak RSS of a child."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import RunningServer, start_server

from fusionsync.catalog.digest import file_digests

MiB = 2**20


def big_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes (written in 64 MiB blocks)."""
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 64 * MiB))
            fh.write(block)
            left -= len(block)
    return path


def seeded_server(root: Path, path: Path, catalog: str = "bench", dataset: str = "BIG") -> RunningServer:
    """A server holding ``path`` as distribution ``{catalog}/{dataset}/20240101/bin`` (uploaded with curl)."""
    server = start_server(root)
    server.create_dataset(catalog, dataset)
    curl_put(server, catalog, dataset, path)
    return server


def dist_path(catalog: str, dataset: str, fmt: str = "bin", series: str = "20240101") -> str:
    return f"{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{fmt}"


def auth_headers(server: RunningServer, catalog: str, dataset: str) -> list[str]:
    return [
        "-H", f"Authorization: Bearer {server.token()}",
        "-H", f"Fusion-Authorization: Bearer {server.fusion_token(catalog, dataset)}",
    ]  # fmt: skip


def curl_put(server: RunningServer, catalog: str, dataset: str, path: Path, fmt: str = "bin") -> float:
    digest = file_digests(str(path), whole=False).fsync_digest()
    url = server.root_url + "catalogs/" + dist_path(catalog, dataset, fmt)
    cmd = ["curl", "-sf", "-o", "/dev/null", "-T", str(path), "-H", f"Digest: SHA-256={digest}",
           *auth_headers(server, catalog, dataset), url]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def curl_get(server: RunningServer, catalog: str, dataset: str, out: Path, verify: bool = True) -> float:
    url = server.root_url + "catalogs/" + dist_path(catalog, dataset) + "/operationType/download"
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", str(out), *auth_headers(server, catalog, dataset), url], check=True)
    if verify:
        subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)
    return time.perf_counter() - start


def median_time(fn: Callable[[], float | None], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(result if isinstance(result, float) else time.perf_counter() - start)
    return statistics.median(times)


# VmHWM, not getrusage's ru_maxrss: on Linux a child's ru_maxrss starts from its parent's RSS at fork.
PEAK_SUFFIX = """
print("PEAK_RSS_KIB", next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")))
"""


def child_peak_rss_mib(code: str, *args: str) -> tuple[float, float]:
    """Run ``python -c code args``; return (seconds, the child's own peak RSS in MiB)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code + PEAK_SUFFIX, *args], check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PEAK_RSS_KIB"))
    return elapsed, int(line.split()[1]) / 1024
