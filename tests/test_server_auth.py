"""Authentication: a token on every API route, per-dataset fusion tokens, the token endpoint, --no-auth."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from fusionsync.server.auth import API, FUSION, KeyRing, TokenAuthority
from tests.api_doc import Operation, api_operations, internal_errors, is_stream, watch_for_internal_errors
from tests.helpers import Answer, RunningServer, start_server

HELLO = {"Digest": f"SHA-256={fsync_digest_of([b'hello'])}"}


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


def call(server: RunningServer, op: Operation, headers: dict[str, str]) -> Answer:
    """``op`` on dataset A with exactly ``headers`` (no token added); the endless event stream as HEAD."""
    body = b"hello" if op.method in ("PUT", "POST") else None
    method = "HEAD" if is_stream(op) else op.method
    return server.request(method, op.url(), body=body, headers={**HELLO, **headers}, auth=False)


def assert_refused(answer: Answer, op: Operation, why: str) -> None:
    assert answer.status == 401, (str(op), why, answer.status, answer.body[:200])
    if op.method != "HEAD" and not is_stream(op):
        assert answer.json()["message"], (str(op), why)


def token_answer(server: RunningServer) -> Answer:
    creds = server.credentials()
    form = {"grant_type": "client_credentials", **{k: creds[k] for k in ("client_id", "client_secret")}}
    return server.request("POST", "/oauth2/token", form=form, auth=False)


def another_server(server: RunningServer) -> TokenAuthority:
    """The token authority of another server (a key of its own)."""
    return TokenAuthority(KeyRing(server.root.with_name(f"other-{os.getpid()}.key")), None)


def forged_tokens(server: RunningServer) -> dict[str, str]:
    """Authorization headers that must not open anything."""
    good = server.token()
    body, _, sig = good.partition(".")
    other_key = another_server(server)
    return {
        "garbage": "Bearer nonsense",
        "no token": "Bearer ",
        "signature changed": f"Bearer {body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}",
        "claims changed": f"Bearer {body[:-2]}xx.{sig}",
        "signed by another server": f"Bearer {other_key.issue('fusionsync', API)}",
        "a fusion token": f"Bearer {server.fusion_token('cat', 'A')}",
        "another scheme": f"Basic {good}",
        "not ASCII": "Bearer \u00e9t\u00e9.\u00e9t\u00e9",
    }


def test_every_api_route_refuses_missing_and_forged_tokens(server: RunningServer) -> None:
    server.create_dataset("cat", "A")
    server.upload("cat", "A", "s", "csv", b"hello")
    fusion = {"Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'A')}"}
    forged = forged_tokens(server)
    ops = api_operations()
    assert len(ops) >= 35
    for op in ops:
        assert_refused(call(server, op, fusion), op, "no Authorization")
        for why, value in forged.items():
            assert_refused(call(server, op, {"Authorization": value, **fusion}), op, why)
        # ... while the genuine token passes (whatever the operation then says about its input)
        assert call(server, op, {"Authorization": f"Bearer {server.token()}", **fusion}).status != 401, str(op)


def test_distributions_need_a_fusion_token_for_their_own_dataset(server: RunningServer) -> None:
    server.create_dataset("cat", "A")
    server.create_dataset("cat", "B")
    server.upload("cat", "A", "s", "csv", b"hello")
    api = {"Authorization": f"Bearer {server.token()}"}
    for_b = server.fusion_token("cat", "B")
    other_key = another_server(server)
    refused = {
        "none": {},
        "for another dataset": {"Fusion-Authorization": f"Bearer {for_b}"},
        "an API token": {"Fusion-Authorization": f"Bearer {server.token()}"},
        "signed by another server": {"Fusion-Authorization": f"Bearer {other_key.issue('x', FUSION, 'cat/A')}"},
        "garbage": {"Fusion-Authorization": "Bearer \u00e9"},
    }
    ops = [op for op in api_operations() if op.needs_fusion_token]
    assert len(ops) >= 12
    for op in ops:
        for why, headers in refused.items():
            assert_refused(call(server, op, {**api, **headers}), op, why)
    download = "catalogs/cat/datasets/A/datasetseries/s/distributions/csv"
    fusion_a = {"Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'A')}"}
    assert server.api("GET", download, headers=fusion_a).body == b"hello"
    # other datasets' token endpoints stay open to API tokens: fusion tokens are per dataset, not per client
    assert server.api("GET", "catalogs/cat/datasets/B/authorize/token").status == 200


def test_expired_tokens_are_refused_everywhere(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root", "--token-ttl", "1")
    try:
        server.create_dataset("cat", "A")
        token, fusion = server.token(), server.fusion_token("cat", "A")
        headers = {"Authorization": f"Bearer {token}", "Fusion-Authorization": f"Bearer {fusion}"}
        assert server.request("GET", "/api/v1/catalogs/cat/datasets/A", headers=headers, auth=False).status == 200
        assert token_answer(server).json()["expires_in"] == 1
        time.sleep(2.1)
        for op in api_operations():
            assert_refused(call(server, op, headers), op, "expired")
        assert internal_errors(server.log) == []
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"client_secret": "wrong"}, 401),
        ({"client_id": "nobody"}, 401),
        ({"client_id": "nobody", "client_secret": "\u00e9t\u00e9"}, 401),
        ({"client_secret": "\u00e9t\u00e9\U0001f600"}, 401),
        ({"grant_type": "password"}, 400),
        ({"grant_type": None}, 400),
        ({"client_id": None}, 400),
        ({"client_secret": None}, 400),
    ],
)
def test_the_token_endpoint_refuses_wrong_credentials(
    server: RunningServer, form: dict[str, str | None], status: int
) -> None:
    creds = server.credentials()
    base: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "aud": "fusionsync",
    }
    sent = {k: v for k, v in {**base, **form}.items() if v is not None}
    answer = server.request("POST", "/oauth2/token", form=sent, auth=False)
    assert answer.status == status and answer.json()["message"], answer.body
    assert "access_token" not in answer.json()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--zz\r\nbroken", "multipart/form-data; boundary=zz"),
        (b"xx", "multipart/form-data"),
        (b"grant_type=client_credentials&client_id=%FF&client_secret=%FE", "application/x-www-form-urlencoded"),
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (b"", "application/x-www-form-urlencoded"),
    ],
)
def test_the_token_endpoint_answers_malformed_forms_with_400_or_401(
    server: RunningServer, body: bytes, content_type: str
) -> None:
    answer = server.request("POST", "/oauth2/token", body=body, headers={"Content-Type": content_type}, auth=False)
    assert answer.status in (400, 401) and answer.json()["message"], answer.body


def test_tokens_last_long_enough_for_the_sdk_and_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root")
    try:
        token = server.token()
        assert token_answer(server).json()["expires_in"] > 900  # the SDK asks again below 15 minutes left
    finally:
        server.stop()
    again = start_server(tmp_path / "root")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        assert again.request("GET", "/api/v1/catalogs", headers=headers, auth=False).status == 200
    finally:
        again.stop()


def test_no_auth_accepts_calls_without_tokens(open_server: RunningServer) -> None:
    srv = open_server
    assert srv.request("POST", "/api/v1/catalogs/cat", json_body={}, auth=False).status == 201
    assert srv.request("POST", "/api/v1/catalogs/cat/datasets/D", json_body={}, auth=False).status == 201
    dist = "/api/v1/catalogs/cat/datasets/D/datasetseries/s/distributions/csv"
    assert srv.request("PUT", dist, body=b"hello", headers=HELLO, auth=False).status == 200
    assert srv.request("GET", dist + "/operationType/download", auth=False).body == b"hello"
    changes = srv.request("GET", "/api/v1/catalogs/cat/datasets/changes?datasets=D", auth=False).json()
    assert changes["datasets"][0]["distributions"][0]["key"] == "D/s/distribution.csv"
    assert srv.request("GET", "/api/v1/catalogs", auth=False).json()["resources"][0]["identifier"] == "cat"
    # tokens are still handed out, for clients that always ask for one
    form = {"grant_type": "client_credentials", "client_id": "anyone", "client_secret": "anything"}
    assert srv.request("POST", "/oauth2/token", form=form, auth=False).status == 200


def test_secrets_are_not_logged(server: RunningServer) -> None:
    server.token()
    server.api("GET", "catalogs")
    secret = server.credentials()["client_secret"]
    assert secret not in server.log.read_text()
