"""One sync pass by one contender, in a process of its own: ``python -m bench.contenders NAME JSON``.

Prints ``{"seconds": ..., "peak_mib": ...}``. ``ours`` is ``fusionsync.fsync(..., once=True)``;
``ours-p1`` and ``ours-p2`` the same with its transfers in 1 or 2 worker processes (what ``--processes N``
uses; starting them is timed), ``ours-dask2`` with a 2-worker Dask ``LocalCluster`` started first (not
timed: a cluster is there before a sync uses it);
``sdk`` is the official SDK's ``fsync``, which never returns: it runs in a thread and the pass is
over when the expected state is reached (files on disk, or distributions listed by the server).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any


def peak_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def ours(job: dict[str, Any], spread: str = "") -> float | None:
    """One pass (or ``passes``): with more than one, the seconds of the last (warm) pass. ``spread``:
    ``p1``, ``p2`` (worker processes) or ``dask2`` (a LocalCluster) runs the transfers elsewhere."""
    if spread == "dask2":
        from distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            return _ours(job, client, pass_only=True)
    if spread:
        from fusionsync.sync.executors import LocalProcesses

        with LocalProcesses(int(spread[1:])) as pool:
            return _ours(job, pool)
    return _ours(job, None)


def _ours(job: dict[str, Any], executor: Any, pass_only: bool = False) -> float | None:
    import fsspec

    from fusionsync import FusionFileSystem, fsync

    fs = FusionFileSystem(credentials=job["credentials"])
    passes = job.get("passes", 1)
    for _ in range(passes):
        started = time.perf_counter()
        report = fsync(
            fs,
            fsspec.filesystem("file"),
            datasets=job["datasets"],
            catalog=job["catalog"],
            direction=job["direction"],
            local_path=job["local_path"],
            n_par=job.get("n_par", 16),
            show_progress=False,
            log_path=job["log_path"],
            once=True,
            executor=executor,
        )
        assert report is not None and report.ok, report.failed[:3] if report else None
    return time.perf_counter() - started if passes > 1 or pass_only else None


def _listed(job: dict[str, Any]) -> int:
    creds = json.loads(Path(job["credentials"]).read_text())
    form = f"grant_type=client_credentials&client_id={creds['client_id']}&client_secret={creds['client_secret']}"
    with urllib.request.urlopen(creds["auth_url"], data=form.encode()) as resp:
        token = json.load(resp)["access_token"]
    total = 0
    for dataset in job["datasets"]:
        url = f"{creds['root_url']}catalogs/{job['catalog']}/datasets/changes?datasets={dataset}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as resp:
            listing = json.load(resp)["datasets"]
        total += len(listing[0]["distributions"]) if listing else 0
    return total


def _downloaded(job: dict[str, Any]) -> int:
    root = Path(job["local_path"])
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def sdk(job: dict[str, Any]) -> float | None:
    import fsspec
    from fusion import Fusion
    from fusion.credentials import FusionCredentials
    from fusion.fs_sync import fsync

    creds = json.loads(Path(job["credentials"]).read_text())
    fusion = Fusion(credentials=FusionCredentials.from_file(job["credentials"]), root_url=creds["root_url"])
    args = dict(
        datasets=job["datasets"],
        catalog=job["catalog"],
        direction=job["direction"],
        local_path=job["local_path"].rstrip("/") + "/",
        show_progress=False,
        log_path=job["log_path"],
        n_par=job.get("n_par", 16),
        log_level=logging.CRITICAL,
    )
    threading.Thread(
        target=fsync, args=(fusion.get_fusion_filesystem(), fsspec.filesystem("file")), kwargs=args, daemon=True
    ).start()
    count = _listed if job["direction"] == "upload" else _downloaded
    interval = float(job.get("poll", 0.2))
    while count(job) < job["expected"]:
        time.sleep(interval)
    if job["direction"] == "download":  # the SDK writes in place: wait until every file is whole
        while sum(p.stat().st_size for p in Path(job["local_path"]).rglob("*") if p.is_file()) < job["bytes"]:
            time.sleep(interval)
    return None


def main() -> None:
    name, job = sys.argv[1], json.loads(sys.argv[2])
    start = time.perf_counter()
    if name.startswith("ours-"):
        last_pass = ours(job, name.removeprefix("ours-"))
    else:
        last_pass = {"ours": ours, "sdk": sdk}[name](job)
    seconds = last_pass if last_pass is not None else time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib()}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
