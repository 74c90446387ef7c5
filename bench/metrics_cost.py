"""What the server's request metrics cost per request, measured in one process without the network.

Run: ``.venv/bin/python -m bench.metrics_cost [--calls 200000]``. Calls a small JSON handler through the
metrics middleware and directly, in turns (5 rounds each), on a request routed like a real one, and prints
the median cost per call of each and the difference: what ``/metrics`` adds to every request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from fusionsync.server.common import json_response
from fusionsync.server.metrics import RequestStats, measure

ROUTE = "/api/v1/catalogs/{catalog}/datasets/{dataset}"


async def handler(request: web.Request) -> web.StreamResponse:
    return json_response({"identifier": "D", "title": "x"})


async def rounds(calls: int) -> tuple[list[float], list[float]]:
    app = web.Application()
    app.router.add_get(ROUTE, handler)
    request = make_mocked_request("GET", "/api/v1/catalogs/c/datasets/D", app=app)
    match = await app.router.resolve(request)
    request._match_info = match  # routed, as the server's requests are
    middleware = measure(RequestStats())
    plain, measured = [], []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            await handler(request)
        plain.append((time.perf_counter() - start) / calls)
        start = time.perf_counter()
        for _ in range(calls):
            await middleware(request, handler)
        measured.append((time.perf_counter() - start) / calls)
    return plain, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    plain, measured = asyncio.run(rounds(args.calls))
    a, b = statistics.median(plain) * 1e6, statistics.median(measured) * 1e6
    print(f"handler alone {a:.2f} us, through the metrics middleware {b:.2f} us: +{b - a:.2f} us per request")


if __name__ == "__main__":
    main()
