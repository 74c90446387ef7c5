"""The web catalog's pages: catalogs, products, datasets (with their series members and distributions), a
series member, search, status, and the download of a distribution. Long lists are pages the metadata store
takes by key (``?after=`` / ``?before=``), ``PAGE`` items at a time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fusionsync.server.access import may
from fusionsync.server.common import State, ident, state
from fusionsync.server.errors import ApiError
from fusionsync.server.routes_data import distribution_file_name, file_response
from fusionsync.server.store import Distribution
from fusionsync.server.web.render import render
from fusionsync.server.web.session import Viewer, may_write, require_viewer

PAGE = 100
"""Items on one page of a list."""
SERIES_PAGE = 50
SEARCH_PAGE = 50
RECENT = 50
MAX_QUERY = 200
MAX_CATALOGS = 1000
"""Catalogs shown on the front page and counted on the status page."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HIDDEN_FIELDS = {"identifier", "title", "description", "@id", "resources", "product", "dataset"}


def fields(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """A resource's other fields, as text (lists joined, structures shown as JSON-like text)."""
    shown = []
    for key, value in meta.items():
        if key in HIDDEN_FIELDS or value in (None, "", []):
            continue
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        shown.append((key, text))
    return shown


def one_more(items: list[Any], limit: int) -> tuple[list[Any], bool]:
    """A page asked for with ``limit + 1`` items: the page, and whether another follows."""
    return items[:limit], len(items) > limit


async def _readable_catalog(request: web.Request, who: Viewer) -> tuple[str, dict[str, Any]]:
    catalog = ident(request, "catalog")
    meta = await state(request).meta.catalog(catalog)
    if meta is None or not may(state(request), who.client, catalog):
        raise ApiError(404, f"catalog {catalog!r} not found")
    return catalog, meta


async def _readable_dataset(request: web.Request, who: Viewer) -> tuple[str, str, dict[str, Any]]:
    catalog, _ = await _readable_catalog(request, who)
    dataset = ident(request, "dataset")
    meta = await state(request).meta.dataset(catalog, dataset)
    if meta is None:
        raise ApiError(404, f"dataset {dataset!r} not found in catalog {catalog!r}")
    return catalog, dataset, meta


async def _catalogs(st: State, client: str | None) -> list[dict[str, Any]]:
    """The catalogs ``client`` may read (the first ``MAX_CATALOGS``)."""
    items, _ = await st.meta.catalogs(0, MAX_CATALOGS)
    return [c for c in items if may(st, client, str(c.get("identifier")))]


async def index(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    st = state(request)
    catalogs = await _catalogs(st, who.client)
    return render(request, "index.html", who, catalogs=catalogs)


async def catalog_page(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    catalog, meta = await _readable_catalog(request, who)
    store = state(request).meta
    after = request.query.get("after")
    datasets, more = one_more(await store.datasets_page(catalog, after, PAGE + 1), PAGE)
    products, more_products = one_more(await store.products_page(catalog, request.query.get("pafter"), PAGE + 1), PAGE)
    return render(
        request,
        "catalog.html",
        who,
        catalog=catalog,
        meta=meta,
        fields=fields(meta),
        datasets=datasets,
        next_after=datasets[-1]["identifier"] if more else None,
        products=products,
        next_pafter=products[-1]["identifier"] if more_products else None,
        first_page=after is None,
        writable=may_write(request, who, catalog),
    )


async def product_page(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    catalog, _ = await _readable_catalog(request, who)
    product = ident(request, "product")
    store = state(request).meta
    meta = await store.product(catalog, product)
    if meta is None:
        raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    after = request.query.get("after")
    datasets, more = one_more(await store.product_datasets_page(catalog, product, after, PAGE + 1), PAGE)
    next_after = datasets[-1]["identifier"] if more else None
    return render(
        request,
        "product.html",
        who,
        catalog=catalog,
        meta=meta,
        fields=fields(meta),
        datasets=datasets,
        next_after=next_after,
    )


async def dataset_page(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    catalog, dataset, meta = await _readable_dataset(request, who)
    store = state(request).meta
    before = request.query.get("before")
    members, more = one_more(await store.series_page(catalog, dataset, before, SERIES_PAGE + 1), SERIES_PAGE)
    by_series: dict[str, list[Distribution]] = {m.identifier: [] for m in members}
    if members:
        for dist in await store.distributions_between(catalog, dataset, members[-1].identifier, members[0].identifier):
            by_series[dist.series].append(dist)
    return render(
        request,
        "dataset.html",
        who,
        catalog=catalog,
        dataset=dataset,
        meta=meta,
        fields=fields(meta),
        attributes=await store.attributes(catalog, dataset),
        members=members,
        by_series=by_series,
        file_name=distribution_file_name,
        next_before=members[-1].identifier if more else None,
        first_page=before is None,
        writable=may_write(request, who, catalog),
        today=time.strftime("%Y%m%d", time.gmtime()),
    )


async def series_page(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    catalog, dataset, meta = await _readable_dataset(request, who)
    series = ident(request, "series", "series member")
    store = state(request).meta
    members = await store.series_list(catalog, dataset, series)
    if not members:
        raise ApiError(404, f"series member {series!r} not found in dataset {dataset!r}")
    return render(
        request,
        "series.html",
        who,
        catalog=catalog,
        dataset=dataset,
        title=meta.get("title") or dataset,
        member=members[0],
        distributions=await store.distributions(catalog, dataset, series),
        file_name=distribution_file_name,
    )


async def download(request: web.Request) -> web.StreamResponse:
    """A distribution's bytes, for a signed-in viewer (the session stands for the API's tokens)."""
    who = await require_viewer(request)
    catalog, _ = await _readable_catalog(request, who)
    dataset, series = ident(request, "dataset"), ident(request, "series", "series member")
    fmt = ident(request, "format")
    dist = await state(request).meta.distribution(catalog, dataset, series, fmt)
    if dist is None:
        raise ApiError(404, f"distribution {fmt!r} not found in series member {series!r} of dataset {dataset!r}")
    return await file_response(request, dist)


async def search(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    st = state(request)
    text = request.query.get("q", "").strip()[:MAX_QUERY]
    results: list[tuple[str, dict[str, Any]]] = []
    last = None
    after_catalog, after_dataset = request.query.get("ac"), request.query.get("ad")
    if text:
        after = (after_catalog, after_dataset) if after_catalog and after_dataset else None
        found, more = one_more(await st.meta.search_datasets(text, after, SEARCH_PAGE + 1), SEARCH_PAGE)
        last = (found[-1][0], found[-1][1]["identifier"]) if more else None
        results = [(c, meta) for c, meta in found if may(st, who.client, c)]
    return render(request, "search.html", who, query=text, results=results, next_after=last)


async def status(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    st = state(request)
    catalogs = [str(c["identifier"]) for c in await _catalogs(st, who.client)]
    now = time.time()
    uploads = [
        {
            "target": op.target,
            "state": op.state,
            "parts": sum(1 for p in parts if p.size >= 0),
            "bytes": sum(p.size for p in parts if p.size > 0),
            "idle": max(0, int(now - op.touched)),
        }
        for op, parts in await st.meta.open_operations()
        if op.target[0] in catalogs
    ]
    return render(
        request,
        "status.html",
        who,
        totals=await st.meta.totals(),
        uploads=uploads[:PAGE],
        events=await st.meta.recent_events(RECENT, catalogs),
        expiry=int(st.config.upload_expiry),
    )
