"""Server security: files on disk, roles and catalogs, tokens of removed clients and rotated keys, the audit log,
backoff on failed sign-ins, metadata that would break listings, and what answers say about themselves."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync.catalog.digest import fsync_digest_of
from fusionsync.cli import exposure_warnings
from fusionsync.server.clients import READ, WRITE, Client, hash_secret, load_clients, save_clients
from tests.helpers import Answer, RunningServer, start_server

DIST = "catalogs/cat/datasets/D/datasetseries/s/distributions/csv"


def sign_in(server: RunningServer, client_id: str, secret: str) -> Answer:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return server.request("POST", "/oauth2/token", form=form, auth=False)


def token_of(server: RunningServer, client_id: str, secret: str) -> str:
    answer = sign_in(server, client_id, secret)
    assert answer.status == 200, answer.body
    return str(answer.json()["access_token"])


def as_client(
    server: RunningServer,
    token: str,
    method: str,
    path: str,
    json_body: object = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    sent = {"Authorization": f"Bearer {token}", **(headers or {})}
    return server.api(method, path, headers=sent, auth=False, json_body=json_body)


def add_client(server: RunningServer, client: str, role: str, catalogs: list[str] | None = None) -> str:
    """Add a client to the running server's clients file; its secret."""
    path = server.root / "clients.json"
    known = load_clients(path)
    secret = f"{client}-secret-0123456789"
    known[client] = Client(client, hash_secret(secret), role, None if catalogs is None else frozenset(catalogs))
    save_clients(path, known)
    return secret


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusionsync", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def seeded(server: RunningServer) -> Iterator[RunningServer]:
    server.create_dataset("cat", "D")
    server.create_dataset("other", "E")
    assert server.upload("cat", "D", "s", "csv", b"hello").status == 200
    yield server


# -- files on disk ---------------------------------------------------------------------------------------


def test_every_file_of_the_root_is_its_owners_only(seeded: RunningServer) -> None:
    url = DIST.replace("csv", "bin")
    op = seeded.api("POST", url + "/operationType/upload").json()["operationId"]  # a temporary in ROOT/tmp
    assert op
    modes = {}
    for folder, dirs, files in os.walk(seeded.root):
        for name in dirs + files:
            path = Path(folder, name)
            modes[str(path.relative_to(seeded.root))] = stat.S_IMODE(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.stat(seeded.root).st_mode) == 0o700
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "server.key", "clients.json", "client_credentials.json"):
        assert modes[name] == 0o600, (name, oct(modes[name]))
    assert [n for n in modes if n.startswith("tmp/")] and [n for n in modes if n.startswith("blobs/")]
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert loose == {}
    assert "client_secret" not in (seeded.root / "clients.json").read_text()  # only a hash of it


