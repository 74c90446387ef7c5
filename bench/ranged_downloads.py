"""Many concurrent ranged downloads of one large distribution from `fusionsync serve`.

Run: ``.venv/bin/python -m bench.ranged_downloads [--size-mib 64] [--clients 100]``.
Starts a server on 127.0.0.1 with a temporary root, uploads one distribution of random
bytes, then fires ``--clients`` concurrent GETs, each for a random ``downloadRange`` of
it, checks every answer byte for byte and prints the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from tests.helpers import start_server


async def fetch_all(url: str, headers: dict[str, str], data: bytes, clients: int) -> tuple[int, int]:
    rng = random.Random(1)
    spans = []
    for _ in range(clients):
        first = rng.randrange(len(data))
        last = rng.randrange(first, min(len(data), first + len(data) // 2))
        spans.append((first, last))
    connector = aiohttp.TCPConnector(limit=clients)
    errors = 0
    total = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(first: int, last: int) -> int:
            async with session.get(url, params={"downloadRange": f"bytes={first}-{last}"}) as resp:
                body = await resp.read()
                if resp.status != 206 or body != data[first : last + 1]:
                    raise AssertionError(f"range {first}-{last}: status {resp.status}, {len(body)} bytes")
                return len(body)

        results = await asyncio.gather(*(one(a, b) for a, b in spans), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            errors += 1
            print(f"error: {result!r}", file=sys.stderr)
        else:
            total += result
    return total, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "root")
        try:
            data = os.urandom(args.size_mib * 2**20)
            server.create_dataset("bench", "BIG")
            answer = server.upload("bench", "BIG", "20240101", "bin", data)
            assert answer.status == 200, answer.body
            path = "catalogs/bench/datasets/BIG/datasetseries/20240101/distributions/bin/operationType/download"
            headers = {
                "Authorization": f"Bearer {server.token()}",
                "Fusion-Authorization": f"Bearer {server.fusion_token('bench', 'BIG')}",
            }
            start = time.perf_counter()
            total, errors = asyncio.run(fetch_all(server.root_url + path, headers, data, args.clients))
            elapsed = time.perf_counter() - start
        finally:
            server.stop()
    print(
        f"{args.clients} concurrent ranged downloads of a {args.size_mib} MiB distribution: "
        f"{errors} errors, {total / 2**20:.0f} MiB in {elapsed:.2f} s = {total / 2**20 / elapsed:.0f} MiB/s"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
