"""Catalog, product and product-dataset routes."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from fusionsync.server import models as m
from fusionsync.server.access import visible_catalogs
from fusionsync.server.common import (
    MAX_JSON_BODY,
    check_body_identifier,
    deleted,
    ident,
    json_body,
    json_response,
    page_answer,
    page_of,
    require_catalog,
    state,
    unique,
)
from fusionsync.server.errors import ApiError
from fusionsync.server.spec import Answer, Api

api = Api()
CATALOGS = "/api/v1/catalogs"
PRODUCT = CATALOGS + "/{catalog}/products/{product}"
LINKS = CATALOGS + "/{catalog}/productDatasets"
ONE_PAGE = Answer("One page", m.ResourceList)
LINKED_BY = {"product": "dataset", "dataset": "product"}


def merge(defaults: dict[str, Any], body: dict[str, Any], identifier: str, kind: str) -> dict[str, Any]:
    """A resource's stored metadata: ``body`` over ``defaults``; links (``product``/``dataset``) are kept apart."""
    given = body.get("identifier", identifier)
    if given != identifier:
        raise ApiError(400, f"{kind} identifier {given!r} in the body does not match {identifier!r} in the URL")
    link = LINKED_BY[kind]
    meta = {k: v for k, v in {**defaults, **body}.items() if k != link}
    meta["identifier"] = identifier
    return meta


def linked_names(body: dict[str, Any], key: str) -> list[str]:
    """The identifiers a body's link field names (a list, one name, or none)."""
    value = body.get(key)
    names = [] if value is None else [value] if isinstance(value, str) else list(value)
    return [check_body_identifier(name, key) for name in names]


# -- catalogs ------------------------------------------------------------------------


@api.op("GET", CATALOGS, "List catalogs", {200: ONE_PAGE}, paged=True)
@api.op("GET", CATALOGS + "/", "List catalogs", {200: ONE_PAGE}, paged=True)
async def list_catalogs(request: web.Request) -> web.Response:
    start, size = page_of(request)
    items, more = await state(request).meta.catalogs(start, size, visible_catalogs(request))
    return page_answer(request, items, more)


