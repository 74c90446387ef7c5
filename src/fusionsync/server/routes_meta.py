"""Catalog, product, dataset and series-member routes, and the change listing."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fusionsync.server.common import (
    ApiError,
    check_body_identifier,
    ident,
    json_body,
    json_response,
    paged,
    require_catalog,
    require_dataset,
    require_series,
    state,
)
from fusionsync.server.meta import now_iso

routes = web.RouteTableDef()
RESERVED_DATASETS = {"changes"}

# -- catalogs ------------------------------------------------------------------------


@routes.get("/api/v1/catalogs")
@routes.get("/api/v1/catalogs/")
async def list_catalogs(request: web.Request) -> web.Response:
    return paged(request, state(request).meta.catalogs())


@routes.get("/api/v1/catalogs/{catalog}")
async def get_catalog(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    meta = state(request).meta.catalog(catalog) or {}
    return json_response({**meta, "resources": [{"identifier": "datasets"}, {"identifier": "products"}]})


@routes.post("/api/v1/catalogs/{catalog}")
async def create_catalog(request: web.Request) -> web.Response:
    catalog = ident(request, "catalog")
    body = await json_body(request)
    store = state(request).meta
    if store.catalog(catalog) is not None:
        raise ApiError(409, f"catalog {catalog!r} already exists")
    meta = _merge({"identifier": catalog, "title": catalog, "description": ""}, body, catalog, "catalog")
    store.put_catalog(catalog, meta)
    return json_response(meta, status=201)


def _merge(defaults: dict[str, Any], body: dict[str, Any], identifier: str, kind: str) -> dict[str, Any]:
    given = body.get("identifier", identifier)
    if given != identifier:
        raise ApiError(400, f"{kind} identifier {given!r} in the body does not match {identifier!r} in the URL")
    meta = {**defaults, **body}
    meta["identifier"] = identifier
    return meta


# -- products ------------------------------------------------------------------------


@routes.get("/api/v1/catalogs/{catalog}/products")
async def list_products(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    return paged(request, state(request).meta.products(catalog))


def _require_product(request: web.Request) -> tuple[str, str, dict[str, Any]]:
    catalog = require_catalog(request)
    product = ident(request, "product")
    meta = state(request).meta.product(catalog, product)
    if meta is None:
        raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    return catalog, product, meta


@routes.get("/api/v1/catalogs/{catalog}/products/{product}")
async def get_product(request: web.Request) -> web.Response:
    catalog, product, meta = _require_product(request)
    members = state(request).meta.product_datasets(catalog, product)
    return paged(request, [{"identifier": d} for _, d in members], extra=meta)


PRODUCT_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "category": [],
    "region": [],
    "status": "Available",
}


@routes.post("/api/v1/catalogs/{catalog}/products/{product}")
@routes.put("/api/v1/catalogs/{catalog}/products/{product}")
async def put_product(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    product = ident(request, "product")
    body = await json_body(request)
    store = state(request).meta
    existing = store.product(catalog, product)
    if request.method == "POST" and existing is not None:
        raise ApiError(409, f"product {product!r} already exists in catalog {catalog!r}")
    meta = _merge({**PRODUCT_DEFAULTS, "title": product, **(existing or {})}, body, product, "product")
    store.put_product(catalog, product, meta)
    return json_response(meta, status=201 if existing is None else 200)


@routes.delete("/api/v1/catalogs/{catalog}/products/{product}")
async def delete_product(request: web.Request) -> web.Response:
    catalog, product, _ = _require_product(request)
    state(request).meta.delete_product(catalog, product)
    return json_response({"identifier": product, "deleted": True})


@routes.get("/api/v1/catalogs/{catalog}/productDatasets")
async def list_product_datasets(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    pairs = state(request).meta.product_datasets(catalog)
    return paged(request, [{"product": p, "dataset": d} for p, d in pairs])


@routes.put("/api/v1/catalogs/{catalog}/productDatasets")
@routes.post("/api/v1/catalogs/{catalog}/productDatasets")
async def link_product_datasets(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    body = await json_body(request)
    product = check_body_identifier(body.get("product"), "product")
    datasets = body.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ApiError(400, "'datasets' must be a non-empty list of dataset identifiers")
    store = state(request).meta
    if store.product(catalog, product) is None:
        raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    names = [check_body_identifier(d, "dataset") for d in datasets]
    for name in names:
        if store.dataset(catalog, name) is None:
            raise ApiError(404, f"dataset {name!r} not found in catalog {catalog!r}")
    store.link_product_datasets(catalog, product, names)
    return json_response({"product": product, "datasets": names})


@routes.delete("/api/v1/catalogs/{catalog}/productDatasets/{product}/{dataset}")
async def unlink_product_dataset(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    product, dataset = ident(request, "product"), ident(request, "dataset")
    if not state(request).meta.unlink_product_dataset(catalog, product, dataset):
        raise ApiError(404, f"dataset {dataset!r} is not in product {product!r}")
    return json_response({"product": product, "dataset": dataset, "deleted": True})


# -- datasets ------------------------------------------------------------------------

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


@routes.get("/api/v1/catalogs/{catalog}/datasets")
async def list_datasets(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    return paged(request, [_as_seen(m) for m in state(request).meta.datasets(catalog)])


def _as_seen(meta: dict[str, Any]) -> dict[str, Any]:
    """A dataset as a client sees it: every authenticated client is entitled to every dataset."""
    return {**meta, "status": "Subscribed"}


@routes.get("/api/v1/catalogs/{catalog}/datasets/changes")
async def changes(request: web.Request) -> web.Response:
    """The change listing: every distribution of the named datasets with size and digest."""
    catalog = require_catalog(request)
    if not request.query.get("datasets"):
        raise ApiError(400, "query parameter 'datasets' is required")
    wanted = [check_body_identifier(d, "dataset") for d in request.query["datasets"].split(",")]
    store = state(request).meta
    out = []
    for dataset in wanted:
        modified = store.dataset_modified(catalog, dataset)
        if modified is None:
            raise ApiError(404, f"dataset {dataset!r} not found in catalog {catalog!r}")
        dists = store.distributions(catalog, dataset)
        if not dists:
            continue
        out.append(
            {
                "key": dataset,
                "lastModified": modified,
                "distributions": [
                    {
                        "key": f"{dataset}/{d.series}/distribution.{d.format}",
                        "values": [
                            d.modified,
                            str(d.size),
                            f"SHA-256={d.digest}",
                            catalog,
                            dataset,
                            d.series,
                            d.format,
                            "fusionsync",
                            d.blob,
                        ],
                    }
                    for d in dists
                ],
            }
        )
    return json_response({"datasets": out})


@routes.get("/api/v1/catalogs/{catalog}/datasets/{dataset}")
async def get_dataset(request: web.Request) -> web.Response:
    catalog, dataset = require_dataset(request)
    meta = state(request).meta.dataset(catalog, dataset) or {}
    return json_response({**_as_seen(meta), "resources": [{"identifier": "datasetseries"}]})


@routes.post("/api/v1/catalogs/{catalog}/datasets/{dataset}")
@routes.put("/api/v1/catalogs/{catalog}/datasets/{dataset}")
async def put_dataset(request: web.Request) -> web.Response:
    catalog = require_catalog(request)
    dataset = _unreserved_dataset(request)
    body = await json_body(request)
    if "isRawData" in body and not isinstance(body["isRawData"], bool):
        raise ApiError(400, "'isRawData' must be true or false")
    store = state(request).meta
    existing = store.dataset(catalog, dataset)
    if request.method == "POST" and existing is not None:
        raise ApiError(409, f"dataset {dataset!r} already exists in catalog {catalog!r}")
    meta = _merge({**DATASET_DEFAULTS, "title": dataset, **(existing or {})}, body, dataset, "dataset")
    store.put_dataset(catalog, dataset, meta)
    return json_response(meta, status=201 if existing is None else 200)


def _unreserved_dataset(request: web.Request) -> str:
    """The dataset of the URL, which must not be ``changes``: that URL is the change listing's (GET only)."""
    dataset = ident(request, "dataset")
    if dataset in RESERVED_DATASETS:
        reason = f"dataset identifier {dataset!r} is reserved"
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], reason=reason)
    return dataset


