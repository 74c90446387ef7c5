"""The OpenAPI description matches the server: every route documented, every documented route real,
parameters and bodies described, and the status codes the server answers are the documented ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from fusionsync.server import make_app
from tests.api_doc import Operation, document, is_stream, operations, resolve, watch_for_internal_errors
from tests.helpers import RunningServer

PAGED = {
    ("GET", "/api/v1/catalogs"),
    ("GET", "/api/v1/catalogs/"),
    ("GET", "/api/v1/catalogs/{catalog}/products"),
    ("GET", "/api/v1/catalogs/{catalog}/products/{product}"),
    ("GET", "/api/v1/catalogs/{catalog}/productDatasets"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{format}/files"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/sample/distributions"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/sample/distributions/{format}/files"),
    ("GET", "/api/v1/catalogs/{catalog}/datasets/{dataset}/attributes"),
    ("GET", "/api/v1/catalogs/{catalog}/attributes"),
}


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def documented() -> set[tuple[str, str]]:
    """The documented operations, with a dataset's sample written as the router does: a fixed ``{series}``."""
    return {(op.method, op.path.replace("/{dataset}/sample/", "/{dataset}/{series}/")) for op in operations()}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    app = make_app()
    every = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    routes = {(m, p) for m, p in every if p.startswith("/api/v1/") or p == "/oauth2/token"}
    # the rest are the web catalog's pages and /metrics, which are not the API
    assert {p for _, p in every - routes} == {
        "/", "/search", "/status", "/signin", "/signout", "/session/token", "/static", "/metrics",
        "/catalogs/{catalog}", "/catalogs/{catalog}/products/{product}", "/catalogs/{catalog}/datasets/{dataset}",
        "/catalogs/{catalog}/datasets/{dataset}/series/{series}",
        "/download/catalogs/{catalog}/{dataset}/{series}/{format}",
    }  # fmt: skip
    explicit = {(m, p) for m, p in routes if m != "HEAD"}  # aiohttp adds a HEAD to every GET
    assert explicit - documented() == set(), "routes missing from openapi.json"
    assert documented() - routes == set(), "documented routes the server does not have"
    assert len(explicit) >= 60


def test_every_reference_resolves() -> None:
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(document()))
    assert found
    for ref in found:
        assert resolve({"$ref": ref}), ref


@pytest.mark.parametrize("op", operations(), ids=str)
def test_parameters_security_and_responses_are_described(op: Operation) -> None:
    spec = op.spec
    params = [resolve(p) for p in spec.get("parameters", [])]
    in_path = {p["name"]: resolve(p["schema"]) for p in params if p["in"] == "path"}
    assert set(in_path) == set(op.params), "path parameters declared exactly"
    for name, schema in in_path.items():
        assert schema["type"] == "string" and schema["minLength"] == 1 and schema["maxLength"] == 255, name
    headers = {p["name"] for p in params if p["in"] == "header"}
    assert ("x-jpmc-next-token" in headers) == ((op.method, op.path) in PAGED)
    assert op.statuses <= {200, 201, 206, 400, 401, 404, 405, 409, 413, 416}
    assert 200 in op.statuses or 201 in op.statuses
    if op.is_open:
        assert spec["security"] == []
    else:
        assert 401 in op.statuses
        schemes = spec.get("security", document()["security"])
        assert {"bearer": []} in schemes or all("bearer" in s for s in schemes)
        assert any("fusion" in s for s in schemes) == op.needs_fusion_token
    if op.params:
        assert 400 in op.statuses, "unsafe identifiers"
        assert 404 in op.statuses or (op.method, op.path) == ("POST", "/api/v1/catalogs/{catalog}"), "unknown ones"
    for code, answer in spec["responses"].items():
        if code != "416" and op.method != "HEAD" and "content" in resolve(answer):
            assert resolve(answer)["content"], code


def body_types(method: str, path: str) -> set[str]:
    body = document()["paths"][path][method].get("requestBody")
    return set(resolve(body)["content"]) if body else set()


def test_request_bodies_are_described() -> None:
    dist = "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{format}"
    assert body_types("post", "/oauth2/token") == {"application/x-www-form-urlencoded"}
    assert body_types("put", dist) == {"application/octet-stream"}
    assert body_types("post", dist + "/operations/upload") == {"application/octet-stream", "application/json"}
    assert body_types("post", dist + "/operationType/upload") == set()
    for path in ("/api/v1/catalogs/{catalog}", "/api/v1/catalogs/{catalog}/datasets/{dataset}"):
        assert body_types("post", path) == {"application/json"}
    link = resolve(document()["paths"]["/api/v1/catalogs/{catalog}/productDatasets"]["put"]["requestBody"])
    schema = resolve(link["content"]["application/json"]["schema"])
    assert link["required"] and set(schema["required"]) == {"product", "datasets"}
    params = [resolve(p) for op in operations() for p in op.spec.get("parameters", [])]
    queries = {p["name"] for p in params if p["in"] == "query"}
    assert queries == {"datasets", "downloadRange", "operationId", "partNumber", "file"}


def test_openapi_is_served_without_a_token(server: RunningServer) -> None:
    answer = server.request("GET", "/api/v1/openapi.json", auth=False)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == document()
    assert len(document()["paths"]) >= 35 and {"Identifier", "DatasetBody", "Event"} <= set(
        document()["components"]["schemas"]
    )
    assert server.request("GET", "/api/v1/catalogs", auth=False).status == 401


def sample(op: Operation, server: RunningServer) -> dict[str, Any]:
    """A well-formed request for ``op`` (whether its resources exist is up to the URL)."""
    types = body_types(op.method.lower(), op.path)
    if "application/x-www-form-urlencoded" in types:
        creds = server.credentials()
        form = {"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": "?"}
        return {"form": form}
    if "application/octet-stream" in types:
        return {"body": b"hello world", "headers": {"Digest": f"SHA-256={fsync_digest_of([b'hello world'])}"}}
    if op.path.endswith("/productDatasets"):
        return {"json_body": {"product": "P", "datasets": ["A"]}}
    if "application/json" in types:
        return {"json_body": {}}
    return {}


def test_the_server_answers_only_documented_status_codes(server: RunningServer) -> None:
    """Every operation in four situations: resources exist, they don't, an identifier is unsafe, no token."""
    server.create_dataset("cat", "A")
    seen: set[int] = set()
    fusion = {"Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'A')}"}
    for op in operations():
        if is_stream(op):  # never ends: tests/test_events.py checks its statuses
            continue
        kw = sample(op, server)
        headers = {**fusion, **kw.pop("headers", {})}
        server.create_dataset("cat", "A")  # (again and again: the DELETEs take them away)
        server.create_product("cat", "P", ["A"])
        server.upload("cat", "A", "s", "csv", b"some,bytes\n")
        situations = [
            (op.url(), headers, True),
            (op.url(catalog="nope", product="nope", dataset="nope", series="nope", format="nope"), headers, True),
            (op.url(**dict.fromkeys(op.params, "..")), headers, True),
            (op.url(), {}, False),
        ]
        for url, hdrs, auth in situations:
            answer = server.request(op.method, url, headers=hdrs, auth=auth, **kw)
            assert answer.status in op.statuses, (str(op), url, answer.status, answer.body[:200])
            if answer.status >= 400 and answer.status != 416 and op.method != "HEAD":
                assert answer.headers["Content-Type"].startswith("application/json") and answer.json()["message"]
            seen.add(answer.status)
    assert {200, 201, 400, 401, 404} <= seen