@api.op(
    "GET",
    CATALOGS + "/{catalog}",
    "A catalog with its sub-collections",
    {200: Answer("The catalog", m.Item)},
    errors=frozenset({404}),
)
async def get_catalog(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    meta = await state(request).meta.catalog(catalog) or {}
    collections = ["datasets", "products"]
    return json_response({**meta, "resources": [{"identifier": c} for c in collections]})


@api.op(
    "POST",
    CATALOGS + "/{catalog}",
    "Create a catalog (a fusionsync extension)",
    {201: Answer("Created", m.Resource)},
    bodies={"application/json": m.Metadata},
    errors=frozenset({409}),
)
async def create_catalog(request: web.Request) -> web.Response:
    catalog = ident(request, "catalog")
    body = await json_body(request, m.Metadata)
    given = body.get("identifier", catalog)
    if given != catalog:
        raise ApiError(400, f"catalog identifier {given!r} in the body does not match {catalog!r} in the URL")
    meta = {"title": catalog, "description": "", **body, "identifier": catalog}
    if not await state(request).meta.create_catalog(catalog, meta):
        raise ApiError(409, f"catalog {catalog!r} already exists")
    return json_response(meta, status=201)


@api.op(
    "DELETE",
    CATALOGS + "/{catalog}",
    "Delete an empty catalog (a fusionsync extension)",
    {200: Answer("Deleted", m.Deleted)},
    errors=frozenset({404, 409}),
)
async def delete_catalog(request: web.Request) -> web.Response:
    catalog = ident(request, "catalog")
    done = await state(request).meta.delete_catalog(catalog)
    if done is False:
        raise ApiError(409, f"catalog {catalog!r} is not empty: delete its datasets and products first")
    return deleted(catalog, done, f"catalog {catalog!r} not found")


# -- products ------------------------------------------------------------------------


@api.op("GET", CATALOGS + "/{catalog}/products", "List products", {200: ONE_PAGE}, paged=True, errors=frozenset({404}))
async def list_products(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    start, size = page_of(request)
    return page_answer(request, *await state(request).meta.products(catalog, start, size))


async def _require_product(request: web.Request) -> tuple[str, str, dict[str, Any]]:
    catalog = await require_catalog(request)
    product = ident(request, "product")
    meta = await state(request).meta.product(catalog, product)
    if meta is None:
        raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    return catalog, product, meta


@api.op(
    "GET",
    PRODUCT,
    "A product's metadata with the datasets it contains in `resources`",
    {200: Answer("The product", m.ResourceList)},
    paged=True,
    errors=frozenset({404}),
)
async def get_product(request: web.Request) -> web.Response:
    catalog, product, meta = await _require_product(request)
    start, size = page_of(request)
    members = await state(request).meta.product_datasets(catalog, product, start, size + 1)
    return page_answer(request, [{"identifier": d} for _, d in members[:size]], len(members) > size, extra=meta)


PRODUCT_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "category": [],
    "region": [],
    "status": "Available",
}
PRODUCT_BODY = {"bodies": {"application/json": m.ProductBody}, "errors": frozenset({404})}


@api.op(
    "POST",
    PRODUCT,
    "Create a product (and link the datasets its `dataset` field names)",
    {201: Answer("Created", m.Resource)},
    **PRODUCT_BODY | {"errors": frozenset({404, 409})},
)
@api.op(
    "PUT",
    PRODUCT,
    "Update a product (the body's fields are merged into its metadata; 404 when missing)",
    {200: Answer("Updated", m.Resource)},
    **PRODUCT_BODY,
)
async def put_product(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    product = ident(request, "product")
    body = await json_body(request, m.ProductBody)
    store = state(request).meta
    existing = await existing_resource(request, store.product(catalog, product), f"product {product!r}", catalog)
    datasets = await _existing_datasets(request, catalog, linked_names(body, "dataset"))
    meta = merge({**PRODUCT_DEFAULTS, "title": product, **(existing or {})}, body, product, "product")
    await store.put_product(catalog, product, meta, datasets)
    return json_response(meta, status=201 if existing is None else 200)


async def existing_resource(
    request: web.Request, lookup: Awaitable[dict[str, Any] | None], what: str, catalog: str
) -> dict[str, Any] | None:
    """A resource's metadata for a create (POST: 409 when it exists) or an update (PUT: 404 when it does not)."""
    existing = await lookup
    if request.method == "POST" and existing is not None:
        raise ApiError(409, f"{what} already exists in catalog {catalog!r}")
    if request.method == "PUT" and existing is None:
        raise ApiError(404, f"{what} not found in catalog {catalog!r}")
    return existing


async def _existing_datasets(request: web.Request, catalog: str, names: list[str]) -> list[str]:
    store = state(request).meta
    for name in names:
        if not await store.has_dataset(catalog, name):
            raise ApiError(404, f"dataset {name!r} not found in catalog {catalog!r}")
    return names


@api.op("DELETE", PRODUCT, "Delete a product", {200: Answer("Deleted", m.Deleted)}, errors=frozenset({404}))
async def delete_product(request: web.Request) -> web.Response:
    catalog, product, _ = await _require_product(request)
    await state(request).meta.delete_product(catalog, product)
    return deleted(product)


@api.op(
    "GET",
    LINKS,
    "Every product-dataset pair of the catalog",
    {200: Answer("One page", m.ProductDatasetList)},
    paged=True,
    errors=frozenset({404}),
)
async def list_product_datasets(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    start, size = page_of(request)
    pairs = await state(request).meta.product_datasets(catalog, None, start, size + 1)
    return page_answer(request, [{"product": p, "dataset": d} for p, d in pairs[:size]], len(pairs) > size)


LINK = {"bodies": {"application/json": m.ProductDatasets}, "body_required": True, "errors": frozenset({404})}


@api.op("PUT", LINKS, "Add datasets to a product", {200: Answer("Linked", m.ProductDatasets)}, **LINK)
@api.op("POST", LINKS, "Add datasets to a product", {200: Answer("Linked", m.ProductDatasets)}, **LINK)
async def link_product_datasets(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    body = await json_body(request, m.ProductDatasets, MAX_JSON_BODY)
    product = check_body_identifier(body["product"], "product")
    named = unique([check_body_identifier(d, "dataset") for d in body["datasets"]], "datasets")
    store = state(request).meta
    if await store.product(catalog, product) is None:
        raise ApiError(404, f"product {product!r} not found in catalog {catalog!r}")
    names = await _existing_datasets(request, catalog, named)
    await store.link_product_datasets(catalog, product, names)
    return json_response({"product": product, "datasets": names})


@api.op(
    "DELETE",
    LINKS + "/{product}/{dataset}",
    "Remove a dataset from a product",
    {200: Answer("Removed", m.Unlinked)},
    errors=frozenset({404}),
)
async def unlink_product_dataset(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    product, dataset = ident(request, "product"), ident(request, "dataset")
    if not await state(request).meta.unlink_product_dataset(catalog, product, dataset):
        raise ApiError(404, f"dataset {dataset!r} is not in product {product!r}")
    return json_response({"product": product, "dataset": dataset, "deleted": True})
