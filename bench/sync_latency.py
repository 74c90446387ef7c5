"""How soon a continuous sync reacts to a change (``fusionsync sync ... --interval 60``, so only change
events and file events can explain a reaction under a minute).

Run: ``.venv/bin/python -m bench.sync_latency [--changes 50] [--burst 1000]``. Against a local server:
- download: each upload of a new series member (one at a time) is timed from the upload's answer to the
  file standing in the local mirror;
- upload: each new local file is timed from its write (closed) to the server listing it;
- burst: ``--burst`` uploads back to back while a continuous download runs: how many passes it took
  and how long after the last upload's answer the mirror held them all.
Prints p50/p90/max in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import RunningServer, start_server

from fusionsync.catalog.layout import DistKey, local_relative_path


def continuous(server: RunningServer, direction: str, root: Path, dataset: str = "D") -> subprocess.Popen[str]:
    args = [
        sys.executable, "-m", "fusionsync", "sync", direction, "--local-path", str(root), "--catalog", "cat",
        "--dataset", dataset, "--credentials", str(server.credentials_file), "--log-path", str(root.parent),
        "--interval", "60", "--no-progress", "--json",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> list[str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    return out.splitlines()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, step: float = 0.001) -> float:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the change never arrived")
        time.sleep(step)
    return time.perf_counter()


def first_line(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline(), "the sync ended before its first pass"


def download_latency(server: RunningServer, work: Path, changes: int) -> list[float]:
    root = work / "down"
    server.upload("cat", "D", "s0", "csv", b"first\n")
    proc = continuous(server, "download", root)
    try:
        first_line(proc)
        times = []
        for i in range(1, changes + 1):
            key = DistKey("cat", "D", f"s{i}", "csv")
            server.upload("cat", "D", key.series, "csv", f"change {i}\n".encode())
            answered = time.perf_counter()
            path = root / local_relative_path(key)
            times.append((wait_until(path.exists) - answered) * 1e3)
    finally:
        stop(proc)
    return times


def upload_latency(server: RunningServer, work: Path, changes: int) -> list[float]:
    root = work / "up"
    folder = root / "cat" / "D"
    folder.mkdir(parents=True)
    proc = continuous(server, "upload", root)
    try:
        time.sleep(1.5)  # its first pass (nothing to do, so nothing printed) and the watcher's start
        times = []
        for i in range(changes):
            key = DistKey("cat", "D", f"u{i}", "csv")
            path = root / local_relative_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"local {i}\n".encode())
            written = time.perf_counter()
            dist = f"catalogs/cat/datasets/D/datasetseries/{key.series}/distributions/csv"
            times.append((wait_until(lambda d=dist: server.api("HEAD", d).status == 200, step=0.002) - written) * 1e3)
    finally:
        stop(proc)
    return times


def burst(server: RunningServer, work: Path, count: int) -> tuple[int, float, float]:
    """Passes that transferred something, seconds the uploads took, seconds from the last answer to all there."""
    root = work / "burst"
    server.create_dataset("cat", "B")
    server.upload("cat", "B", "first", "csv", b"first\n")
    proc = continuous(server, "download", root, "B")
    lines: list[str] = []
    try:
        first_line(proc)
        assert proc.stdout is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
        reader.start()
        started = time.perf_counter()
        for i in range(count):
            server.upload("cat", "B", f"b{i:05}", "csv", b"x\n")
        answered = time.perf_counter()
        folder = root / "cat" / "B"
        arrived = wait_until(lambda: sum(1 for _ in folder.iterdir()) == count + 1, timeout=120, step=0.01)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    passes = sum(1 for line in lines if json.loads(line)["transferred"])
    return passes, answered - started, arrived - answered


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"{label:34} p50 {statistics.median(values):7.1f} ms  p90 {p90:7.1f} ms  max {max(values):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fusionsync-latency-"))
    os.environ["FUSIONSYNC_CACHE_DIR"] = str(work / "cache")
    server = start_server(work / "server")
    try:
        server.create_dataset("cat", "D")
        print(summary("download: upload answered -> local", download_latency(server, work, args.changes)))
        print(summary("upload: file written -> listed", upload_latency(server, work, args.changes)))
        if args.burst:
            passes, took, settled = burst(server, work, args.burst)
            print(
                f"burst: {args.burst} uploads in {took:.1f} s made {passes} download passes; "
                f"all local {settled * 1e3:.0f} ms after the last answer"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