@routes.delete("/api/v1/catalogs/{catalog}/datasets/{dataset}")
async def delete_dataset(request: web.Request) -> web.Response:
    _unreserved_dataset(request)
    catalog, dataset = require_dataset(request)
    st = state(request)
    for blob in st.meta.delete_dataset(catalog, dataset) or []:
        st.blobs.remove_later(blob, st.config.blob_grace_seconds)
    return json_response({"identifier": dataset, "deleted": True})


@routes.get("/api/v1/catalogs/{catalog}/datasets/{dataset}/authorize/token")
async def fusion_token(request: web.Request) -> web.Response:
    """A fusion token that opens the distributions of this one dataset."""
    catalog, dataset = require_dataset(request)
    tokens = state(request).tokens
    subject = request.get("client", "anonymous")
    token = tokens.issue(str(subject), "fusion", f"{catalog}/{dataset}")
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": tokens.ttl})


# -- series members --------------------------------------------------------------------


@routes.get("/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries")
async def list_series(request: web.Request) -> web.Response:
    catalog, dataset = require_dataset(request)
    members = state(request).meta.series_list(catalog, dataset)
    return paged(request, [_series_meta(s, created) for s, created in members])


def _series_meta(series: str, created: str) -> dict[str, Any]:
    return {
        "identifier": series,
        "title": series,
        "createdDate": created,
        "fromDate": series,
        "toDate": series,
        "@id": f"{series}/",
    }


@routes.get("/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}")
async def get_series(request: web.Request) -> web.Response:
    catalog, dataset, series = require_series(request)
    created = state(request).meta.series(catalog, dataset, series) or now_iso()
    return json_response({**_series_meta(series, created), "resources": [{"identifier": "distributions"}]})


@routes.delete("/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}")
async def delete_series(request: web.Request) -> web.Response:
    catalog, dataset, series = require_series(request)
    st = state(request)
    for blob in st.meta.delete_series(catalog, dataset, series) or []:
        st.blobs.remove_later(blob, st.config.blob_grace_seconds)
    return json_response({"identifier": series, "deleted": True})
