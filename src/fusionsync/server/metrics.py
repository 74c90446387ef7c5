"""The server's metrics at ``/metrics``, in the Prometheus text format (``prometheus-client``).

A request costs a few additions into a plain table (route, method, status → count, seconds, bytes in and out,
latency buckets): no lock, no label lookup of a client library on the hot path. A scrape turns the table into
metric families, with what the metadata store counts (storage used, objects, uploads in progress and expired).
With ``--workers N`` every worker writes its table to ``ROOT/metrics/worker-I.json`` each second, and the worker
that answers a scrape adds up the others' files to its own live table; a worker that replaces a dead one
starts from its predecessor's totals, so counters never go back.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fusionsync.server.common import STATE
from fusionsync.server.store import Totals

if TYPE_CHECKING:
    from prometheus_client.core import Metric

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNT, SECONDS, BYTES_IN, BYTES_OUT, FIRST_BUCKET = range(5)
FLUSH_SECONDS = 1.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
Key = tuple[str, str, int]
Row = list[float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestStats:
    """Per (route, method, status): count, seconds, bytes in, bytes out and a count per latency bucket."""

    def __init__(self) -> None:
        self.table: dict[Key, Row] = {}
        self.active = 0

    def record(self, key: Key, seconds: float, bytes_in: int, bytes_out: int) -> None:
        row = self.table.get(key)
        if row is None:
            row = self.table[key] = [0.0] * (FIRST_BUCKET + len(BUCKETS) + 1)
        row[COUNT] += 1
        row[SECONDS] += seconds
        row[BYTES_IN] += bytes_in
        row[BYTES_OUT] += bytes_out
        row[FIRST_BUCKET + bisect.bisect_left(BUCKETS, seconds)] += 1

    def dump(self) -> list[list[Any]]:
        return [[*key, *row] for key, row in self.table.items()]

    def add(self, rows: list[list[Any]]) -> None:
        """Add rows of :meth:`dump` (another worker's, or a predecessor's) into this table."""
        for route, method, status, *values in rows:
            row = self.table.setdefault((str(route), str(method), int(status)), [0.0] * len(values))
            for i, value in enumerate(values):
                row[i] += float(value)


STATS = web.AppKey("request_stats", RequestStats)


def measure(stats: RequestStats) -> Any:
    """A middleware that records every request in ``stats`` (the outermost one: it sees the final status)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        stats.active += 1
        status = 499  # the client went away before an answer
        answer: web.StreamResponse | None = None
        try:
            answer = await handler(request)
            status = answer.status
            return answer
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            stats.active -= 1
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            sent = 0
            if isinstance(answer, web.Response):
                body = answer.body
                sent = len(body) if isinstance(body, bytes | bytearray) else 0
            elif answer is not None:
                sent = answer.content_length or 0
            received = getattr(request.content, "total_bytes", 0)
            method = request.method if request.method in METHODS else "other"  # a bounded set of labels
            stats.record((route, method, status), time.perf_counter() - start, received, sent)

    return middleware


class Shared:
    """The tables of several worker processes, in files of one folder."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder = folder
        self.own = folder / f"worker-{index}.json"

    def load_own(self, stats: RequestStats) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            stats.add(json.loads(self.own.read_text()))

    def write(self, stats: RequestStats) -> None:
        temp = self.own.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(stats.dump()))
        os.replace(temp, self.own)

    def others(self) -> Iterator[list[list[Any]]]:
        for path in self.folder.glob("worker-*.json"):
            if path != self.own:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    yield json.loads(path.read_text())

    async def flush_forever(self, stats: RequestStats) -> None:
        last: list[list[Any]] | None = None
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            rows = stats.dump()
            if rows != last:
                await asyncio.get_running_loop().run_in_executor(None, self.write, stats)
                last = rows


SHARED = web.AppKey("shared_stats", Shared)


def families(stats: RequestStats, totals: Totals) -> Iterator[Metric]:
    """The metric families of a table and the store's totals."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    labels = ["route", "method"]
    requests = CounterMetricFamily(
        "fusionsync_http_requests", "HTTP requests answered, by route and status", labels=[*labels, "status"]
    )
    got = CounterMetricFamily("fusionsync_http_received_bytes", "Bytes of request bodies received", labels=labels)
    sent = CounterMetricFamily("fusionsync_http_sent_bytes", "Bytes of answer bodies sent", labels=labels)
    merged: dict[tuple[str, str], Row] = {}
    for (route, method, status), row in sorted(stats.table.items()):
        requests.add_metric([route, method, str(status)], row[COUNT])
        into = merged.setdefault((route, method), [0.0] * len(row))
        for i, value in enumerate(row):
            into[i] += value
    latency = HistogramMetricFamily(
        "fusionsync_http_request_duration_seconds", "Time to answer a request", labels=labels
    )
    for (route, method), row in merged.items():
        got.add_metric([route, method], row[BYTES_IN])
        sent.add_metric([route, method], row[BYTES_OUT])
        cumulative, buckets = 0.0, []
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], row[FIRST_BUCKET:], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric([route, method], buckets, row[SECONDS])
    yield from (requests, latency, got, sent)
    yield GaugeMetricFamily("fusionsync_http_requests_in_progress", "Requests being answered", value=stats.active)
    yield GaugeMetricFamily("fusionsync_storage_bytes", "Bytes of every stored distribution", value=totals.bytes)
    objects = GaugeMetricFamily("fusionsync_catalog_objects", "Objects in the catalog, by kind", labels=["kind"])
    for kind in ("catalogs", "products", "datasets", "series", "distributions"):
        objects.add_metric([kind], getattr(totals, kind))
    yield objects
    yield GaugeMetricFamily(
        "fusionsync_uploads_in_progress", "Multipart uploads started and not yet completed", value=totals.uploads_open
    )
    yield CounterMetricFamily(
        "fusionsync_uploads_expired",
        "Multipart uploads dropped after --upload-expiry idle",
        value=totals.uploads_expired,
    )


class _Snapshot:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: this server's metrics (every worker's) in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest  # at the first scrape

    own = request.app[STATS]
    stats = own
    shared = request.app.get(SHARED)
    if shared is not None:
        stats = RequestStats()
        stats.add(own.dump())
        for rows in await asyncio.get_running_loop().run_in_executor(None, lambda: list(shared.others())):
            stats.add(rows)
        stats.active = own.active
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(families(stats, await request.app[STATE].meta.totals()))))
    headers = {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    return web.Response(body=generate_latest(registry), headers=headers)


def install(app: web.Application, shared: Shared | None) -> None:
    """Serve ``/metrics`` on ``app`` (its middleware is added by ``make_app``); ``shared`` with workers."""
    app.router.add_get("/metrics", metrics)
    if shared is None:
        return
    app[SHARED] = shared
    shared.load_own(app[STATS])

    async def flushing(app: web.Application) -> Any:
        task = asyncio.ensure_future(shared.flush_forever(app[STATS]))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        shared.write(app[STATS])

    app.cleanup_ctx.append(flushing)
