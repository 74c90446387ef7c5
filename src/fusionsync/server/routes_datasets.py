"""Dataset and series-member routes, the change listing and the fusion token."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import hdrs, web

from fusionsync.server import models as m
from fusionsync.server.access import CLIENT
from fusionsync.server.auth import FUSION
from fusionsync.server.common import (
    check_body_identifier,
    deleted,
    ident,
    json_body,
    json_response,
    page_answer,
    page_of,
    require_catalog,
    require_dataset,
    require_series,
    state,
    unique,
)
from fusionsync.server.errors import ApiError
from fusionsync.server.routes_meta import existing_resource, linked_names, merge
from fusionsync.server.spec import Answer, Api, Param
from fusionsync.server.store import Distribution, SeriesMember

api = Api()
DATASETS = "/api/v1/catalogs/{catalog}/datasets"
DATASET = DATASETS + "/{dataset}"
SERIES = DATASET + "/datasetseries"
RESERVED_DATASETS = {"changes"}
MAX_CHANGE_DATASETS = 100
"""Datasets one change listing may name (once each)."""
CHANGE_BATCH = 1000
"""Distributions read (and sent) at a time."""
NOT_FOUND = frozenset({404})

DATASET_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "category": [],
    "region": [],
    "containerType": "Snapshot-Full",
    "status": "Subscribed",
    "type": "Source",
    "coverageStartDate": None,
    "coverageEndDate": None,
    "isRawData": True,
}


@api.op("GET", DATASETS, "List datasets", {200: Answer("One page", m.DatasetList)}, paged=True, errors=NOT_FOUND)
async def list_datasets(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    start, size = page_of(request)
    items, more = await state(request).meta.datasets(catalog, start, size)
    return page_answer(request, [_as_seen(meta) for meta in items], more)


def _as_seen(meta: dict[str, Any]) -> dict[str, Any]:
    """A dataset as a client sees it: every authenticated client is entitled to every dataset."""
    return {**meta, "status": "Subscribed"}


@api.op(
    "GET",
    DATASETS + "/changes",
    "The change listing: every distribution of the datasets with its size and fsync digest",
    {200: Answer("The listing (an empty `datasets` list when there are no distributions)", m.Changes)},
    params=(
        Param(
            "datasets",
            "query",
            m.Identifier,
            required=True,
            description="Dataset identifiers separated by commas.",
        ),
    ),
    errors=NOT_FOUND,
)
async def changes(request: web.Request) -> web.StreamResponse:
    """The change listing: every distribution of the named datasets with size and digest, streamed a batch of
    distributions at a time (memory stays bounded however many a dataset holds)."""
    catalog = await require_catalog(request)
    if not request.query.get("datasets"):
        raise ApiError(400, "query parameter 'datasets' is required")
    named = [check_body_identifier(d, "dataset") for d in request.query["datasets"].split(",")]
    wanted = unique(named, "datasets", MAX_CHANGE_DATASETS)
    store = state(request).meta
    found = []
    for dataset in wanted:  # every dataset checked before the answer begins (a 404 is still possible)
        modified = await store.dataset_modified(catalog, dataset)
        if modified is None:
            raise ApiError(404, f"dataset {dataset!r} not found in catalog {catalog!r}")
        found.append((dataset, modified))
    answer = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/json"})
    answer.enable_chunked_encoding()
    await answer.prepare(request)
    await answer.write(b'{"datasets":[')
    opened = False
    for dataset, modified in found:
        start = 0
        while dists := await store.distributions(catalog, dataset, None, start, CHANGE_BATCH):
            head = b"" if start else (b"," if opened else b"") + _dataset_head(dataset, modified)
            opened = True
            rows = b",".join(msgspec.json.encode(_change_row(catalog, d)) for d in dists)
            await answer.write(head + (b"," if start else b"") + rows)
            start += len(dists)
        if start:
            await answer.write(b"]}")
    await answer.write(b"]}")
    await answer.write_eof()
    return answer


def _dataset_head(dataset: str, modified: str) -> bytes:
    return msgspec.json.encode({"key": dataset, "lastModified": modified})[:-1] + b',"distributions":['


def _change_row(catalog: str, d: Distribution) -> dict[str, Any]:
    values = [d.modified, str(d.size), f"SHA-256={d.digest}", catalog, d.dataset, d.series, d.format, "fusionsync"]
    return {"key": f"{d.dataset}/{d.series}/distribution.{d.format}", "values": [*values, d.blob]}


@api.op(
    "GET",
    DATASET,
    "A dataset's metadata (isRawData, ...) with its sub-collections",
    {200: Answer("The dataset", m.Dataset)},
    errors=NOT_FOUND,
)
async def get_dataset(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    meta = await state(request).meta.dataset(catalog, dataset) or {}
    return json_response({**_as_seen(meta), "resources": [{"identifier": "datasetseries"}]})


DATASET_BODY = {"bodies": {"application/json": m.DatasetBody}}


@api.op(
    "POST",
    DATASET,
    "Create a dataset (and add it to the products its `product` field names)",
    {201: Answer("Created", m.DatasetMetadata)},
    errors=frozenset({404, 405, 409}),
    **DATASET_BODY,
)
@api.op(
    "PUT",
    DATASET,
    "Update a dataset (the body's fields are merged into its metadata; 404 when missing)",
    {200: Answer("Updated", m.DatasetMetadata)},
    errors=frozenset({404, 405}),
    **DATASET_BODY,
)
async def put_dataset(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    dataset = _unreserved_dataset(request)
    body = await json_body(request, m.DatasetBody)
    store = state(request).meta
    existing = await existing_resource(request, store.dataset(catalog, dataset), f"dataset {dataset!r}", catalog)
    products = linked_names(body, "product")
    for product in products:
        if await store.product(catalog, product) is None:
            raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    meta = merge({**DATASET_DEFAULTS, "title": dataset, **(existing or {})}, body, dataset, "dataset")
    await store.put_dataset(catalog, dataset, meta, products)
    return json_response(meta, status=201 if existing is None else 200)


def _unreserved_dataset(request: web.Request) -> str:
    """The dataset of the URL, which must not be ``changes``: that URL is the change listing's (GET only)."""
    dataset = ident(request, "dataset")
    if dataset in RESERVED_DATASETS:
        reason = f"dataset identifier {dataset!r} is reserved"
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], reason=reason)
    return dataset


