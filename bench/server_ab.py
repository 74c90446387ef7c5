"""Small-request throughput of two versions of the server, measured in turns on the same machine.

Run: ``.venv/bin/python -m bench.server_ab OTHER_SRC [--rounds 5] [--requests 6000] [--workers 2]``, with
OTHER_SRC the ``src`` folder of another checkout (e.g. ``git archive main | tar -x -C /tmp/main``).
Starts that version's server, this checkout's, and this checkout's with ``--workers``; each round every
server gets 4 KiB downloads, then 4 KiB single-request uploads of new series members, from 32 concurrent
aiohttp clients (the order rotates). Prints the requests per second of each round and their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from tests.helpers import RunningServer

HERE = str(Path(__file__).resolve().parent.parent / "src")
CONCURRENCY = 32


def start(src: str, root: Path, *options: str) -> RunningServer:
    env = {**os.environ, "PYTHONPATH": src, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "fusionsync", "serve", "--root", str(root), "--port", "0", "--no-auth", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    server = RunningServer(root, auth=False)
    server.port, server.proc = int(line.split("127.0.0.1:")[1].split("/")[0]), proc
    time.sleep(1.0)
    return server


async def hammer(port: int, paths: list[str], upload: bool) -> float:
    """Requests per second for ``paths`` (GETs, or PUTs of each path's own bytes)."""
    todo = iter(paths)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def client() -> None:
            for path in todo:
                url = f"http://127.0.0.1:{port}{path}"
                if upload:
                    body = path.encode()
                    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
                    answer = session.put(url, data=body, headers={"Digest": f"SHA-256={digest}"})
                else:
                    answer = session.get(url)
                async with answer as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status

        start_time = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        return len(paths) / (time.perf_counter() - start_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other_src")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            "other": start(args.other_src, Path(tmp) / "a"),
            "this": start(HERE, Path(tmp) / "b"),
            f"this, {args.workers} workers": start(HERE, Path(tmp) / "c", "--workers", str(args.workers)),
        }
        try:
            for server in servers.values():
                server.create_dataset("cat", "D")
                for i in range(200):
                    server.upload("cat", "D", f"s{i}", "csv", os.urandom(4096))
            dist = "/api/v1/catalogs/cat/datasets/D/datasetseries/{}/distributions/csv"
            gets = [dist.format(f"s{i % 200}") + "/operationType/download" for i in range(args.requests)]
            rates: dict[str, dict[str, list[float]]] = {name: {"GET": [], "PUT": []} for name in servers}
            for n in range(args.rounds):
                order = list(servers.items())
                for name, server in order[n % len(order) :] + order[: n % len(order)]:
                    rates[name]["GET"].append(asyncio.run(hammer(server.port, gets, upload=False)))
                    puts = [dist.format(f"r{n}-{i}") for i in range(args.requests // 3)]
                    rates[name]["PUT"].append(asyncio.run(hammer(server.port, puts, upload=True)))
        finally:
            for server in servers.values():
                server.stop()
    for name, kinds in rates.items():
        cells = [f"{k} {statistics.median(v):6.0f}/s {[round(x) for x in v]}" for k, v in kinds.items()]
        print(f"{name:18} " + "   ".join(cells))


if __name__ == "__main__":
    main()
