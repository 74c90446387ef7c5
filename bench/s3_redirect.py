"""Would answering downloads with a redirect to a presigned S3 URL be worth offering? Downloads streamed through
the server (S3 blobs) against the same bytes fetched the way a redirect would have the client fetch them: one
small request to the server (what answering 307 costs) and a GET of a presigned URL straight from S3.

Run: ``.venv/bin/python -m bench.s3_redirect [--size-mib 64] [--small 400] [--runs 3]``. The S3 endpoint is
moto's server (bench/scaled.py), a Python emulator: figures compare the two paths on one machine, they are
not S3's own speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from tests.helpers import RunningServer, start_server

from bench.scaled import scaled_options

SMALL = 4096
CONCURRENCY = 16


def presigned(server: RunningServer, blob: str) -> str:
    import boto3

    assert server.bucket is not None
    bucket, prefix = server.bucket
    url: str = boto3.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": prefix + blob}, ExpiresIn=600
    )
    return url


async def fetch_all(session: aiohttp.ClientSession, jobs: list[tuple[str, dict[str, str], str | None]]) -> float:
    """GET every (url, headers, presigned url or None) with CONCURRENCY at once; the seconds it took."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(url: str, headers: dict[str, str], direct: str | None) -> None:
        async with gate:
            if direct is None:
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200
                    async for _ in resp.content.iter_chunked(2**20):
                        pass
                return
            async with session.head(url, headers=headers) as resp:  # what answering the redirect costs
                assert resp.status == 200
            async with session.get(direct) as resp:
                assert resp.status == 200
                async for _ in resp.content.iter_chunked(2**20):
                    pass

    start = time.perf_counter()
    await asyncio.gather(*(one(*job) for job in jobs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--small", type=int, default=400, help="how many 4 KiB files")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scaled_options(1) as options:
        server = start_server(Path(tmp) / "root", *options)
        try:
            server.create_dataset("cat", "D")
            big = os.urandom(args.size_mib * 2**20)
            server.upload("cat", "D", "big", "bin", big)
            for i in range(args.small):
                server.upload("cat", "D", f"s{i}", "bin", os.urandom(SMALL))
            listing = server.api("GET", "catalogs/cat/datasets/changes?datasets=D").json()["datasets"][0]
            blobs = {row["values"][5]: row["values"][8] for row in listing["distributions"]}
            headers = {
                "Authorization": f"Bearer {server.token()}",
                "Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'D')}",
            }

            def url(series: str) -> str:
                dist = f"catalogs/cat/datasets/D/datasetseries/{series}/distributions/bin"
                return f"{server.root_url}{dist}/operationType/download"

            cases = {
                f"1 x {args.size_mib} MiB": ["big"],
                f"{args.small} x 4 KiB, {CONCURRENCY} at once": [f"s{i}" for i in range(args.small)],
            }

            async def measure() -> dict[str, dict[str, float]]:
                out: dict[str, dict[str, float]] = {}
                async with aiohttp.ClientSession() as session:
                    for name, series in cases.items():
                        through = [(url(s), headers, None) for s in series]
                        redirected = [(url(s), headers, presigned(server, blobs[s])) for s in series]
                        times: dict[str, list[float]] = {"through the server": [], "redirect + presigned GET": []}
                        for _ in range(args.runs):
                            times["through the server"].append(await fetch_all(session, through))
                            times["redirect + presigned GET"].append(await fetch_all(session, redirected))
                        out[name] = {k: statistics.median(v) for k, v in times.items()}
                return out

            results = asyncio.run(measure())
        finally:
            server.stop()
    for name, row in results.items():
        print(name)
        for path, seconds in row.items():
            print(f"  {path:28} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
