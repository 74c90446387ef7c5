"""Authentication: tokens on every API route, per-dataset fusion tokens, --no-auth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import RunningServer, start_server

ROUTES = [
    ("GET", "catalogs"),
    ("GET", "catalogs/cat"),
    ("POST", "catalogs/new"),
    ("GET", "catalogs/cat/datasets"),
    ("GET", "catalogs/cat/datasets/changes?datasets=A"),
    ("GET", "catalogs/cat/datasets/A"),
    ("PUT", "catalogs/cat/datasets/A"),
    ("DELETE", "catalogs/cat/datasets/A"),
    ("GET", "catalogs/cat/products"),
    ("GET", "catalogs/cat/productDatasets"),
    ("GET", "catalogs/cat/datasets/A/authorize/token"),
    ("GET", "catalogs/cat/datasets/A/datasetseries"),
    ("GET", "catalogs/cat/datasets/A/datasetseries/s/distributions/csv"),
    ("PUT", "catalogs/cat/datasets/A/datasetseries/s/distributions/csv"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_missing_or_forged_tokens_are_refused(server: RunningServer, method: str, path: str) -> None:
    server.create_dataset("cat", "A")
    forged = server.token()[:-4] + "AAAA"
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Basic {server.token()}"},
    ):
        answer = server.request(method, "/api/v1/" + path, headers=headers, auth=False)
        assert answer.status == 401, (headers, answer.body)
        assert answer.json()["message"]


def test_wrong_client_secret_gets_no_token(server: RunningServer) -> None:
    creds = server.credentials()
    form = {"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": "wrong"}
    assert server.request("POST", "/oauth2/token", form=form, auth=False).status == 401
    form = {"grant_type": "password", "client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    assert server.request("POST", "/oauth2/token", form=form, auth=False).status == 400


def test_a_fusion_token_opens_only_its_dataset(server: RunningServer) -> None:
    server.create_dataset("cat", "A")
    server.create_dataset("cat", "B")
    server.upload("cat", "B", "s", "csv", b"secret")
    path = "catalogs/cat/datasets/B/datasetseries/s/distributions/csv"
    for_a = {"Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'A')}"}
    assert server.api("GET", path, headers=for_a).status == 401
    for_b = {"Fusion-Authorization": f"Bearer {server.fusion_token('cat', 'B')}"}
    assert server.api("GET", path, headers=for_b).body == b"secret"
    api_as_fusion = {"Fusion-Authorization": f"Bearer {server.token()}"}
    assert server.api("GET", path, headers=api_as_fusion).status == 401


def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root", "--token-ttl", "1")
    try:
        token = server.token()
        assert server.request("GET", "/api/v1/catalogs", headers={"Authorization": f"Bearer {token}"}).status == 200
        time.sleep(2.1)
        answer = server.request("GET", "/api/v1/catalogs", headers={"Authorization": f"Bearer {token}"}, auth=False)
        assert answer.status == 401
    finally:
        server.stop()


def test_no_auth_accepts_calls_without_tokens(open_server: RunningServer) -> None:
    assert open_server.request("POST", "/api/v1/catalogs/cat", json_body={}, auth=False).status == 201
    assert open_server.request("GET", "/api/v1/catalogs", auth=False).json()["resources"][0]["identifier"] == "cat"


def test_secrets_are_not_logged(server: RunningServer) -> None:
    server.token()
    server.api("GET", "catalogs")
    secret = server.credentials()["client_secret"]
    assert secret not in server.log.read_text()
