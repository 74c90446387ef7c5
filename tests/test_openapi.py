"""The OpenAPI description matches the routes: every route documented, every documented route real."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fusionsync.server import ServerConfig, make_app
from tests.helpers import RunningServer


def documented() -> set[tuple[str, str]]:
    doc = json.loads(resources.files("fusionsync.server").joinpath("openapi.json").read_text())
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    app = make_app(ServerConfig(root=tmp_path))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    explicit = {(m, p) for m, p in routes if m != "HEAD"}
    assert explicit - documented() == set(), "routes missing from openapi.json"
    assert documented() - routes == set(), "documented routes the server does not have"


def test_openapi_is_served_without_a_token(server: RunningServer) -> None:
    answer = server.request("GET", "/api/v1/openapi.json", auth=False)
    assert answer.status == 200 and answer.json()["openapi"].startswith("3.")
    assert server.request("GET", "/api/v1/catalogs", auth=False).status == 401
