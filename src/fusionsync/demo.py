"""The end-to-end demo: a real server, a sample catalog, syncs down and up, and a summary.

``fusionsync demo`` (``make demo``) starts ``fusionsync serve`` on a free 127.0.0.1 port with
a temporary root, publishes a sample catalog with an upload sync, mirrors it down with a
download sync, edits the mirror and syncs the changes up, checks that a second download
pass has nothing to do, and prints what each step did.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from fusionsync.server.process import ServerProcess
from fusionsync.sync.report import SyncReport

CATALOG = "common"
PRODUCT = "FX"
DATASETS = {"FX_RATES": "Daily FX spot rates", "FX_VOLS": "FX implied volatility surfaces"}
SERIES = ["20241118", "20241119", "20241120", "20241121", "20241122"]


def _csv(rng: random.Random, rows: int) -> bytes:
    pairs = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD"]
    lines = ["pair,timestamp,bid,ask"]
    for i in range(rows):
        mid = rng.uniform(0.5, 160.0)
        lines.append(f"{pairs[i % 6]},{1731888000 + i},{mid:.5f},{mid * 1.0001:.5f}")
    return ("\n".join(lines) + "\n").encode()


def _parquet(rng: random.Random, rows: int) -> bytes | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    table = pa.table(
        {
            "tenor": [f"{1 + i % 24}M" for i in range(rows)],
            "delta": [rng.choice([10, 25, 50, 75, 90]) for _ in range(rows)],
            "vol": [rng.uniform(5, 25) for _ in range(rows)],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_sample(folder: Path) -> tuple[int, int]:
    """Files in the SDK's layout under ``folder``: two datasets, five series, csv and parquet."""
    rng = random.Random(7)
    count = size = 0
    for series in SERIES:
        big = series == SERIES[-1]
        files = {("FX_RATES", "csv"): _csv(rng, 320_000 if big else 20_000)}
        vols = _parquet(rng, 60_000)
        files[("FX_VOLS", "parquet" if vols else "csv")] = vols or _csv(rng, 30_000)
        for (dataset, fmt), data in files.items():
            path = folder / CATALOG / dataset / series / f"{dataset}__{CATALOG}__{series}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            count += 1
            size += len(data)
    return count, size


class Admin:
    """Catalog metadata calls (the SDK's create calls), with a token from the credentials file."""

    def __init__(self, server: ServerProcess) -> None:
        creds = server.credentials()
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            }
        ).encode()
        with urllib.request.urlopen(creds["auth_url"], data=form, timeout=10) as resp:
            self._token = json.load(resp)["access_token"]
        self._root = server.root_url

    def call(self, method: str, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self._root + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass


def _tree(folder: Path, limit: int = 12) -> Tree:
    tree = Tree(f"[bold]{folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files[:limit]:
        tree.add(f"{path.relative_to(folder)}  [dim]{path.stat().st_size:,} bytes")
    if len(files) > limit:
        tree.add(f"[dim]… and {len(files) - limit} more")
    return tree


def run_demo(keep: Path | None = None) -> int:
    from fusionsync.client import FusionFileSystem
    from fusionsync.sync.fsync import fsync

    console = Console()
    if not console.is_terminal:  # piped or logged: room for the summary table on one line per step
        console = Console(width=110)
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="fusionsync-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, SyncReport]] = []
    with ServerProcess(base / "server") as server:
        console.rule("[bold]fusionsync demo")
        console.print(f"Catalog server: [cyan]{server.root_url}[/] (root {server.root}, OAuth2 on)")
        admin = Admin(server)
        admin.call("POST", f"catalogs/{CATALOG}", {"title": "Common"})
        for dataset, title in DATASETS.items():
            admin.call("POST", f"catalogs/{CATALOG}/datasets/{dataset}", {"title": title, "isRawData": False})
        admin.call("POST", f"catalogs/{CATALOG}/products/{PRODUCT}", {"title": "Foreign exchange"})
        admin.call("PUT", f"catalogs/{CATALOG}/productDatasets", {"product": PRODUCT, "datasets": list(DATASETS)})
        fs = FusionFileSystem(credentials=str(server.credentials_file))
        logs = base / "logs"
        logs.mkdir(exist_ok=True)

        def step(name: str, folder: Path, **selection: Any) -> None:
            report = fsync(
                fs, _local(), catalog=CATALOG, local_path=str(folder), log_path=str(logs), once=True, **selection
            )
            assert report is not None
            rows.append((name, report))

        publisher = base / "publisher"
        count, size = write_sample(publisher)
        console.print(f"\n[bold]1. Publish[/]: {count} files ({size / 2**20:.1f} MiB) with an upload sync")
        step("publish (upload)", publisher, datasets=list(DATASETS), direction="upload")

        console.print(f"\n[bold]2. Catalog[/]: fusionsync ls {CATALOG}/datasets/FX_RATES/datasetseries")
        for name in fs.ls(f"{CATALOG}/datasets/FX_RATES/datasetseries", detail=False):
            console.print(f"   {name}")

        mirror = base / "mirror"
        console.print(f"\n[bold]3. Mirror[/]: download sync of product {PRODUCT} into {mirror}")
        step("mirror (download)", mirror, products=[PRODUCT], direction="download")
        console.print(_tree(mirror))

        console.print("\n[bold]4. Edit the mirror[/]: change one file, add a new series member, sync up")
        edited = mirror / CATALOG / "FX_RATES" / SERIES[0] / f"FX_RATES__{CATALOG}__{SERIES[0]}.csv"
        with edited.open("a") as fh:
            fh.write("EURUSD,1731999999,1.05000,1.05010\n")
        new = mirror / CATALOG / "FX_RATES" / "20241125" / f"FX_RATES__{CATALOG}__20241125.csv"
        new.parent.mkdir(parents=True)
        new.write_bytes(_csv(random.Random(8), 5_000))
        step("changes (upload)", mirror, products=[PRODUCT], direction="upload")

        console.print("\n[bold]5. Again[/]: a second download pass finds nothing to do")
        step("again (download)", mirror, products=[PRODUCT], direction="download")

    table = Table(title="What each step did")
    for column in ("step", "files", "MiB", "in sync", "hashed", "failed", "seconds", "MiB/s"):
        table.add_column(column, justify="left" if column == "step" else "right", no_wrap=True)
    ok = True
    for name, report in rows:
        ok = ok and report.ok
        mib = report.bytes / 2**20
        table.add_row(
            name,
            str(len(report.transferred)),
            f"{mib:.1f}",
            str(report.skipped),
            str(report.hashed),
            str(len(report.failed)),
            f"{report.duration:.2f}",
            f"{mib / max(report.duration, 1e-9):.0f}",
        )
    console.print()
    console.print(table)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        console.print(f"Folders kept in {base}")
    last = rows[-1][1]
    ok = ok and not last.transferred
    console.print("[bold green]Demo complete." if ok else "[bold red]Demo finished with errors.")
    return 0 if ok else 1


def _local() -> Any:
    import fsspec

    return fsspec.filesystem("file")
