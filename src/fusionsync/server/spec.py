"""Operations declared once, next to their handlers: the routes registered, the request bodies validated,
and the OpenAPI document served at ``/api/v1/openapi.json`` all come from these declarations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from fusionsync.server import models

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
JSON = "application/json"
BINARY = "application/octet-stream"
FORM = "application/x-www-form-urlencoded"
NEXT_TOKEN = "x-jpmc-next-token"
OPEN_PATHS = {"/oauth2/token", "/api/v1/openapi.json"}
ERRORS = {
    400: "Bad input (unsafe identifier, malformed body or header, digest mismatch)",
    401: "Missing, expired or forged token",
    404: "No such catalog, product, dataset, series member, distribution, attribute or upload",
    405: "The dataset 'changes' is the change listing's URL (GET only)",
    409: "Already exists",
    413: "Body too large: a JSON or form body above 2 MiB, a part above 5 GiB, a single-request upload above "
    "the server's --max-upload-size (64 GiB unless set)",
    416: "The range is outside the content",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "header"
    schema: Any = str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Answer:
    """One documented answer: a JSON model, bytes (``media=BINARY``) or nothing (``model=None``)."""

    description: str
    model: Any = None
    media: str = JSON
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    handler: Handler
    summary: str
    answers: dict[int, Answer]
    bodies: dict[str, Any] = field(default_factory=dict)
    body_required: bool = False
    params: tuple[Param, ...] = ()
    paged: bool = False
    errors: frozenset[int] = frozenset()

    @property
    def path_params(self) -> list[str]:
        """The parameters of the path (not those fixed to one value, as ``{series:sample}``)."""
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def doc_path(self) -> str:
        """The path as documented: a parameter fixed to one value is written as that value."""
        return re.sub(r"\{\w+:(\w+)\}", r"\1", self.path)

    @property
    def is_open(self) -> bool:
        return self.path in OPEN_PATHS

    @property
    def statuses(self) -> set[int]:
        codes = set(self.answers) | set(self.errors)
        if not self.is_open:
            codes.add(401)
        if self.path_params or self.params or self.bodies or self.paged:
            codes.add(400)
        if self.bodies:
            codes.add(413)
        return codes


class Api:
    """A table of operations; ``@api.op("GET", path, ...)`` declares one and returns the handler unchanged."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, method: str, path: str, summary: str, answers: dict[int, Answer], **kw: Any) -> Callable[[H], H]:
        def declare(handler: H) -> H:
            self.ops.append(Op(method, path, handler, summary, answers, **kw))
            return handler

        return declare

    def register(self, app: web.Application) -> None:
        for op in self.ops:
            if op.method == "GET":  # with a HEAD route: the same handler, the body left out
                app.router.add_get(op.path, op.handler)
            elif op.method != "HEAD":
                app.router.add_route(op.method, op.path, op.handler)


# -- the document -----------------------------------------------------------------------------


NAMED = {"Identifier": models.Identifier, "DatasetIdentifier": models.DatasetIdentifier}
"""Scalar types written once in the document's components (msgspec names only structs)."""


def _schema_ref(model: Any, refs: dict[str, Any]) -> dict[str, Any]:
    for name, named in NAMED.items():
        if model is named:
            return {"$ref": f"#/components/schemas/{name}"}
    refs.setdefault(repr(model), model)
    return {"$ref": repr(model)}  # replaced once every model is known


def document(api_ops: list[Op], description: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 description of ``api_ops``."""
    wanted: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for op in api_ops:
        paths.setdefault(op.doc_path, {})[op.method.lower()] = _operation(op, wanted)
    keys = list(wanted)
    schemas, components = msgspec.json.schema_components(
        [wanted[k] for k in keys], ref_template="#/components/schemas/{name}"
    )
    by_key = dict(zip(keys, schemas, strict=True))
    components.update({name: msgspec.json.schema(named) for name, named in NAMED.items()})
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "fusionsync catalog server", "version": version, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from /oauth2/token (not needed when the server runs with --no-auth).",
                },
                "fusion": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Fusion-Authorization",
                    "description": "'Bearer <fusion token>' from .../datasets/{dataset}/authorize/token: distributions "
                    "need it on top of the API token, and it opens one dataset only.",
                },
            },
            "schemas": components,
            "responses": {f"E{code}": _error_answer(code) for code in sorted(ERRORS) if code != 416}
            | {"E416": {"description": ERRORS[416]}},
        },
    }
    resolved: dict[str, Any] = _resolve_placeholders(doc, by_key)
    return resolved


def _error_answer(code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": ERRORS[code],
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if code == 405:
        answer["headers"] = {"Allow": {"schema": {"type": "string"}}}
    return answer


def _resolve_placeholders(node: Any, by_key: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in by_key:
            return dict(by_key[ref])
        return {k: _resolve_placeholders(v, by_key) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_placeholders(v, by_key) for v in node]
    return node


def _operation(op: Op, wanted: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    params: list[dict[str, Any]] = []
    for name in op.path_params:
        kind = models.DatasetIdentifier if name == "dataset" else models.Identifier
        params.append({"name": name, "in": "path", "required": True, "schema": _schema_ref(kind, wanted)})
    if op.paged:
        params.append(
            {
                "name": NEXT_TOKEN,
                "in": "header",
                "required": False,
                "schema": _schema_ref(models.NextTokenValue, wanted),
                "description": "The x-jpmc-next-token of the previous page: the page after it (an empty page "
                "when the collection has shrunk since).",
            }
        )
    for p in op.params:
        entry: dict[str, Any] = {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "schema": _schema_ref(p.schema, wanted),
        }
        if p.description:
            entry["description"] = p.description
        params.append(entry)
    if params:
        spec["parameters"] = params
    if op.is_open:
        spec["security"] = []
    elif "/distributions" in op.path:
        spec["security"] = [{"bearer": [], "fusion": []}]
    if op.bodies:
        content = {
            media: {"schema": {"type": "string", "format": "binary"} if model is bytes else _schema_ref(model, wanted)}
            for media, model in op.bodies.items()
        }
        spec["requestBody"] = {"required": op.body_required, "content": content}
    spec["responses"] = {str(code): _answer(op, code, wanted) for code in sorted(op.statuses)}
    return spec


def _answer(op: Op, code: int, wanted: dict[str, Any]) -> dict[str, Any]:
    given = op.answers.get(code)
    if given is None:
        return {"$ref": f"#/components/responses/E{code}"}
    answer: dict[str, Any] = {"description": given.description}
    headers = {name: _header_schema(name, wanted) for name in given.headers}
    if op.paged and code < 300:
        headers[NEXT_TOKEN] = {
            "description": "Present when more pages follow: send it back to get the next one.",
            "schema": {"type": "string"},
        }
    if headers:
        answer["headers"] = headers
    if given.model is not None and op.method != "HEAD":
        schema = {"type": "string", "format": "binary"} if given.model is bytes else _schema_ref(given.model, wanted)
        answer["content"] = {given.media: {"schema": schema}}
    return answer


def _header_schema(name: str, wanted: dict[str, Any]) -> dict[str, Any]:
    if name == "Content-Length":
        return {"schema": {"type": "integer", "minimum": 0}}
    if name == "x-jpmc-checksum-algorithm":
        return {"schema": {"type": "string", "enum": ["SHA-256"]}}
    return {"schema": {"type": "string"}}


def _operation_id(op: Op) -> str:
    words = [w.strip("{}") for w in op.path.removeprefix("/api/v1/").split("/") if w]
    return op.method.lower() + "_" + "_".join(words).replace(".", "_")
