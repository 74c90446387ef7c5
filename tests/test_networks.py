"""The client on networks: through a real forwarding proxy (proxy.py), over TLS with trustme's certificates.

The server is addressed as ``fusion.test``, a name only the proxy resolves (to 127.0.0.1): a sync that
completes through it cannot have made a single connection around it. The proxy counts the bytes it
carries from the server.
"""

from __future__ import annotations

import json
import multiprocessing
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from proxy.http.proxy import HttpProxyBasePlugin

import proxy
from fusionsync import FusionFileSystem
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.client.net import NetPolicy, TLSError
from tests.helpers import RunningServer, start_server
from tests.sync_fixtures import local_files, payload, seed, sync_once, write_local

HOST = "fusion.test"
SMALL, LARGE = 3000, 6 * 2**20  # a small file (the lean path) and a large one (ranges, multipart)


RECEIVED = multiprocessing.Value("q", 0)
"""Bytes the proxy carried from the server (its acceptors are processes forked from this one)."""


class ViaProxy(HttpProxyBasePlugin):  # type: ignore[misc]
    """Resolves fusion.test to 127.0.0.1 and counts what comes back from the server."""

    def resolve_dns(self, host: str, port: int) -> tuple[str | None, Any]:
        return ("127.0.0.1" if host == HOST else None), None

    def handle_upstream_chunk(self, chunk: memoryview) -> memoryview:
        with RECEIVED.get_lock():
            RECEIVED.value += len(chunk)
        return chunk


def received() -> int:
    return int(RECEIVED.value)


