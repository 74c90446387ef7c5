"""Fuzzing every documented operation with schemathesis, against a real `fusionsync serve`.

The server's own ``/api/v1/openapi.json`` drives the generation: requests that fit the description
(positive mode) and requests that break it on purpose (negative mode). Every answer must be a
documented status code (never a 5xx), with the documented content type and body schema, and the
server must log no unexpected error.

Each operation is fuzzed in several shapes: every part generated (random names: mostly 404s and
400s), and with the catalog, product, dataset, series member, distribution and upload operation
pinned to ones that exist (the test's own), so that queries, headers and bodies reach the code
behind the lookups; uploads also get cases whose Digest matches their body.

The budget is fixed and the generation derandomized, so CI runs the same requests every time:
EXAMPLES cases per operation (every one but the endless event stream, which tests/test_events.py
covers) on a server with authentication and a smaller share on
a --no-auth one: about a minute of CPU, half a minute on 2 cores. No shrinking phase: a failure is reported as the first
failing request, with a curl command that replays it. By hand, FUSIONSYNC_FUZZ_EXAMPLES=500 (say)
fuzzes deeper, with fresh random data on every run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.serialization import Binary

from fusionsync.catalog.digest import fsync_digest_of
from tests.api_doc import Operation, internal_errors, is_stream, operations
from tests.conftest import Storage
from tests.helpers import RunningServer, start_server

DEEP = int(os.environ.get("FUSIONSYNC_FUZZ_EXAMPLES", "0"))
EXAMPLES = {"auth": DEEP or 25, "no-auth": DEEP or 6}
"""Cases per operation on each server (shared by the shapes and generation modes)."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PINNED_ELSEWHERE: dict[tuple[str, str], Callable[[str], dict[str, Any]]] = {
    ("GET", "/api/v1/catalogs/{catalog}/datasets/changes"): lambda c: {"query": {"datasets": "D"}},
    ("PUT", "/api/v1/catalogs/{catalog}/productDatasets"): lambda c: {"body": {"product": "P", "datasets": ["D"]}},
    ("POST", "/api/v1/catalogs/{catalog}/productDatasets"): lambda c: {"body": {"product": "P", "datasets": ["D"]}},
    ("PUT", "/api/v1/catalogs/{catalog}/datasets/{dataset}/attributes/{attribute}"): lambda c: {
        "body": {"identifier": "a", "index": 1}
    },
    ("POST", "/api/v1/catalogs/{catalog}/datasets/{dataset}/lineage"): lambda c: {
        "body": {"source": [{"catalog": c, "dataset": "D"}]}
    },
}
"""Operations whose resources are named in the query or the body, not the path."""
_serial = itertools.count()


class Fuzzed:
    """A running server, its OpenAPI description as schemathesis loaded it, and a session to call it."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.schema = schemathesis.openapi.from_url(server.root_url + "openapi.json", timeout=10)
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()
        self.server.stop()


def _fuzzed(tmp_path_factory: pytest.TempPathFactory, auth: bool, options: list[str]) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz") / "server-root"
    fuzzed = Fuzzed(start_server(root, "--page-size", "2", *options, auth=auth))
    yield fuzzed
    fuzzed.close()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[Fuzzed]:
    yield from _fuzzed(tmp_path_factory, True, storage())


@pytest.fixture(scope="module")
def open_fuzz_server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[Fuzzed]:
    yield from _fuzzed(tmp_path_factory, False, storage())


def seed(server: RunningServer, catalog: str) -> dict[str, str]:
    """Resources of a test's own (a catalog no other test uses); the values to pin in paths."""
    server.create_dataset(catalog, "D")
    server.create_product(catalog, "P", ["D"])
    assert server.upload(catalog, "D", "s", "csv", b"a,b\n1,2\n").status == 200
    assert server.upload(catalog, "D", "sample", "csv", b"a,b\n1,2\n").status == 200  # the dataset's sample
    attribute = server.api("PUT", f"catalogs/{catalog}/datasets/D/attributes/a", json_body={"identifier": "a"})
    assert attribute.status in (200, 201), attribute.body
    return {"catalog": catalog, "product": "P", "dataset": "D", "series": "s", "format": "csv", "attribute": "a"}


def new_operation(server: RunningServer, catalog: str, series: str = "datasetseries/s") -> str:
    url = f"catalogs/{catalog}/datasets/D/{series}/distributions/csv/operationType/upload"
    answer = server.api("POST", url)
    assert answer.status == 200, answer.body
    return str(answer.json()["operationId"])


def signed(case: Case) -> Case:
    """The case with a Digest header that matches its body (an upload, or a part, that can succeed)."""
    if isinstance(case.body, Binary):
        case.headers = {**(case.headers or {}), "Digest": f"SHA-256={fsync_digest_of([case.body.data])}"}
    return case


def has_inputs(op: Operation) -> bool:
    """Whether the operation takes anything a request could get wrong (else negative mode has nothing to break)."""
    return bool(op.spec.get("parameters") or op.spec.get("requestBody"))


