"""The server's OpenAPI description as test data: every documented operation, its URL filled in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fusionsync.server.app import openapi_document

OPEN_PATHS = {"/oauth2/token", "/api/v1/openapi.json"}
SAMPLE_IDS = {"catalog": "cat", "product": "P", "dataset": "A", "series": "s", "format": "csv", "attribute": "a"}


@cache
def document() -> dict[str, Any]:
    """The document the server serves (generated from its declared operations)."""
    return openapi_document()


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` links inside the document."""
    while "$ref" in node:
        target: Any = document()
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


@dataclass(frozen=True)
class Operation:
    method: str
    path: str

    @property
    def spec(self) -> dict[str, Any]:
        return dict(document()["paths"][self.path][self.method.lower()])

    @property
    def params(self) -> list[str]:
        """The path parameters, in the order they appear in the path."""
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def is_open(self) -> bool:
        return self.path in OPEN_PATHS

    @property
    def needs_fusion_token(self) -> bool:
        return "/distributions" in self.path

    @property
    def statuses(self) -> set[int]:
        return {int(code) for code in self.spec["responses"]}

    def url(self, **values: str) -> str:
        """The path from the server root with every parameter filled (sample identifiers by default)."""
        filled = {**SAMPLE_IDS, **values}
        return re.sub(r"\{(\w+)\}", lambda m: filled[m.group(1)], self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations() -> list[Operation]:
    return [Operation(method.upper(), path) for path, ops in document()["paths"].items() for method in ops]


def is_stream(op: Operation) -> bool:
    """An endless answer (the change events): no request-response check can wait for its end."""
    answer = op.spec["responses"].get("200", {})
    return "text/event-stream" in answer.get("content", {})


def api_operations() -> list[Operation]:
    """The operations that need a token."""
    return [op for op in operations() if not op.is_open]


def internal_errors(log: Path) -> list[str]:
    """Lines of a server log that report an unexpected error (a 500)."""
    if not log.exists():
        return []
    return [line for line in log.read_text(errors="replace").splitlines() if "unexpected error" in line]


def watch_for_internal_errors(request: Any, names: tuple[str, ...] = ("server", "open_server")) -> Iterator[None]:
    """For an autouse fixture: fail a test during which a server of the test logged an unexpected error."""
    servers = [request.getfixturevalue(name) for name in names if name in request.fixturenames]
    seen = [len(internal_errors(srv.log)) for srv in servers]
    yield
    for srv, count in zip(servers, seen, strict=True):
        assert internal_errors(srv.log)[count:] == [], "the server answered 500"
