"""Load test of `fusionsync serve`: many concurrent clients listing, downloading and uploading.

Run: ``.venv/bin/python -m bench.load [--clients 200] [--seconds 30]``.

Starts one server (authentication on) on 127.0.0.1 with a temporary root, seeds a catalog
(datasets, series members, distributions from empty to 20 MiB, some multipart), then runs
``--clients`` concurrent clients for ``--seconds`` seconds, each looping over a random mix of
listings (catalogs, datasets, series members, distributions, the change listing), HEADs,
whole and ranged downloads, and uploads (single-request and multipart; new series members,
replacements of a client's own distributions, contended replacements of a few hot ones).
Every answer is checked: downloads byte for byte against what was uploaded, listings against
what was acknowledged (see ``bench/load_model.py`` for which version a read may return).
Afterwards every distribution is downloaded once more: an acknowledged upload that is neither
there nor replaced by a later one is a lost upload.

Prints a table (per kind: operations and requests per second, errors, latency p50/p99, MB
moved), writes it to ``bench/results/load.json`` and exits 1 on any error or lost upload.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers import RunningServer, start_server

from bench.load_client import Client, Failure, Shared
from bench.load_fs import FsClient
from bench.load_model import Key, KindStats, MiB, Pool, Registry, Stats, Version, key_path, percentile
from bench.scaled import scaled_options, workers_option
from fusionsync.catalog.digest import PART_SIZE

CATALOG = "load"
UPLOAD_DATASETS = [f"D{i}" for i in range(6)]
HOT = "HOT"
EXTRA = ("extra", "X0")
RESULTS = Path(__file__).parent / "results" / "load.json"


def seed_plan() -> list[tuple[Key, int, bool]]:
    """(distribution, size, hot) of the seeded catalog."""
    plan: list[tuple[Key, int, bool]] = []
    for n, dataset in enumerate(UPLOAD_DATASETS):
        for day in range(1, 5):
            series = f"202401{day:02d}"
            plan.append(((CATALOG, dataset, series, "csv"), 1024 * (1 + (7 * n + day) % 64), False))
            plan.append(((CATALOG, dataset, series, "parquet"), MiB + 97_531 * (5 * n + day), False))
    plan.append(((CATALOG, "D0", "20240101", "bin"), 4 * PART_SIZE - 12_345, False))
    plan.append(((CATALOG, "D1", "20240101", "bin"), PART_SIZE + 1, False))
    plan.append(((CATALOG, "D2", "20240101", "txt"), 0, False))
    hot = [("csv", 2048), ("parquet", MiB), ("bin", PART_SIZE), ("zip", 2 * PART_SIZE + 777)]
    plan += [((CATALOG, HOT, "20240101", fmt), size, True) for fmt, size in hot]
    plan.append(((*EXTRA, "20240101", "csv"), 4096, False))
    return plan


async def seed(shared: Shared) -> None:
    """Create the catalogs and datasets, then upload the seed distributions (8 at a time)."""
    seeder = Client(shared, 10_000)
    scratch = KindStats()
    async with seeder.own_session():
        await seeder.api_token_request(scratch)
        for catalog, datasets in shared.datasets.items():
            await seeder.call(scratch, "POST", catalog, json={}, expect=(201, 409))
            for dataset in datasets:
                body = {"isRawData": False, "title": f"load test {dataset}"}
                await seeder.call(scratch, "POST", f"{catalog}/datasets/{dataset}", json=body, expect=(201, 409))
        await seeder.first_tokens(scratch)
        gate = asyncio.Semaphore(8)

        async def one(key: Key, size: int, hot: bool) -> None:
            async with gate:
                version = await seeder.new_version(key, size, "seed", hot)
                if size > PART_SIZE:
                    await seeder.put_multipart(scratch, version)
                else:
                    await seeder.put_single(scratch, version)

        await asyncio.gather(*(one(*item) for item in seed_plan()))


async def final_check(shared: Shared, stats: Stats) -> tuple[int, int]:
    """Download every distribution once more and compare listings; return (distributions, lost uploads)."""
    checker = Client(shared, 10_001)
    ks = stats.kind("final_check")
    reg = shared.registry
    lost = 0
    finals: dict[Key, Version | None] = {}
    async with checker.own_session(limit=16):
        await checker.first_tokens(ks)
        gate = asyncio.Semaphore(16)

        async def fetch(key: Key) -> None:
            async with gate:
                finals[key] = await final_version(checker, ks, key)

        keys = list(reg.keys)
        await asyncio.gather(*(fetch(k) for k in keys))
        for key in keys:
            state = reg.keys[key]
            final = finals.get(key)
            missing = state.lost(final)
            lost += len(missing)
            problem = state.problem(final, math.inf, "final state") if final is not None else None
            if missing:
                stats.error("final_check", f"{key_path(key)}: {len(missing)} acknowledged upload(s) lost", "LostUpload")
            elif problem:
                stats.error("final_check", problem, "Failure")
        await check_listings(checker, ks, stats, finals)
    return len(finals), lost


async def final_version(checker: Client, ks: KindStats, key: Key) -> Version | None:
    """The version a distribution holds now (None when it is missing or holds unknown bytes)."""
    try:
        headers, body = await checker.call(
            ks, "GET", key_path(key) + "/operationType/download", expect=(200, 404), fusion=key
        )
    except Failure as exc:
        checker.s.stats.error("final_check", str(exc), "Failure")
        return None
    ks.down += len(body)
    if headers.get("x-jpmc-checksum") is None:
        return None
    checksum = await asyncio.to_thread(lambda: hashlib.sha256(body).digest())
    version = checker.s.registry.keys[key].by_checksum.get(headers["x-jpmc-checksum"])
    if version is None or checksum != base64.b64decode(version.checksum):
        checker.s.stats.error("final_check", f"{key_path(key)} holds bytes of no upload", "Mismatch")
        return None
    return version


async def check_listings(checker: Client, ks: KindStats, stats: Stats, finals: dict[Key, Version | None]) -> None:
    """Every held distribution is in its series listing and in the change listing, with its digest."""
    reg = checker.s.registry
    for catalog, dataset in sorted({(k[0], k[1]) for k in finals}):
        held = {k: v for k, v in finals.items() if (k[0], k[1]) == (catalog, dataset) and v is not None}
        series = await checker.collection(ks, f"{catalog}/datasets/{dataset}/datasetseries")
        for key in held:
            if key[2] not in series:
                stats.error("final_check", f"series listing misses {key_path(key)}", "Failure")
        _, body = await checker.call(ks, "GET", f"{catalog}/datasets/changes", params={"datasets": dataset})
        rows: dict[str, list[Any]] = {}
        for entry in json.loads(body)["datasets"]:
            rows.update({row["key"]: row["values"] for row in entry["distributions"]})
        for key, version in held.items():
            values = rows.get(f"{dataset}/{key[2]}/distribution.{key[3]}")
            if values is None or values[2] != f"SHA-256={version.fsync}" or int(values[1]) != reg.keys[key].size:
                stats.error("final_check", f"change listing disagrees with the bytes of {key_path(key)}", "Failure")


def processes(pid: int) -> list[int]:
    """A server's processes: itself and its workers."""
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [pid, *(int(p) for p in fh.read().split())]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a server's processes so far."""
    total = 0.0
    for each in processes(pid):
        with open(f"/proc/{each}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def loop_lag(samples: list[float], stop: asyncio.Event, every: float = 0.05) -> None:
    """How late the load generator's event loop wakes up (it is a bottleneck when this grows)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(every)
        samples.append(loop.time() - start - every)


def proc_status_kib(pid: int, field: str) -> int:
    """The sum of a field of /proc/PID/status over a server's processes."""
    total = 0
    for each in processes(pid):
        with open(f"/proc/{each}/status") as fh:
            total += next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    return total


async def run(server: RunningServer, args: argparse.Namespace) -> dict[str, Any]:
    creds = server.credentials()
    stats = Stats()
    shared = Shared(
        root_url=server.root_url,
        auth_url=creds["auth_url"],
        credentials=creds,
        credentials_file=str(server.credentials_file),
        registry=Registry(),
        pool=Pool(),
        stats=stats,
        datasets={CATALOG: [*UPLOAD_DATASETS, HOT], EXTRA[0]: [EXTRA[1]]},
        upload_datasets=[(CATALOG, d) for d in UPLOAD_DATASETS],
    )
    start = time.perf_counter()
    await seed(shared)
    seeded = time.perf_counter() - start
    every = round(1 / args.fs_share) if args.fs_share > 0 else 0
    clients = [
        FsClient(shared, i) if every and i % every == every - 1 else Client(shared, i) for i in range(args.clients)
    ]
    assert server.proc is not None
    lags: list[float] = []
    stop = asyncio.Event()
    lagging = asyncio.ensure_future(loop_lag(lags, stop))
    load_before = os.getloadavg()[0]
    server_cpu, own_cpu = cpu_seconds(server.proc.pid), time.process_time()
    shared.deadline = time.monotonic() + args.seconds
    start = time.perf_counter()
    await asyncio.gather(*(c.run() for c in clients))
    elapsed = time.perf_counter() - start
    server_cpu, own_cpu = cpu_seconds(server.proc.pid) - server_cpu, time.process_time() - own_cpu
    stop.set()
    await lagging
    lags.sort()
    load_after = os.getloadavg()[0]
    rss = proc_status_kib(server.proc.pid, "VmRSS") / 1024
    peak = proc_status_kib(server.proc.pid, "VmHWM") / 1024
    load_kinds = {name: k for name, k in stats.kinds.items() if name != "final_check"}
    load_errors = sum(k.errors for k in load_kinds.values())
    start = time.perf_counter()
    checked, lost = await final_check(shared, stats)
    checked_in = time.perf_counter() - start
    versions = [v for ks in shared.registry.keys.values() for v in ks.versions if v.kind != "seed"]
    return {
        "clients": args.clients,
        "fs_clients": sum(isinstance(c, FsClient) for c in clients),
        "seconds": args.seconds,
        "elapsed_s": round(elapsed, 2),
        "seed_s": round(seeded, 2),
        "kinds": {name: k.summary(elapsed) for name, k in sorted(load_kinds.items())},
        "total": {
            "ops": sum(k.ops for k in load_kinds.values()),
            "ops_per_s": round(sum(k.ops for k in load_kinds.values()) / elapsed, 1),
            "requests": sum(k.requests for k in load_kinds.values()),
            "requests_per_s": round(sum(k.requests for k in load_kinds.values()) / elapsed, 1),
            "errors": load_errors,
            "mb_per_s_down": round(sum(k.down for k in load_kinds.values()) / 1e6 / elapsed, 1),
            "mb_per_s_up": round(sum(k.up for k in load_kinds.values()) / 1e6 / elapsed, 1),
        },
        "uploads": {
            "sent": len(versions),
            "acknowledged": sum(v.acked for v in versions),
            "distributions_checked": checked,
            "lost": lost,
            "final_check_errors": stats.kind("final_check").errors,
            "final_check_s": round(checked_in, 2),
        },
        "server": {"rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1), "cpu_s": round(server_cpu, 1)},
        "load_generator": {
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpu_s": round(own_cpu, 1),
            "loop_lag_p50_ms": round(percentile(lags, 0.5) * 1000, 1),
            "loop_lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        },
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after},
        "errors": stats.errors,
        "error_types": dict(stats.error_types),
        "error_samples": stats.error_samples,
    }


def server_log_problems(server: RunningServer) -> list[str]:
    try:
        lines = server.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [ln for ln in lines if "Traceback" in ln or " ERROR " in ln or "Error handling request" in ln]


def print_report(result: dict[str, Any]) -> None:
    head = f"{'kind':<20}{'ops':>8}{'ops/s':>9}{'req/s':>9}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}"
    head += f"{'MB down':>9}{'MB up':>8}"
    print(head)
    print("-" * len(head))
    for name, k in result["kinds"].items():
        print(
            f"{name:<20}{k['ops']:>8}{k['ops_per_s']:>9.1f}{k['requests_per_s']:>9.1f}{k['errors']:>8}"
            f"{k['p50_ms']:>9.1f}{k['p99_ms']:>9.1f}{k['mb_down']:>9.1f}{k['mb_up']:>8.1f}"
        )
    t, u, s = result["total"], result["uploads"], result["server"]
    print("-" * len(head))
    print(f"{'total':<20}{t['ops']:>8}{t['ops_per_s']:>9.1f}{t['requests_per_s']:>9.1f}{t['errors']:>8}")
    print(
        f"\n{result['clients']} clients ({result['fs_clients']} through FusionFileSystem) for {result['seconds']} s "
        f"(all done after {result['elapsed_s']} s): {t['requests_per_s']:.0f} requests/s, "
        f"{t['mb_per_s_down']:.1f} MB/s down, {t['mb_per_s_up']:.1f} MB/s up"
    )
    print(
        f"uploads: {u['sent']} sent, {u['acknowledged']} acknowledged; final check of "
        f"{u['distributions_checked']} distributions in {u['final_check_s']} s: {u['lost']} lost uploads, "
        f"{u['final_check_errors']} errors"
    )
    g, m = result["load_generator"], result["machine"]
    print(
        f"server: RSS {s['rss_mib']} MiB at the end, peak {s['peak_rss_mib']} MiB, {s['cpu_s']} CPU s; "
        f"load generator: {g['cpu_s']} CPU s, loop lag p50 {g['loop_lag_p50_ms']} ms p99 {g['loop_lag_p99_ms']} ms; "
        f"load average {m['load_average_before']:.1f} → {m['load_average_after']:.1f} on {m['cpus']} CPUs"
    )
    print(f"errors: {result['errors']}, server log problems: {len(result['server_log_problems'])}")
    for sample in result["error_samples"][:10] + result["server_log_problems"][:10]:
        print(f"  {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fs-share", type=float, default=0.2, help="share of clients using FusionFileSystem")
    parser.add_argument("--page-size", type=int, default=100, help="the server's page size")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    parser.add_argument(
        "--scaled", action="store_true", help="metadata in PostgreSQL, blobs in S3 (moto's server): bench/scaled.py"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusionsync-load-") as tmp, contextlib.ExitStack() as stack:
        storage = stack.enter_context(scaled_options(args.workers)) if args.scaled else workers_option(args.workers)
        server = start_server(Path(tmp) / "root", "--page-size", str(args.page_size), *storage)
        try:
            result = asyncio.run(run(server, args))
        finally:
            server.stop()
        result["server_log_problems"] = server_log_problems(server)
        result["server_options"] = storage
    print_report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.json}")
    failed = result["errors"] or result["uploads"]["lost"] or result["server_log_problems"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