def pinned_parts(fuzzed: Fuzzed, op: Operation, catalog: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The test's own resources to pin in a case (path, and the upload operation), and valid tokens."""
    server = fuzzed.server
    pinned: dict[str, Any] = {"path_parameters": {k: v for k, v in seed(server, catalog).items() if k in op.params}}
    headers: dict[str, str] = {}
    if server.auth and not op.is_open:
        headers["Authorization"] = f"Bearer {server.token()}"
    if op.needs_fusion_token:
        headers["Fusion-Authorization"] = f"Bearer {server.fusion_token(catalog, 'D')}" if server.auth else "Bearer -"
    if op.path.endswith("/operations/upload"):
        series = "sample" if "/sample/" in op.path else "datasetseries/s"
        pinned["query"] = {"operationId": new_operation(server, catalog, series)}
    return pinned, headers


def takes_bytes(op: Operation) -> bool:
    return "application/octet-stream" in op.spec.get("requestBody", {}).get("content", {})


def sure_upload(fuzzed: Fuzzed, op: Operation, catalog: str) -> Case:
    """An upload (or a part) that is valid in every way: the handler is reached whatever examples were drawn."""
    pinned, headers = pinned_parts(fuzzed, op, catalog)
    if "query" in pinned:
        pinned["query"] = {**pinned["query"], "partNumber": 1}
    api_op = fuzzed.schema[op.path][op.method]
    body = Binary(b"a,b\n3,4\n")
    case = api_op.Case(headers=headers, body=body, media_type="application/octet-stream", **pinned)
    return signed(case)


def strategy(fuzzed: Fuzzed, op: Operation, catalog: str) -> st.SearchStrategy[Case]:
    """Valid and invalid cases, with every part generated or with the resources pinned to the test's own."""
    pinned, headers = pinned_parts(fuzzed, op, catalog)
    api_op = fuzzed.schema[op.path][op.method]
    elsewhere = PINNED_ELSEWHERE.get((op.method, op.path), lambda c: {})(catalog)
    shapes = [
        api_op.as_strategy(GenerationMode.POSITIVE, headers=headers),
        api_op.as_strategy(GenerationMode.POSITIVE, headers=headers, **pinned, **elsewhere),
    ]
    if has_inputs(op):
        shapes.append(api_op.as_strategy(GenerationMode.NEGATIVE, headers=headers))
        shapes.append(api_op.as_strategy(GenerationMode.NEGATIVE, headers=headers, **pinned))
    if takes_bytes(op):
        if "query" in pinned:  # a part (the completion has a JSON body)
            pinned["query"] = {**pinned["query"], "partNumber": 1}
        uploads = api_op.as_strategy(GenerationMode.POSITIVE, headers=headers, **pinned)
        shapes.append(uploads.filter(lambda case: isinstance(case.body, Binary)).map(signed))
    return st.one_of(shapes)


def fuzz(fuzzed: Fuzzed, op: Operation, examples: int) -> dict[int, int]:
    """Send ``examples`` cases of ``op``; the count of each status answered."""
    server = fuzzed.server
    catalog = f"fuzz{next(_serial)}"
    seen: dict[int, int] = {}
    errors_before = len(internal_errors(server.log))
    deleted = False  # a DELETE that succeeded took the test's resources away: put them back for the next case

    @settings(
        max_examples=examples,
        derandomize=not DEEP,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy(fuzzed, op, catalog))
    def one(case: Case) -> None:
        nonlocal deleted
        if deleted:
            seed(server, catalog)
        response = case.call(base_url=server.base, session=fuzzed.session, timeout=30)
        deleted = op.method == "DELETE" and response.status_code < 300
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    one()
    if takes_bytes(op):  # drawn examples may all miss the one shape that can succeed: send it too
        response = sure_upload(fuzzed, op, catalog).call(base_url=server.base, session=fuzzed.session, timeout=30)
        assert response.status_code == 200, response.text
        seen[200] = seen.get(200, 0) + 1
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    assert internal_errors(server.log)[errors_before:] == [], "the server logged an unexpected error"
    return seen


FUZZED = [op for op in operations() if not is_stream(op)]


@pytest.mark.parametrize("op", FUZZED, ids=str)
def test_fuzz_every_operation_with_authentication(auth_server: Fuzzed, op: Operation) -> None:
    seen = fuzz(auth_server, op, EXAMPLES["auth"])
    assert sum(seen.values()) >= (EXAMPLES["auth"] if has_inputs(op) else 1), seen
    assert max(seen) < 500, seen
    if not op.is_open:  # the pinned shapes reach the handler: some answers are not about bad names or tokens
        assert set(seen) - {400, 401, 404}, seen


@pytest.mark.parametrize("op", FUZZED, ids=str)
def test_fuzz_every_operation_without_authentication(open_fuzz_server: Fuzzed, op: Operation) -> None:
    seen = fuzz(open_fuzz_server, op, EXAMPLES["no-auth"])
    assert sum(seen.values()) >= (EXAMPLES["no-auth"] if has_inputs(op) else 1), seen
    assert max(seen) < 500 and 401 not in seen, seen