@api.op(
    "DELETE",
    DATASET,
    "Delete a dataset with its series members, distributions, attributes and lineage",
    {200: Answer("Deleted", m.Deleted)},
    errors=frozenset({404, 405}),
)
async def delete_dataset(request: web.Request) -> web.Response:
    _unreserved_dataset(request)
    catalog, dataset = await require_dataset(request)
    found = await state(request).meta.delete(catalog, dataset, whole=True)
    return deleted(dataset, found, f"dataset {dataset!r} not found in catalog {catalog!r}")


@api.op(
    "GET",
    DATASET + "/authorize/token",
    "A fusion token that opens this dataset's distributions (send it as Fusion-Authorization: Bearer ...)",
    {200: Answer("The token", m.Token)},
    errors=NOT_FOUND,
)
async def fusion_token(request: web.Request) -> web.Response:
    """A fusion token that opens the distributions of this one dataset."""
    catalog, dataset = await require_dataset(request)
    tokens = state(request).tokens
    client = request.get(CLIENT)
    token = tokens.issue(client.id if client is not None else "anonymous", FUSION, f"{catalog}/{dataset}")
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": tokens.ttl})


# -- series members --------------------------------------------------------------------


@api.op("GET", SERIES, "List series members", {200: Answer("One page", m.SeriesList)}, paged=True, errors=NOT_FOUND)
async def list_series(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    start, size = page_of(request)
    members = await state(request).meta.series_list(catalog, dataset, None, start, size + 1)
    return page_answer(request, [series_meta(s) for s in members[:size]], len(members) > size)


def series_meta(member: SeriesMember) -> dict[str, Any]:
    """A series member as Fusion lists it: ``@id`` is relative, with a trailing slash (the SDK strips it)."""
    return {
        "identifier": member.identifier,
        "title": member.identifier,
        "createdDate": member.created,
        "fromDate": member.from_date or member.identifier,
        "toDate": member.to_date or member.identifier,
        "@id": f"{member.identifier}/",
    }


@api.op(
    "DELETE",
    SERIES,
    "Delete every series member of a dataset with their distributions",
    {200: Answer("Deleted", m.Counted)},
    errors=NOT_FOUND,
)
async def delete_all_series(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    return json_response({"count": len(await state(request).meta.delete(catalog, dataset) or [])})


@api.op(
    "GET",
    SERIES + "/{series}",
    "A series member with its sub-collections",
    {200: Answer("The series member", m.Item)},
    errors=NOT_FOUND,
)
async def get_series(request: web.Request) -> web.Response:
    catalog, dataset, series = await require_series(request)
    (member,) = await state(request).meta.series_list(catalog, dataset, series)
    return json_response({**series_meta(member), "resources": [{"identifier": "distributions"}]})


@api.op(
    "DELETE",
    SERIES + "/{series}",
    "Delete a series member with its distributions",
    {200: Answer("Deleted", m.Deleted)},
    errors=NOT_FOUND,
)
async def delete_series(request: web.Request) -> web.Response:
    catalog, dataset, series = await require_series(request)
    found = await state(request).meta.delete(catalog, dataset, series)
    return deleted(series, found, f"series member {series!r} not found in dataset {dataset!r}")
