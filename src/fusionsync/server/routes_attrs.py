"""Attribute (schema) and lineage routes: a dataset's attributes, attributes registered in a catalog,
attribute lineage and dataset lineage, as the official SDK's ``Attribute``, ``Attributes`` and
``Fusion.create_dataset_lineage``/``list_dataset_lineage`` call them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fusionsync.server import models as m
from fusionsync.server.common import (
    MAX_JSON_BODY,
    check_body_identifier,
    deleted,
    ident,
    json_body,
    json_response,
    paged,
    require_catalog,
    require_dataset,
    state,
)
from fusionsync.server.errors import ApiError
from fusionsync.server.spec import Answer, Api

api = Api()
CATALOG = "/api/v1/catalogs/{catalog}"
ATTRIBUTES = CATALOG + "/datasets/{dataset}/attributes"
NOT_FOUND = frozenset({404})
ONE_PAGE = Answer("One page", m.Attributes)


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    check_body_identifier(value["identifier"], "attribute")
    return {"index": 0, **value}


@api.op("GET", ATTRIBUTES, "A dataset's attributes, by index", {200: ONE_PAGE}, paged=True, errors=NOT_FOUND)
async def list_attributes(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    return paged(request, await state(request).meta.attributes(catalog, dataset))


@api.op(
    "PUT",
    ATTRIBUTES,
    "Replace a dataset's attributes (`Attributes.create(dataset=...)`)",
    {200: Answer("Stored", m.Attributes)},
    bodies={"application/json": m.AttributeList},
    body_required=True,
    errors=NOT_FOUND,
)
async def put_attributes(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    body = await json_body(request, m.AttributeList, MAX_JSON_BODY)
    attributes = [_attribute(a) for a in body["attributes"]]
    names = [a["identifier"] for a in attributes]
    if len(set(names)) != len(names):
        raise ApiError(400, "attribute identifiers must be unique")
    store = state(request).meta
    await store.replace_attributes(catalog, dataset, attributes)
    return json_response({"resources": await store.attributes(catalog, dataset)})


@api.op(
    "PUT",
    ATTRIBUTES + "/{attribute}",
    "Create or replace one attribute of a dataset (`Attribute.create`)",
    {200: Answer("Replaced", m.Attribute), 201: Answer("Created", m.Attribute)},
    bodies={"application/json": m.AttributeBody},
    body_required=True,
    errors=NOT_FOUND,
)
async def put_attribute(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    attribute = ident(request, "attribute")
    body = _attribute(await json_body(request, m.AttributeBody))
    if body["identifier"] != attribute:
        raise ApiError(400, f"attribute identifier {body['identifier']!r} does not match {attribute!r} in the URL")
    new = await state(request).meta.put_attribute(catalog, dataset, body)
    return json_response(body, status=201 if new else 200)


@api.op(
    "DELETE",
    ATTRIBUTES + "/{attribute}",
    "Delete one attribute of a dataset",
    {200: Answer("Deleted", m.Deleted)},
    errors=NOT_FOUND,
)
async def delete_attribute(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    attribute = ident(request, "attribute")
    found = await state(request).meta.delete_attribute(catalog, dataset, attribute)
    return deleted(attribute, found, f"attribute {attribute!r} not found in dataset {dataset!r}")


# -- attributes registered in the catalog ---------------------------------------------------------


@api.op(
    "GET",
    CATALOG + "/attributes",
    "The attributes registered in a catalog",
    {200: ONE_PAGE},
    paged=True,
    errors=NOT_FOUND,
)
async def list_catalog_attributes(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    return paged(request, await state(request).meta.catalog_attributes(catalog))


@api.op(
    "POST",
    CATALOG + "/attributes",
    "Register attributes in a catalog (`Attributes.create()` without a dataset)",
    {200: Answer("Registered", m.Attributes)},
    bodies={"application/json": list[m.AttributeBody]},
    body_required=True,
    errors=NOT_FOUND,
)
async def register_attributes(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    attributes = [_attribute(a) for a in await json_body(request, list[m.AttributeBody], MAX_JSON_BODY)]
    store = state(request).meta
    await store.register_attributes(catalog, attributes)
    return json_response({"resources": await store.catalog_attributes(catalog)})


@api.op(
    "POST",
    CATALOG + "/attributes/lineage",
    "Record attribute lineage (`Attribute.set_lineage`): each target feeds its source",
    {200: Answer("Recorded", m.Counted)},
    bodies={"application/json": list[m.AttributeLineage]},
    body_required=True,
    errors=NOT_FOUND,
)
async def add_attribute_lineage(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    entries = await json_body(request, list[m.AttributeLineage], MAX_JSON_BODY)
    pairs = [(entry["source"], target) for entry in entries for target in entry["targets"]]
    await state(request).meta.add_attribute_lineage(catalog, pairs)
    return json_response({"count": len(pairs)})


@api.op(
    "GET",
    CATALOG + "/attributes/lineage",
    "The attribute lineage recorded in a catalog",
    {200: Answer("The lineage", list[m.AttributeLineage])},
    errors=NOT_FOUND,
)
async def list_attribute_lineage(request: web.Request) -> web.Response:
    catalog = await require_catalog(request)
    return json_response(await state(request).meta.attribute_lineage(catalog))


# -- dataset lineage ---------------------------------------------------------------------------------


@api.op(
    "POST",
    CATALOG + "/datasets/{dataset}/lineage",
    "Record the datasets a dataset is made from (`create_dataset_lineage`)",
    {200: Answer("Recorded", m.Counted)},
    bodies={"application/json": m.LineageBody},
    body_required=True,
    errors=NOT_FOUND,
)
async def add_dataset_lineage(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    body = await json_body(request, m.LineageBody)
    store = state(request).meta
    sources = []
    for ref in body["source"]:
        source = (check_body_identifier(ref["catalog"], "catalog"), check_body_identifier(ref["dataset"], "dataset"))
        if not await store.has_dataset(*source):
            raise ApiError(404, f"dataset {source[1]!r} not found in catalog {source[0]!r}")
        sources.append(source)
    await store.add_dataset_lineage(catalog, dataset, sources)
    return json_response({"count": len(sources)})


@api.op(
    "GET",
    CATALOG + "/datasets/{dataset}/lineage",
    "A dataset's lineage: the relations naming it, and the datasets on their other side",
    {200: Answer("The lineage", m.Lineage)},
    errors=NOT_FOUND,
)
async def get_dataset_lineage(request: web.Request) -> web.Response:
    catalog, dataset = await require_dataset(request)
    store = state(request).meta
    relations = await store.dataset_lineage(catalog, dataset)
    others = sorted({(c, d) for sc, sd, dc, dd in relations for c, d in ((sc, sd), (dc, dd))} - {(catalog, dataset)})
    datasets = []
    for other_catalog, other in others:
        meta = await store.dataset(other_catalog, other)
        if meta is not None:
            datasets.append({**meta, "catalog": {"identifier": other_catalog}, "status": "Subscribed"})
    return json_response(
        {
            "relations": [
                {"source": {"catalog": sc, "dataset": sd}, "destination": {"catalog": dc, "dataset": dd}}
                for sc, sd, dc, dd in relations
            ],
            "datasets": datasets,
        }
    )
