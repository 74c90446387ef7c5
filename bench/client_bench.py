"""FusionFileSystem against curl on the same server: 256 MiB down and up, peak RSS of a 1 GiB download.

Run: ``.venv/bin/python -m bench.client_bench [--size-mib 256] [--rss-mib 1024] [--runs 3]``.

Fairness: runs of ours and of curl are interleaved (the order rotating from run to run), dirty
pages are flushed (``os.sync``) before every timed run, so one contender does not pay for the
other's writes, and the bytes to be read (the server's blob, the local source) are read once
before every timed run: this machine pages out idle page cache (DAMON), and whoever read first
would otherwise pay the disk for the other. Our download verifies the SHA-256 as it goes;
curl's is shown both bare and followed by ``sha256sum`` (the comparable work). Curl's upload
is timed without computing the Digest header it needs (curl gets that for free: a lower bound).
Peak RSS: a separate process downloads the big distribution; we report its own VmHWM and
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` as seen by a tiny launcher process (on Linux a child's
``ru_maxrss`` starts from its parent's peak at fork, so the launcher must be small, not this one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import PEAK_SUFFIX, MiB, big_file, curl_get, curl_put, dist_path, seeded_server
from fusionsync import FusionFileSystem

RSS_CODE = """
import sys
from fusionsync import FusionFileSystem
FusionFileSystem(credentials=sys.argv[1]).get_file(sys.argv[2], sys.argv[3])
"""
LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
print("SECONDS", time.perf_counter() - start)
print("RU_MAXRSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
VERBOSE = False
RSS_LIMIT_MIB = 150
SPEED_TARGET = 0.5


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(8 * MiB):
            pass


def newest_blob(server_root: Path) -> Path:
    return max((p for p in (server_root / "blobs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime)


def timed(fn: Callable[[], object], warm_up: Callable[[], Path]) -> float:
    os.sync()
    warm(warm_up())
    start = time.perf_counter()
    result = fn()
    return result if isinstance(result, float) else time.perf_counter() - start


Contenders = dict[str, Callable[[], object]]


def interleaved(contenders: Contenders, warm_up: Callable[[], Path], runs: int) -> dict[str, float]:
    """Median seconds of each contender, runs taken in turn (in a rotating order)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for run in range(runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            times[name].append(timed(contenders[name], warm_up))
    if VERBOSE:
        print({name: [round(t, 3) for t in values] for name, values in times.items()})
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss(*args: str) -> tuple[float, float, float]:
    """Seconds, VmHWM and ru_maxrss (MiB) of a process downloading one distribution."""
    cmd = [sys.executable, "-c", LAUNCHER, sys.executable, "-c", RSS_CODE + PEAK_SUFFIX, *args]
    lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    value = {lines[i]: float(lines[i + 1]) for i in range(0, len(lines) - 1, 2)}
    return value["SECONDS"], value["PEAK_RSS_KIB"] / 1024, value["RU_MAXRSS_KIB"] / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="print the seconds of every run")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        work = Path(tmp)
        rss_file = big_file(work / "rss.bin", args.rss_mib * MiB)
        server = seeded_server(work / "root", rss_file)
        try:
            rss_file.unlink()
            os.sync()
            seconds, peak, maxrss = peak_rss(
                str(server.credentials_file), dist_path("bench", "BIG"), str(work / "rss-out.bin")
            )
            (work / "rss-out.bin").unlink()
            src = big_file(work / "src.bin", args.size_mib * MiB)
            fs = FusionFileSystem(credentials=str(server.credentials_file))
            server.create_dataset("bench", "UP")
            up = interleaved(
                {
                    "ours": lambda: fs.put_file(str(src), dist_path("bench", "UP")),
                    "curl": lambda: curl_put(server, "bench", "UP", src),
                },
                lambda: src,
                args.runs,
            )
            out, curl_out = work / "out.bin", work / "curl-out.bin"
            down = interleaved(
                {
                    "ours": lambda: fs.get_file(dist_path("bench", "UP"), str(out)),
                    "curl": lambda: curl_get(server, "bench", "UP", curl_out, verify=False),
                    "curl+sha256sum": lambda: curl_get(server, "bench", "UP", curl_out, verify=True),
                },
                lambda: newest_blob(server.root),
                args.runs,
            )
            assert out.read_bytes() == src.read_bytes(), "the download differs from the upload"
            fs.close()
        finally:
            server.stop()
    size = args.size_mib * MiB / 1e6
    print(f"\n{args.size_mib} MiB, median of {args.runs} interleaved runs, 127.0.0.1, {os.cpu_count()} cores")
    print(f"{'':30} {'fusionsync':>12} {'curl':>12} {'ratio':>7}  target")
    rows = [
        ("download vs curl+sha256sum", down["ours"], down["curl+sha256sum"]),
        ("download vs bare curl", down["ours"], down["curl"]),
        ("upload vs curl -T", up["ours"], up["curl"]),
    ]
    ok = True
    for name, ours, theirs in rows:
        ratio = theirs / ours
        verdict = "ok" if ratio >= SPEED_TARGET else "MISSED"
        ok &= ratio >= SPEED_TARGET or name == "download vs bare curl"
        speeds = f"{size / ours:7.0f} MB/s {size / theirs:7.0f} MB/s"
        print(f"{name:30} {speeds} {ratio:6.2f}x  >= {SPEED_TARGET}x {verdict}")
    worst = max(peak, maxrss)
    verdict = "ok" if worst < RSS_LIMIT_MIB else "MISSED"
    ok &= worst < RSS_LIMIT_MIB
    rss = f"peak RSS downloading {args.rss_mib} MiB: VmHWM {peak:.0f} MiB, ru_maxrss {maxrss:.0f} MiB"
    print(f"{rss} ({args.rss_mib * MiB / 1e6 / seconds:.0f} MB/s with start-up)  < {RSS_LIMIT_MIB} MiB {verdict}")
    print("ratio = our speed / curl's; the bare-curl row is for information (curl checks nothing)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