@pytest.mark.parametrize("name", ["server.key", "clients.json"])
def test_a_secret_file_others_may_read_or_a_link_stops_the_server(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    start_server(root).stop()
    path = root / name
    path.chmod(0o644)
    with pytest.raises(RuntimeError, match=re.escape(f"permissions 0644 for {path} are too open")):
        start_server(root)
    path.chmod(0o600)
    path.rename(tmp_path / name)
    path.symlink_to(tmp_path / name)
    with pytest.raises(RuntimeError, match="symbolic link"):
        start_server(root)


def test_a_folder_not_ours_is_refused_and_links_in_the_root_are_never_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    (home / "tmp" / "precious").write_text("keep me")
    (home / "notes.txt").write_text("keep me too")
    with pytest.raises(RuntimeError, match=r"is not empty .* and is not a fusionsync root"):
        start_server(home)
    assert (home / "tmp" / "precious").read_text() == "keep me"
    root = tmp_path / "root"
    start_server(root).stop()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim").write_text("not the server's")
    (root / "blobs" / "zz").symlink_to(elsewhere)  # a link where a shard of blobs would be
    (root / "tmp" / "put-link").symlink_to(elsewhere / "victim")
    start_server(root).stop()  # the start-up sweep removes the links, not what they point to
    assert (elsewhere / "victim").read_text() == "not the server's"
    assert not os.path.lexists(root / "blobs" / "zz") and not os.path.lexists(root / "tmp" / "put-link")


# -- roles, catalogs, the audit log --------------------------------------------------------------------


def test_each_role_may_do_what_it_should_and_nothing_more(seeded: RunningServer) -> None:
    reader = token_of(seeded, "reader", add_client(seeded, "reader", READ))
    writer = token_of(seeded, "writer", add_client(seeded, "writer", WRITE))
    admin = seeded.token()
    # read: look and download, nothing else
    assert as_client(seeded, reader, "GET", "catalogs/cat/datasets/D").status == 200
    fusion = as_client(seeded, reader, "GET", "catalogs/cat/datasets/D/authorize/token").json()["access_token"]
    with_fusion = {"Fusion-Authorization": f"Bearer {fusion}"}
    assert as_client(seeded, reader, "GET", DIST, headers=with_fusion).body == b"hello"
    for method, path in [
        ("POST", "catalogs/cat/datasets/NEW"),
        ("PUT", "catalogs/cat/datasets/D"),
        ("DELETE", "catalogs/cat/datasets/D"),
        ("DELETE", DIST),
        ("PUT", DIST),
        ("POST", "catalogs/made-by-reader"),
    ]:
        answer = as_client(seeded, reader, method, path, json_body={}, headers=with_fusion)
        assert answer.status == 403 and "needs" in answer.json()["message"], (method, path, answer.body)
    # write: change and delete inside catalogs, but not catalogs themselves
    assert as_client(seeded, writer, "POST", "catalogs/cat/datasets/NEW", json_body={}).status == 201
    assert as_client(seeded, writer, "DELETE", "catalogs/cat/datasets/NEW").status == 200
    assert as_client(seeded, writer, "POST", "catalogs/made-by-writer", json_body={}).status == 403
    assert as_client(seeded, writer, "DELETE", "catalogs/other").status == 403
    # admin: catalogs too (a catalog is deleted once empty)
    assert as_client(seeded, admin, "POST", "catalogs/made-by-admin", json_body={}).status == 201
    assert as_client(seeded, admin, "DELETE", "catalogs/made-by-admin").status == 200
    assert seeded.api("GET", "catalogs/cat/datasets/D").status == 200  # nothing the others tried happened


@pytest.mark.scaled
def test_a_client_limited_to_catalogs_sees_only_those(seeded: RunningServer) -> None:
    token = token_of(seeded, "narrow", add_client(seeded, "narrow", WRITE, ["cat"]))
    listed = as_client(seeded, token, "GET", "catalogs").json()["resources"]
    assert [c["identifier"] for c in listed] == ["cat"]
    for path in ["catalogs/other", "catalogs/other/datasets", "catalogs/other/datasets/E/authorize/token"]:
        assert as_client(seeded, token, "GET", path).status == 404, path
    assert as_client(seeded, token, "PUT", "catalogs/other/datasets/E", json_body={}).status == 404
    assert as_client(seeded, token, "GET", "catalogs/cat/datasets/D").status == 200


def test_the_audit_log_keeps_changes_sign_ins_and_refusals_but_no_secret(seeded: RunningServer) -> None:
    secret = add_client(seeded, "reader", READ)
    reader = token_of(seeded, "reader", secret)
    assert sign_in(seeded, "reader", "wrong-secret-123456").status == 401
    assert as_client(seeded, reader, "DELETE", "catalogs/cat/datasets/D").status == 403
    assert seeded.api("DELETE", "catalogs/cat/datasets/D").status == 200
    assert as_client(seeded, "forged", "GET", "catalogs").status == 401
    text = (seeded.root / "audit.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    seen = {(e["event"], e.get("client"), e.get("method"), e.get("status")) for e in lines}
    assert ("sign-in", "reader", None, 200) in seen
    assert ("sign-in refused", "reader", None, 401) in seen
    assert ("refused", "reader", "DELETE", 403) in seen
    assert ("change", "fusionsync", "DELETE", 200) in seen
    assert ("refused", None, "GET", 401) in seen
    assert all(e["address"] == "127.0.0.1" and e["time"] for e in lines)
    for leak in (secret, reader, seeded.credentials()["client_secret"], "wrong-secret"):
        assert leak not in text


def test_a_flood_of_refusals_is_counted_not_written_line_by_line(server: RunningServer) -> None:
    """The first refusal of a source is written in full, its repeats as one count (at the latest when the
    server stops): 300 forged tokens and 100 sign-ins while backing off leave a handful of lines."""
    flood, tries = 300, 100
    for i in range(flood):
        assert as_client(server, "forged", "GET", f"catalogs/c{i}").status == 401
    for i in range(5):  # failures from this address: it must wait now
        assert sign_in(server, f"guess{i}", "wrong-secret-123456").status == 401
    for i in range(tries):
        assert sign_in(server, f"guess{i}", "wrong-secret-123456").status == 429
    server.stop()  # the counts of windows still open are written at the stop
    lines = [json.loads(line) for line in (server.root / "audit.log").read_text().splitlines()]
    forged = [e for e in lines if e["event"] == "refused" and e["client"] is None and e["status"] == 401]
    waited = [e for e in lines if e["event"] == "sign-in refused" and e["status"] == 429]
    workers = 2 if "--workers" in server.args else 1  # each worker counts the requests it answered
    for kind, total in ((forged, flood), (waited, tries)):
        written = [e for e in kind if "repeated" not in e]
        assert 1 <= len(written) <= workers and len(kind) <= 2 * workers, kind
        assert len(written) + sum(e.get("repeated", 0) for e in kind) == total, kind
        assert all(e["address"] == "127.0.0.1" for e in kind)
    assert forged[0]["path"] == "/api/v1/catalogs/c0" and waited[0]["tried"] == "guess0"
    assert len(lines) < 20


# -- tokens ---------------------------------------------------------------------------------------------


def test_a_removed_or_rotated_client_is_refused_at_once(seeded: RunningServer, tmp_path: Path) -> None:
    reader = token_of(seeded, "reader", add_client(seeded, "reader", READ))
    writer_secret = add_client(seeded, "writer", WRITE)
    writer = token_of(seeded, "writer", writer_secret)
    assert as_client(seeded, reader, "GET", "catalogs").status == 200
    done = cli("clients", "remove", "reader", "--root", str(seeded.root))
    assert done.returncode == 0, done.stderr
    assert as_client(seeded, reader, "GET", "catalogs").status == 401  # no restart, no new key
    new_file = tmp_path / "writer.json"
    done = cli("clients", "rotate", "writer", "--root", str(seeded.root), "--credentials", str(new_file))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert as_client(seeded, writer, "GET", "catalogs").status == 401
    assert sign_in(seeded, "writer", writer_secret).status == 401
    fresh = json.loads(new_file.read_text())
    assert as_client(seeded, token_of(seeded, "writer", fresh["client_secret"]), "GET", "catalogs").status == 200
    assert as_client(seeded, seeded.token(), "GET", "catalogs").status == 200  # the others go on


def test_a_signing_key_rotation_keeps_the_previous_tokens_until_the_next(server: RunningServer) -> None:
    first = server.token()
    assert cli("clients", "rotate-key", "--root", str(server.root)).returncode == 0
    second = token_of(server, "fusionsync", server.credentials()["client_secret"])
    assert first.split(".")[1] != second.split(".")[1]
    assert as_client(server, first, "GET", "catalogs").status == 200  # clients need not restart
    assert as_client(server, second, "GET", "catalogs").status == 200
    assert cli("clients", "rotate-key", "--root", str(server.root)).returncode == 0
    assert as_client(server, first, "GET", "catalogs").status == 401  # its key is gone
    assert as_client(server, second, "GET", "catalogs").status == 200


def test_failed_token_requests_back_off_per_client_and_address(server: RunningServer) -> None:
    secret, token = server.credentials()["client_secret"], server.token()
    for _ in range(5):
        assert sign_in(server, "fusionsync", "a-wrong-guess-0123").status == 401
    slowed = sign_in(server, "fusionsync", "a-wrong-guess-0123")
    assert slowed.status == 429 and int(slowed.headers["Retry-After"]) >= 1, slowed.body
    assert sign_in(server, "fusionsync", secret).status == 429  # not even the right secret is checked now
    assert sign_in(server, "someone-else", secret).status == 429  # from this address either
    assert as_client(server, token, "GET", "catalogs").status == 200  # tokens given go on working


def test_token_lifetimes_are_capped_and_secrets_stay_off_the_command_line() -> None:
    done = cli("serve", "--root", "/nonexistent-root", "--token-ttl", str(10 * 365 * 86400))
    assert done.returncode == 2 and "token-ttl" in done.stderr
    done = cli("serve", "--root", "/nonexistent-root", "--client", "id:secret")
    assert done.returncode == 2 and "--client" in done.stderr


# -- metadata that would break listings ----------------------------------------------------------------


def nested(depth: int) -> bytes:
    """Metadata nested ``depth`` levels deep (built as text: it is too deep for the json module)."""
    return b'{"description": "deep", "extra": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.scaled
def test_deeply_nested_metadata_is_refused_and_listings_keep_working(seeded: RunningServer) -> None:
    for path in ["catalogs/deep", "catalogs/cat/datasets/deep", "catalogs/cat/products/deep"]:
        answer = seeded.api("POST", path, body=nested(970), headers={"Content-Type": "application/json"})
        message = answer.json()["message"]  # JSON nested too deep to decode, or deeper than 32 levels
        assert answer.status == 400 and ("deeper than 32" in message or "recursion" in message), (path, message)
    ok = seeded.api("POST", "catalogs/cat/datasets/ok", body=nested(30), headers={"Content-Type": "application/json"})
    assert ok.status == 201, ok.body
    for path in ["catalogs", "catalogs/cat/datasets", "catalogs/cat/products"]:
        assert seeded.api("GET", path).status == 200, path


def test_an_unreadable_stored_item_fails_alone(tmp_path: Path) -> None:
    """Metadata an earlier release stored and that cannot be read back: listed as a stand-in, and deletable."""
    root = tmp_path / "root"
    server = start_server(root)
    try:
        server.create_dataset("cat", "A")
        server.create_dataset("cat", "C")
    finally:
        server.stop()
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("INSERT INTO catalogs VALUES ('broken', ?)", (deep,))
        db.execute("INSERT INTO datasets(catalog, id, meta, modified) VALUES ('cat', 'B', ?, '')", (deep,))
    server = start_server(root, "--page-size", "2")
    try:
        names = [c["identifier"] for c in server.api("GET", "catalogs").json()["resources"]]
        assert names == ["broken", "cat"]
        listing = server.api("GET", "catalogs/cat/datasets")
        assert [d["identifier"] for d in listing.json()["resources"]] == ["A", "B"]
        assert server.api("GET", "catalogs/cat/datasets/B").json()["identifier"] == "B"
        assert server.api("DELETE", "catalogs/cat/datasets/B").status == 200
        assert server.api("DELETE", "catalogs/broken").status == 200
    finally:
        server.stop()


# -- names, answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a\u200bb", "pay\u202eexe.csv", "e\u0301t\u00e9", "a\u2028b"])
def test_invisible_characters_and_other_than_nfc_forms_are_refused(server: RunningServer, name: str) -> None:
    answer = server.api("POST", f"catalogs/{urllib.parse.quote(name)}", json_body={})
    assert answer.status == 400, answer.body
    server.create_catalog("cat")
    answer = server.api("PUT", "catalogs/cat/productDatasets", json_body={"product": "p", "datasets": [name]})
    assert answer.status == 400, answer.body
    assert server.api("POST", "catalogs/\u00e9t\u00e9", json_body={}).status == 201  # NFC is fine


def test_download_names_cannot_inject_parameters_and_answers_are_not_cached(server: RunningServer) -> None:
    name = 'x";filename=evil.sh;y\u00e9'
    server.create_dataset("cat", name)
    assert server.upload("cat", name, "s", "csv", b"data").status == 200
    answer = server.api("GET", f"catalogs/cat/datasets/{name}/datasetseries/s/distributions/csv")
    disposition = answer.headers["Content-Disposition"]
    kind, plain, extended = disposition.split("; ")  # no parameter injected
    assert kind == "attachment" and plain.startswith('filename="') and plain.count('"') == 2, disposition
    encoded = extended.removeprefix("filename*=UTF-8''")
    assert urllib.parse.unquote(encoded) == f"{name}__cat__s.csv"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Server"] == "fusionsync"
    for path in ["catalogs", "catalogs/nope"]:
        headers = server.api("GET", path).headers
        assert headers["Cache-Control"] == "no-store" and headers["Server"] == "fusionsync"


def test_serving_beyond_loopback_without_tls_or_with_no_auth_is_warned() -> None:
    assert exposure_warnings("127.0.0.1", no_auth=True, tls=False) == []
    assert exposure_warnings("::1", no_auth=False, tls=False) == []
    assert len(exposure_warnings("0.0.0.0", no_auth=True, tls=False)) == 2
    assert [w for w in exposure_warnings("192.0.2.7", no_auth=False, tls=False) if "without TLS" in w]
    assert exposure_warnings("192.0.2.7", no_auth=False, tls=True) == []


@pytest.mark.scaled
def test_an_upload_lands_only_in_the_dataset_it_began_in(seeded: RunningServer) -> None:
    url = DIST.replace("/s/", "/t/")
    op = seeded.api("POST", url + "/operationType/upload").json()["operationId"]
    data = b"old bytes"
    part = seeded.api(
        "PUT",
        f"{url}/operations/upload?operationId={op}&partNumber=1",
        body=data,
        headers={"Digest": f"SHA-256={fsync_digest_of([data])}"},
    )
    assert part.status == 200, part.body
    assert seeded.api("DELETE", "catalogs/cat/datasets/D").status == 200
    seeded.create_dataset("cat", "D")  # the same name, another dataset
    whole = {"Digest": f"SHA-256={fsync_digest_of([data])}"}
    done = seeded.api(
        "POST", f"{url}/operations/upload?operationId={op}", json_body={"parts": [part.json()]}, headers=whole
    )
    assert done.status == 404, done.body
    assert seeded.api("GET", url).status == 404
    assert seeded.api("GET", "catalogs/cat/datasets/D/datasetseries").json()["resources"] == []
