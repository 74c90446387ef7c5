"""Per-worker cost of spread transfers, in CPU time (what holds on a busy machine, where wall time does not).

Run: ``.venv/bin/python -m bench.spread_scaling [--files 2000] [--big-mib 64]``. Starts ``fusionsync serve`` on
127.0.0.1, seeds ``--files`` x 4 KiB over 20 datasets and 4 x ``--big-mib`` MiB, and downloads each set with
its transfers in 1 and in 2 worker processes (``LocalProcesses``). For each run: wall time, and the CPU
seconds of the worker processes, of the server and of the caller (from ``/proc``), per file and per MiB.
These are the inputs of the scaling sketch in ``bench/README.md``: a worker core moves at most
1 / (worker CPU per file) small files a second, a server core serves at most 1 / (server CPU per file).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import fsspec
from tests.helpers import start_server
from tests.sync_fixtures import seed

from bench.common import MiB
from fusionsync import FusionFileSystem, fsync
from fusionsync.sync.executors import LocalProcesses

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(fs: Any, server_pid: int, root: Path, datasets: list[str], workers: int) -> dict[str, float]:
    with LocalProcesses(workers) as pool:
        list(pool.map(abs, range(workers * 4)))  # the processes are up (their start is not what is measured)
        pids = list(pool._pool._processes)
        before = {pid: cpu_of(pid) for pid in pids}
        server, caller, started = cpu_of(server_pid), own_cpu(), time.perf_counter()
        report = fsync(fs, fsspec.filesystem("file"), catalog="bench", datasets=datasets, direction="download",
                       local_path=str(root), once=True, show_progress=False, n_par=16, executor=pool)  # fmt: skip
        wall = time.perf_counter() - started
        used = sum(cpu_of(pid) - before[pid] for pid in pids)
    assert report.ok and report.transferred, report.failed[:3]
    return {
        "files": len(report.transferred),
        "mib": report.bytes / MiB,
        "wall": wall,
        "workers_cpu": used,
        "server_cpu": cpu_of(server_pid) - server,
        "caller_cpu": own_cpu() - caller,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusionsync-scaling-", dir=".") as tmp:
        work = Path(tmp).resolve()
        os.environ["FUSIONSYNC_CACHE_DIR"] = str(work / "cache")
        server = start_server(work / "server")
        try:
            small = [f"S{d:02}" for d in range(20)]
            seed(server, "bench", {d: {f"2024{s:04}": ["csv"] for s in range(args.files // 20)} for d in small}, 4096)
            seed(server, "bench", {"BIG": {f"2024010{i}": ["bin"] for i in range(1, 5)}}, args.big_mib * MiB)
            fs = FusionFileSystem(credentials=str(server.credentials_file))
            print(f"load average {os.getloadavg()[0]:.1f}")
            for name, datasets in [("small", small), ("big", ["BIG"])]:
                for workers in (1, 2):
                    r = one(fs, server.proc.pid, work / f"{name}-{workers}", datasets, workers)
                    per = r["files"] if name == "small" else r["mib"]
                    unit = "ms/file" if name == "small" else "ms/MiB"
                    who = ("workers", "server", "caller")
                    cpu = ", ".join(f"{w} {1000 * r[w + '_cpu'] / per:.3f}" for w in who)
                    done = f"{r['files']:.0f} files, {r['mib']:.0f} MiB in {r['wall']:.2f} s"
                    print(f"{name:5} {workers} worker(s): {done}; CPU {unit}: {cpu}", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
