"""Credentials as the SDK reads them: files, environment, SDK objects, proxies, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fusionsync import AuthError, CredentialsError, FusionFileSystem
from fusionsync.client.credentials import Credentials, load_credentials
from tests.helpers import RunningServer
from tests.proxy import Proxy
from tests.sync_fixtures import sync_once


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_client_id_and_secret_from_the_environment(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = server.credentials()
    monkeypatch.setenv("FUSION_CLIENT_ID", creds.pop("client_id"))
    monkeypatch.setenv("FUSION_CLIENT_SECRET", creds.pop("client_secret"))
    server.create_catalog("cat")
    assert FusionFileSystem(credentials=str(write(tmp_path / "c.json", creds))).ls("", detail=False) == ["cat"]


def test_config_folder_is_searched_upwards_like_the_sdk(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "project" / "config" / "client_credentials.json", server.credentials())
    (tmp_path / "project" / "deep" / "er").mkdir(parents=True)
    server.create_catalog("cat")
    fs = FusionFileSystem(credentials=str(tmp_path / "project" / "deep" / "er" / "missing.json"))
    assert fs.ls("", detail=False) == ["cat"]
    monkeypatch.chdir(tmp_path / "project" / "deep")
    assert FusionFileSystem().ls("", detail=False) == ["cat"]  # the default, config/client_credentials.json


def test_the_sdk_credentials_object(server: RunningServer) -> None:
    from fusion.credentials import FusionCredentials

    sdk = FusionCredentials.from_file(server.credentials_file)
    server.create_catalog("cat")
    fs = FusionFileSystem(credentials=sdk, root_url=server.root_url)
    assert fs.ls("", detail=False) == ["cat"]


def test_requests_go_through_the_configured_proxy(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.upload("cat", "D", "20240101", "csv", b"via proxy")
    with Proxy(server.base, lambda method, path: False) as proxy:
        fs = FusionFileSystem(credentials=server.credentials() | {"proxies": {"http": proxy.base}})
        assert fs.cat("cat/datasets/D/datasetseries/20240101/distributions/csv") == b"via proxy"
        paths = [path for _, path in proxy.seen.requests]
    assert "/oauth2/token" in paths
    assert "/api/v1/catalogs/cat/datasets/D/authorize/token" in paths
    assert any(p.endswith("/distributions/csv/operationType/download") for p in paths)


def test_a_sync_through_a_proxy_sends_its_small_downloads_through_it(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "D")
    for series in ("20240101", "20240102"):
        server.upload("cat", "D", series, "csv", series.encode())
    with Proxy(server.base, lambda method, path: False) as proxy:
        fs = FusionFileSystem(credentials=server.credentials() | {"proxies": {"http": proxy.base}})
        report = sync_once(fs, tmp_path / "mirror", tmp_path, datasets=["D"], direction="download")
        paths = [path for _, path in proxy.seen.requests]
    assert report.ok and len(report.transferred) == 2
    assert sum(p.endswith("/distributions/csv/operationType/download") for p in paths) == 2


def test_a_refused_bearer_token_is_an_auth_error(server: RunningServer) -> None:
    fs = FusionFileSystem(credentials={"grant_type": "bearer", "bearer_token": "forged", "root_url": server.root_url})
    with pytest.raises(AuthError, match="access refused"):
        fs.ls("")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ({"grant_type": "magic"}, "unsupported grant_type 'magic'"),
        ({"grant_type": "bearer"}, "needs a bearer_token"),
        ({"client_id": "x"}, "client_id and client_secret are required"),
        ({"client_id": "x", "kid": "k", "private_key": "p"}, "kid/private_key are not supported"),
        ({"grant_type": "password", "client_id": "x"}, "needs client_id, username and password"),
        ({"client_id": 3, "client_secret": "s"}, "client_id must be a string"),
        ({"client_id": "x", "client_secret": "s", "proxies": ["p"]}, "proxies must be an object"),
    ],
)
def test_malformed_credentials_are_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any, message: str
) -> None:
    monkeypatch.delenv("FUSION_CLIENT_ID", raising=False)
    monkeypatch.delenv("FUSION_CLIENT_SECRET", raising=False)
    path = write(tmp_path / "client_credentials.json", content)
    with pytest.raises(CredentialsError, match=message) as info:
        FusionFileSystem(credentials=str(path))
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CredentialsError, match="not found"):
        FusionFileSystem(credentials=str(tmp_path / "nope.json"))
    with pytest.raises(CredentialsError, match="cannot read credentials from int"):
        load_credentials(42)


def test_password_grant_and_e2e_header_are_read() -> None:
    creds = Credentials.from_dict(
        {"grant_type": "password", "client_id": "app", "username": "u", "password": "p", "fusion_e2e": "trace"}
    )
    assert (creds.grant_type, creds.username, creds.password, creds.fusion_e2e) == ("password", "u", "p", "trace")
    assert load_credentials(creds) is creds
