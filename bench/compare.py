"""fusionsync against the official SDK's fsync and against the machine's limit, workload by workload.

Run: ``.venv/bin/python -m bench.compare [--scale 1.0] [--runs 3] [--only P1,P2] [--sdk-timeout 600]
[--workers N] [--scaled]`` (``--workers``: the server's processes; ``--scaled``: its metadata in PostgreSQL and
blobs in S3, see ``bench/scaled.py``).
``--variant NAME=CHECKOUT`` (repeatable) adds a contender ``ours@NAME``: fusionsync from another checkout's
``src``, run in turn with the others on the same server and data (before/after comparisons on a noisy
machine); ``--contenders`` picks which run.
P1, P2 and P6 also run the contenders ``ours-p1``, ``ours-p2`` (transfers in 1 or 2 worker processes) and
``ours-dask2`` (a 2-worker Dask LocalCluster).
Starts ``fusionsync serve`` on 127.0.0.1, seeds it, and for each workload runs each contender in a
fresh process (median wall time of ``--runs``, peak RSS), then prints one table and writes it to
``bench/results/latest.json``. The limit is ``curl --parallel`` plus ``sha256sum`` on the same
URLs and bytes (or a bare scandir+stat walk for P3). ``--scale 0.1`` makes a quick run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import MiB, big_file
from bench.scaled import scaled_options, workers_option
from fusionsync.catalog.digest import file_digests
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.server.process import ServerProcess

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SPREAD = ("ours-p1", "ours-p2", "ours-dask2")
"""Contenders with the transfers elsewhere (P2, P6): ``--processes 1``, ``--processes 2`` (starting the processes
timed), a 2-worker Dask LocalCluster (started before the timed pass)."""


@dataclass
class Row:
    workload: str
    times: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(
        self,
        work: Path,
        runs: int,
        sdk_timeout: float,
        server_options: list[str],
        contenders: set[str] | None = None,
        variants: dict[str, Path] | None = None,
    ) -> None:
        self.work = work
        self.runs = runs
        self.sdk_timeout = sdk_timeout
        self.contenders = contenders
        self.variants = variants or {}
        self.server = ServerProcess(work / "server", "--no-auth", *server_options).start()
        self.creds = work / "creds.json"
        base = self.server.base
        self.creds.write_text(
            json.dumps(
                {
                    "client_id": "bench",
                    "client_secret": "bench",
                    "resource": "bench",
                    "auth_url": base + "/oauth2/token",
                    "root_url": base + "/api/v1/",
                }
            )
        )
        self.counter = 0

    def close(self) -> None:
        self.server.stop()

    # -- catalog set-up ------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        import urllib.request

        req = urllib.request.Request(
            self.server.root_url + path,
            data=json.dumps(body or {}).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req):
            pass

    def fresh_catalog(self, datasets: list[str]) -> str:
        self.counter += 1
        catalog = f"c{self.counter}"
        self.api("POST", f"catalogs/{catalog}")
        for dataset in datasets:
            self.api("POST", f"catalogs/{catalog}/datasets/{dataset}", {"isRawData": False})
        return catalog

    def publish(self, tree: Path, catalog: str, datasets: list[str]) -> None:
        job = self.job("upload", catalog, datasets, tree)
        self.contender("ours", job)

    # -- contenders ----------------------------------------------------------------------
    def job(self, direction: str, catalog: str, datasets: list[str], local: Path, **extra: Any) -> dict[str, Any]:
        return {
            "credentials": str(self.creds),
            "direction": direction,
            "catalog": catalog,
            "datasets": datasets,
            "local_path": str(local),
            "log_path": str(self.work),
            **extra,
        }

    def contender(self, name: str, job: dict[str, Any]) -> tuple[float, float]:
        name, _, variant = name.partition("@")
        source = self.variants[variant] / "src" if variant else REPO / "src"
        env = {
            **os.environ,
            "FUSIONSYNC_CACHE_DIR": str(self.work / f"cache-{job['catalog']}-{variant}"),
            # This checkout's fusionsync (or a variant's) and bench, whatever the venv's editable install points at.
            "PYTHONPATH": os.pathsep.join([str(source), str(REPO)]),
        }
        timeout = self.sdk_timeout if name == "sdk" else 3600
        done = subprocess.run(
            [sys.executable, "-m", "bench.contenders", name, json.dumps(job)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=self.work,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return float(result["seconds"]), float(result["peak_mib"])

    def ours(self, run: Callable[[str], Callable[[int], tuple[float, float]]]) -> dict[str, Any]:
        """This checkout's contender and one per ``--variant``."""
        return {"ours": run("ours"), **{f"ours@{v}": run(f"ours@{v}") for v in self.variants}}

    def spread(self, run: Callable[[str], Callable[[int], tuple[float, float]]]) -> dict[str, Any]:
        """This checkout's transfers in 1 and 2 worker processes and on a 2-worker Dask LocalCluster."""
        return {name: run(name) for name in SPREAD}

    def measure(self, row: Row, contenders: dict[str, Callable[[int], tuple[float, float]]]) -> None:
        """``--runs`` rounds, the contenders interleaved in a rotating order (the machine drifts), medians kept."""
        names = [n for n in contenders if self.contenders is None or n in self.contenders]
        times: dict[str, list[float]] = {n: [] for n in names}
        peaks: dict[str, list[float]] = {n: [] for n in names}
        given_up: set[str] = set()
        for i in range(self.runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                if name in given_up:
                    continue
                try:
                    seconds, peak = contenders[name](i)
                except subprocess.TimeoutExpired:
                    row.notes.append(f"{name} did not finish within {self.sdk_timeout:.0f} s")
                    given_up.add(name)
                    continue
                times[name].append(seconds)
                peaks[name].append(peak)
        for name in names:
            if name not in given_up and times[name]:
                row.times[name] = statistics.median(times[name])
                row.peaks[name] = max(peaks[name])

    # -- limits --------------------------------------------------------------------------
    def curl_download(self, urls: list[tuple[str, Path]], parallel: int = 16) -> float:
        config = self.work / "curl-get.cfg"
        config.write_text("\nnext\n".join(f'url = "{u}"\noutput = "{p}"\ncreate-dirs' for u, p in urls) + "\n")
        start = time.perf_counter()
        subprocess.run(
            ["curl", "-sf", "--no-progress-meter", "-Z", "--parallel-max", str(parallel), "-K", str(config)], check=True
        )
        _sha256sum([p for _, p in urls])
        return time.perf_counter() - start

    def curl_upload(self, files: list[tuple[str, Path]], parallel: int = 16) -> float:
        start = time.perf_counter()
        digests = [file_digests(str(p), whole=False).fsync_digest() for _, p in files]
        config = self.work / "curl-put.cfg"
        config.write_text(
            "\nnext\n".join(
                f'url = "{u}"\nupload-file = "{p}"\nheader = "Digest: SHA-256={d}"\noutput = "/dev/null"'
                for (u, p), d in zip(files, digests, strict=True)
            )
            + "\n"
        )
        subprocess.run(
            ["curl", "-sf", "--no-progress-meter", "-Z", "--parallel-max", str(parallel), "-K", str(config)], check=True
        )
        return time.perf_counter() - start

    def url(self, key: DistKey, download: bool = True) -> str:
        return self.server.root_url + "catalogs/" + key.remote_path + ("/operationType/download" if download else "")


def _sha256sum(paths: list[Path]) -> None:
    for i in range(0, len(paths), 2000):
        subprocess.run(["sha256sum", *map(str, paths[i : i + 2000])], check=True, capture_output=True)


def write_tree(root: Path, catalog: str, keys: list[DistKey], make: Callable[[DistKey, Path], None]) -> None:
    for key in keys:
        path = root / local_relative_path(DistKey(catalog, key.dataset, key.series, key.format))
        path.parent.mkdir(parents=True, exist_ok=True)
        make(key, path)


def many_keys(datasets: int, series: int) -> list[DistKey]:
    return [DistKey("", f"D{d:03}", f"2024{s:04}", "csv") for d in range(datasets) for s in range(series)]


def small(key: DistKey, path: Path) -> None:
    path.write_bytes((f"{key.dataset},{key.series}\n" * 400)[:4096].encode())


def bulk_workload(b: Bench, name: str, direction: str, count: int, size: int) -> Row:
    row = Row(f"{name} {direction} {count} x {size // MiB} MiB")
    keys = [DistKey("", "BIG", f"2024010{i + 1}", "bin") for i in range(count)]
    source = b.work / f"{name}-source"
    write_tree(source, "SRC", keys, lambda k, p: big_file(p, size))
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if direction == "download":
        catalog = b.fresh_catalog(["BIG"])
        shutil.move(str(source / "SRC"), str(source / catalog))
        for p in (source / catalog).rglob("*"):
            if p.is_file():
                p.rename(p.with_name(p.name.replace("__SRC__", f"__{catalog}__")))
        b.publish(source, catalog, ["BIG"])

        def run(contender: str) -> Callable[[int], tuple[float, float]]:
            def go(i: int) -> tuple[float, float]:
                dest = b.work / f"{name}-{contender}-{i}"
                try:
                    return b.contender(
                        contender,
                        b.job("download", catalog, ["BIG"], dest, expected=count, bytes=count * size, poll=0.05),
                    )
                finally:
                    shutil.rmtree(dest, ignore_errors=True)

            return go

        urls = [
            (b.url(DistKey(catalog, k.dataset, k.series, k.format)), b.work / "lim" / f"{i}")
            for i, k in enumerate(keys)
        ]
        limit = lambda i: (b.curl_download(urls, parallel=count), 0.0)  # noqa: E731
        spread = b.spread(run) if name == "P1" else {}  # per-worker throughput for big files (bench/README.md)
        b.measure(row, {**b.ours(run), **spread, "sdk": run("sdk"), "limit": limit})
    else:

        def run_up(contender: str) -> Callable[[int], tuple[float, float]]:
            def go(i: int) -> tuple[float, float]:
                catalog = b.fresh_catalog(["BIG"])
                tree = b.work / f"{name}-up-{catalog}"
                write_tree(
                    tree,
                    catalog,
                    keys,
                    lambda k, p: p.hardlink_to(
                        source / local_relative_path(DistKey("SRC", k.dataset, k.series, k.format))
                    ),
                )
                return b.contender(contender, b.job("upload", catalog, ["BIG"], tree, expected=count, poll=0.05))

            return go

        def limit(i: int) -> tuple[float, float]:
            catalog = b.fresh_catalog(["BIG"])
            pairs = [
                (b.url(DistKey(catalog, k.dataset, k.series, k.format), download=False), f)
                for k, f in zip(keys, files, strict=True)
            ]
            return b.curl_upload(pairs, parallel=count), 0.0

        b.measure(row, {**b.ours(run_up), "sdk": run_up("sdk"), "limit": limit})
    return row


def small_workload(b: Bench, name: str, direction: str, datasets: int, series: int) -> Row:
    keys = many_keys(datasets, series)
    names = sorted({k.dataset for k in keys})
    row = Row(f"{name} {direction} {len(keys)} x 4 KiB")
    if direction == "download":
        catalog = b.fresh_catalog(names)
        tree = b.work / f"{name}-source"
        write_tree(tree, catalog, keys, small)
        b.publish(tree, catalog, names)

        def run(contender: str) -> Callable[[int], tuple[float, float]]:
            def go(i: int) -> tuple[float, float]:
                # A fresh folder each run, kept until the bench ends: on ext4 without a journal (this machine),
                # creating a file within minutes of deleting thousands scans past every recently deleted inode
                # (the kernel's recently_deleted()), which would slow whichever contender ran next.
                dest = b.work / f"{name}-{contender}-{i}"
                job = b.job("download", catalog, names, dest, expected=len(keys), bytes=len(keys) * 4096, poll=1.0)
                return b.contender(contender, job)

            return go

        def limit(i: int) -> tuple[float, float]:
            # The same files in the same layout (one folder per series member) as the other contenders write.
            dest = b.work / f"{name}-limit-{i}"
            full = [DistKey(catalog, k.dataset, k.series, k.format) for k in keys]
            return b.curl_download([(b.url(k), dest / local_relative_path(k)) for k in full]), 0.0

        b.measure(row, {**b.ours(run), **b.spread(run), "sdk": run("sdk"), "limit": limit})
    else:

        def run_up(contender: str) -> Callable[[int], tuple[float, float]]:
            def go(i: int) -> tuple[float, float]:
                catalog = b.fresh_catalog(names)
                tree = b.work / f"{name}-up-{catalog}"
                write_tree(tree, catalog, keys, small)
                return b.contender(contender, b.job("upload", catalog, names, tree, expected=len(keys), poll=1.0))

            return go

        def limit(i: int) -> tuple[float, float]:
            catalog = b.fresh_catalog(names)
            tree = b.work / f"{name}-lim-{catalog}"
            write_tree(tree, catalog, keys, small)
            pairs = [
                (
                    b.url(DistKey(catalog, k.dataset, k.series, k.format), download=False),
                    tree / local_relative_path(DistKey(catalog, k.dataset, k.series, k.format)),
                )
                for k in keys
            ]
            return b.curl_upload(pairs), 0.0

        b.measure(row, {**b.ours(run_up), **b.spread(run_up), "sdk": run_up("sdk"), "limit": limit})
    return row


def idle_workload(b: Bench, count: int) -> list[Row]:
    """P3: a pass with nothing to do over ``count`` local files (upload direction)."""
    datasets, series = 100, max(1, count // 100)
    keys = many_keys(datasets, series)
    names = sorted({k.dataset for k in keys})
    catalog = b.fresh_catalog(names)
    tree = b.work / "p3"
    write_tree(tree, catalog, keys, small)
    b.publish(tree, catalog, names)  # first pass: uploads and fills the hash cache
    warm = Row(f"P3 idle pass, {len(keys)} files, warm (2nd pass)")
    b.measure(warm, {"ours": lambda i: b.contender("ours", b.job("upload", catalog, names, tree, passes=2))})
    restart = Row(f"P3 idle pass, {len(keys)} files, new process")

    def walk(i: int) -> tuple[float, float]:
        start = time.perf_counter()
        stack = [str(tree)]
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        entry.stat(follow_symlinks=False)
        return time.perf_counter() - start, 0.0

    b.measure(restart, {"ours": lambda i: b.contender("ours", b.job("upload", catalog, names, tree)), "limit": walk})
    if "limit" in restart.times:
        warm.times["limit"] = restart.times["limit"]
    restart.notes.append("the SDK is not run here: it rehashes every file at start")
    restart.notes.append("new process: includes starting Python and importing fusionsync, aiohttp and fsspec")
    return [warm, restart]


def rss_workload(b: Bench, size: int) -> Row:
    row = bulk_workload(b, "P4", "download", 1, size)
    row.workload = f"P4 peak RSS, download 1 x {size // MiB} MiB"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Scale sizes and counts (0.1 for a quick run).")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="P1,P2,P3,P4,P5,P6")
    parser.add_argument("--sdk-timeout", type=float, default=900.0)
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    parser.add_argument("--scaled", action="store_true", help="metadata in PostgreSQL, blobs in S3 (bench/scaled.py)")
    parser.add_argument(
        "--contenders", help="Which to run (ours, ours-p1, ours-p2, ours-dask2, sdk, limit, ours@VARIANT); default all."
    )
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=CHECKOUT", help="Also run another checkout's src."
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    s = args.scale
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fusionsync-bench-", dir=".") as tmp, contextlib.ExitStack() as stack:
        options = stack.enter_context(scaled_options(args.workers)) if args.scaled else workers_option(args.workers)
        variants = {k: Path(p) for k, p in (v.split("=", 1) for v in args.variant)}
        chosen = set(args.contenders.split(",")) if args.contenders else None
        b = Bench(Path(tmp).resolve(), args.runs, args.sdk_timeout, options, chosen, variants)
        try:
            plan: list[tuple[str, Callable[[], Any]]] = [
                ("P1", lambda: bulk_workload(b, "P1", "download", 4, int(256 * MiB * s))),
                ("P2", lambda: small_workload(b, "P2", "download", 100, max(1, int(100 * s)))),
                ("P3", lambda: idle_workload(b, int(100_000 * s))),
                ("P4", lambda: rss_workload(b, int(2048 * MiB * s))),
                ("P5", lambda: bulk_workload(b, "P5", "upload", 4, int(256 * MiB * s))),
                ("P6", lambda: small_workload(b, "P6", "upload", 100, max(1, int(100 * s)))),
            ]
            for name, work in plan:
                if name in only:
                    result = work()
                    rows.extend(result if isinstance(result, list) else [result])
                    print_row(rows[-1], flush=True)
        finally:
            b.close()
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    data = {"scale": s, "runs": args.runs, "rows": [r.__dict__ for r in rows]}
    (RESULTS / "latest.json").write_text(json.dumps(data, indent=2))
    return 0


def print_row(row: Row, flush: bool = False) -> None:
    print(f"done: {row.workload}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.times.items()), flush=flush)


def print_table(rows: list[Row]) -> None:
    print()
    columns = ("fusionsync", "SDK", "limit", "SDK/ours", "ours/limit", "RSS ours", "RSS SDK")
    widths = (11, 11, 9, 9, 11, 9, 8)
    print(f"{'workload':44} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        ours, sdk, limit = (r.times.get(k) for k in ("ours", "sdk", "limit"))
        cell = lambda v: f"{v:9.2f} s" if v is not None else f"{'-':>11}"  # noqa: E731
        ratio = lambda a, c: f"{a / c:8.1f}x" if a and c else f"{'-':>9}"  # noqa: E731
        print(
            f"{r.workload:44} {cell(ours)} {cell(sdk)} {cell(limit)[2:]} {ratio(sdk, ours)} {ratio(ours, limit):>11} "
            f"{r.peaks.get('ours', 0):7.0f} M {r.peaks.get('sdk', 0):6.0f} M"
        )
        for name, seconds in r.times.items():
            if "@" in name or name in SPREAD:
                vs = f", {seconds / limit:.2f}x limit" if limit else ""
                print(f"    {name}: {seconds:.2f} s{vs}, peak RSS {r.peaks.get(name, 0):.0f} MiB (caller)")
        for note in r.notes:
            print(f"    note: {note}")


if __name__ == "__main__":
    sys.exit(main())