@pytest.fixture
def forward_proxy() -> Iterator[str]:
    RECEIVED.value = 0
    flags = ["--hostname", "127.0.0.1", "--port", "0", "--threaded", "--num-acceptors", "1", "--log-level", "ERROR"]
    with proxy.Proxy([*flags, "--plugins", f"{__name__}.ViaProxy"]) as running:
        yield f"http://127.0.0.1:{running.flags.port}"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_server(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> Iterator[RunningServer]:
    cert = ca.issue_cert(HOST, "127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    (tmp_path / "server.pem").chmod(0o600)  # a key others may read is refused
    server = start_server(
        tmp_path / "server-root", "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem"),
        ca_file=ca_file,
    )  # fmt: skip
    yield server
    server.stop()


def credentials(server: RunningServer, host: str = HOST, **extra: Any) -> dict[str, Any]:
    base = f"{server.scheme}://{host}:{server.port}"
    return {**server.credentials(), "auth_url": f"{base}/oauth2/token", "root_url": f"{base}/api/v1/", **extra}


def round_trip(fs: FusionFileSystem, server: RunningServer, tmp_path: Path) -> dict[str, bytes]:
    """Upload a small and a large file, then download them into a fresh folder; what was downloaded."""
    keys = {DistKey("cat", "A", "20240101", "csv"): SMALL, DistKey("cat", "A", "20240102", "csv"): LARGE}
    server.create_dataset("cat", "A")
    source = tmp_path / "up"
    for key, size in keys.items():
        write_local(source, key, payload(key, size))
    assert sync_once(fs, source, tmp_path, datasets=["A"], direction="upload").ok
    dest = tmp_path / "down"
    report = sync_once(fs, dest, tmp_path, datasets=["A"], direction="download")
    assert report.ok and len(report.transferred) == 2
    expected = {local_relative_path(k): payload(k, size) for k, size in keys.items()}
    assert local_files(dest) == expected
    lean = fs.http._small
    assert lean is not None and lean.idle > 0, "the small file came on the lean path, through the same proxy"
    return expected


def test_https_through_the_proxy_named_by_https_proxy(
    tls_server: RunningServer, forward_proxy: str, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fs = FusionFileSystem(credentials=credentials(tls_server))
    try:
        expected = round_trip(fs, tls_server, tmp_path)
    finally:
        fs.close()
    assert received() > sum(len(b) for b in expected.values()), "every download came through the proxy"


def test_http_through_the_proxy_of_the_credentials_file(
    server: RunningServer, forward_proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # the file's proxy wins over the environment's
    fs = FusionFileSystem(credentials=credentials(server, proxies={"http": forward_proxy}))
    try:
        expected = round_trip(fs, server, tmp_path)
    finally:
        fs.close()
    assert received() > sum(len(b) for b in expected.values())


def test_no_proxy_reaches_the_server_directly(
    tls_server: RunningServer, forward_proxy: str, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy)
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
    fs = FusionFileSystem(credentials=credentials(tls_server, host="127.0.0.1"), ca_bundle=str(ca_file))
    try:
        round_trip(fs, tls_server, tmp_path)
    finally:
        fs.close()
    assert received() == 0


def test_proxies_are_chosen_as_requests_chooses_them() -> None:
    env = {"HTTPS_PROXY": "http://env:1", "http_proxy": "http://low:2", "HTTP_PROXY": "http://up:3"}
    policy = NetPolicy(env=env | {"NO_PROXY": ".corp.example, 10.0.0.0/8, *.internal:8443"})
    assert policy.proxy_for("https://fusion.jpmorgan.com/api/v1/") == "http://env:1"
    assert policy.proxy_for("http://fusion.jpmorgan.com/") == "http://low:2"  # lower case first
    assert policy.proxy_for("https://a.corp.example/") is None
    assert policy.proxy_for("https://10.1.2.3/") is None
    assert policy.proxy_for("https://x.internal:8443/") is None
    assert policy.proxy_for("https://x.internal:443/") == "http://env:1"
    from_file = NetPolicy({"https": "http://user:p%40ss@file:4", "no_proxy": "skip.example"}, env=env)
    assert from_file.proxy_for("https://fusion.jpmorgan.com/") == "http://user:p%40ss@file:4"
    assert from_file.proxy_for("http://fusion.jpmorgan.com/") is None, "the file's proxies replace the environment's"
    assert from_file.proxy_for("https://skip.example/") is None
    assert from_file.route("https://fusion.jpmorgan.com/") == (
        "http://file:4",
        {"Proxy-Authorization": "Basic dXNlcjpwQHNz"},  # user:p@ss
    )
    assert NetPolicy({"all": "http://any:5"}, env={}).proxy_for("https://h/") == "http://any:5"
    assert NetPolicy(env={"CURL_CA_BUNDLE": "/x.pem"}).ca_bundle == "/x.pem"
    assert NetPolicy(ca_bundle="/y.pem", env={"REQUESTS_CA_BUNDLE": "/x.pem"}).ca_bundle == "/y.pem"


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_certificate_of_another_authority_is_refused_in_one_sentence(
    tls_server: RunningServer, tmp_path: Path, fast_path: bool
) -> None:
    seed(tls_server, "cat", {"A": {"20240101": ["csv"]}})
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    creds = credentials(tls_server, host="127.0.0.1")
    fs = FusionFileSystem(credentials=creds, ca_bundle=str(other), fast_path=fast_path, retries=5)
    try:
        with pytest.raises(TLSError, match=r"the TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(.+\) by the CA "):
            fs.get("cat/datasets/A/datasetseries/20240101/distributions/csv", str(tmp_path / "f.csv"))
    finally:
        fs.close()
    assert not (tmp_path / "f.csv").exists()


def test_the_cli_names_an_untrusted_server_in_one_line(tls_server: RunningServer, tmp_path: Path) -> None:
    tls_server.create_catalog("cat")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps(credentials(tls_server, host="127.0.0.1")))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem")}
    command = [sys.executable, "-m", "fusionsync", "ls", "--credentials", str(creds), "cat"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "the CA bundle" in done.stderr and "(from REQUESTS_CA_BUNDLE) cannot be read" in done.stderr
    system = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env | {"REQUESTS_CA_BUNDLE": ""})
    assert system.returncode == 1 and system.stderr.count("\n") == 1, system.stderr
    assert "is not trusted" in system.stderr and "--ca-bundle" in system.stderr, system.stderr
    trusted = subprocess.run(
        [*command[:4], "--ca-bundle", str(tls_server.ca_file), *command[4:]],
        capture_output=True, text=True, timeout=60, env=env | {"REQUESTS_CA_BUNDLE": ""},
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr


def test_every_worker_serves_tls_and_the_credentials_file_says_https(
    ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    (tmp_path / "server.pem").chmod(0o600)
    pem = str(tmp_path / "server.pem")
    server = start_server(tmp_path / "root", "--tls-cert", pem, "--tls-key", pem, "--workers", "2", ca_file=ca_file)
    try:
        written = server.credentials()
        assert written["root_url"] == f"https://127.0.0.1:{server.port}/api/v1/"
        assert written["auth_url"] == f"https://127.0.0.1:{server.port}/oauth2/token"
        fs = FusionFileSystem(credentials=str(server.credentials_file), ca_bundle=str(ca_file))
        try:
            round_trip(fs, server, tmp_path)
        finally:
            fs.close()
        context = ssl.create_default_context(cafile=str(ca_file))
        for _ in range(20):  # new connections, spread over both workers by the kernel: each speaks TLS
            with urllib.request.urlopen(server.root_url + "openapi.json", timeout=10, context=context) as answer:
                assert answer.status == 200
    finally:
        server.stop()


def test_a_certificate_that_does_not_load_stops_the_server_in_one_sentence(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    (tmp_path / "other-key.pem").chmod(0o640)
    root = tmp_path / "root"
    command = [sys.executable, "-m", "fusionsync", "serve", "--root", str(root), "--port", "0", "--workers", "2"]
    tls = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "other-key.pem")]
    done = subprocess.run([*command, *tls], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot serve TLS with {tmp_path / 'cert.pem'} and {tmp_path / 'other-key.pem'}" in done.stderr
    assert not root.exists(), "nothing was touched"
    (tmp_path / "other-key.pem").chmod(0o644)
    done = subprocess.run([*command, *tls], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"permissions 0644 for {tmp_path / 'other-key.pem'} are too open" in done.stderr
    assert not root.exists(), "nothing was touched"
