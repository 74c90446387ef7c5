"""The web catalog over plain HTTP: sessions and the checks on writes, read-only browsing with --no-auth,
pages of a catalog with 100,000 distributions, escaping, and no secret in a URL or a log."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.helpers import RunningServer, start_server


@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    text: str


def fetch(server: RunningServer, method: str, path: str, body: str = "", headers: dict[str, str] | None = None) -> Page:
    conn: http.client.HTTPConnection
    if server.scheme == "https":
        tls = ssl.create_default_context(cafile=server.ca_file)
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=30, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        hdrs = dict(headers or {})
        if body:
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body.encode() or None, headers=hdrs)
        answer = conn.getresponse()
        return Page(answer.status, answer.headers, answer.read().decode())
    finally:
        conn.close()


def sign_in(server: RunningServer) -> tuple[str, str]:
    """A session cookie (``name=value``) and its CSRF token."""
    creds = server.credentials()
    form = urllib.parse.urlencode({"client_id": creds["client_id"], "client_secret": creds["client_secret"]})
    answer = fetch(server, "POST", "/signin", form)
    assert answer.status == 303, answer.text
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert ("Secure" in cookie) == (server.scheme == "https")
    pair = cookie.split(";")[0]
    page = fetch(server, "GET", "/", headers={"Cookie": pair})
    token = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert token is not None, page.text
    return pair, token.group(1)


def test_writes_need_the_session_its_csrf_token_and_this_site(server: RunningServer) -> None:
    cookie, csrf = sign_in(server)
    own = {"Cookie": cookie, "Origin": server.base}
    assert fetch(server, "POST", "/session/token").status == 403  # no session
    assert fetch(server, "POST", "/session/token", headers=own).status == 403  # no CSRF token
    assert fetch(server, "POST", "/session/token", headers={**own, "X-CSRF-Token": "0" * 64}).status == 403
    evil = {**own, "X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:1"}
    assert fetch(server, "POST", "/session/token", headers=evil).status == 403
    cross = {**own, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert fetch(server, "POST", "/session/token", headers=cross).status == 403
    answer = fetch(server, "POST", "/session/token", headers={**own, "X-CSRF-Token": csrf})
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    token = re.search(r'"access_token":"([^"]+)"', answer.text)
    assert token is not None
    # the token opens the API for the signed-in client
    created = server.api(
        "POST", "catalogs/made", json_body={}, headers={"Authorization": f"Bearer {token.group(1)}"}, auth=False
    )
    assert created.status == 201, created.body
    # signing out needs the CSRF token too
    assert fetch(server, "POST", "/signout", "csrf=nope", headers={"Cookie": cookie}).status == 403
    out = fetch(server, "POST", "/signout", f"csrf={csrf}", headers={"Cookie": cookie})
    assert out.status == 303 and 'fusionsync_session=""' in out.headers["Set-Cookie"]


def test_no_auth_browses_read_only(open_server: RunningServer) -> None:
    open_server.create_dataset("cat", "DS", title="Read only")
    open_server.upload("cat", "DS", "20240101", "csv", b"a,b\n")
    page = fetch(open_server, "GET", "/catalogs/cat/datasets/DS")
    assert page.status == 200
    assert "Read only" in page.text and "20240101" in page.text
    assert "js-upload" not in page.text and "Sign out" not in page.text and "read-only" in page.text
    assert "js-new-dataset" not in fetch(open_server, "GET", "/catalogs/cat").text
    download = fetch(open_server, "GET", "/download/catalogs/cat/DS/20240101/csv")
    assert download.status == 200 and download.text == "a,b\n"
    assert fetch(open_server, "POST", "/session/token", headers={"X-CSRF-Token": ""}).status == 403


def test_pages_escape_values_and_send_a_strict_content_policy(server: RunningServer) -> None:
    hostile = "\"><script>alert(1)</script>&'"
    server.create_dataset("cat", "x <b>", title=hostile, description=hostile)
    cookie, _ = sign_in(server)
    page = fetch(server, "GET", "/catalogs/cat/datasets/x%20%3Cb%3E", headers={"Cookie": cookie})
    assert page.status == 200
    assert "<script>alert" not in page.text and "<b>" not in page.text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#39;" in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self': no inline script
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    listing = fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie})
    assert 'href="/catalogs/cat/datasets/x%20%3Cb%3E"' in listing.text


def test_no_secret_in_a_url_or_the_log(tmp_path: object, server: RunningServer) -> None:
    secret = server.credentials()["client_secret"]
    sign_in(server)
    wrong = urllib.parse.urlencode({"client_id": "x", "client_secret": "wrong-secret-123", "next": "/status"})
    answer = fetch(server, "POST", "/signin", wrong)
    assert answer.status == 401 and "wrong-secret-123" not in answer.text
    assert fetch(server, "GET", "/status").headers["Location"] == "/signin?next=/status"
    log = server.log.read_text()
    assert secret not in log and "wrong-secret-123" not in log


def seed_many(server: RunningServer, series: int, datasets: int) -> None:
    """``series`` series members of one csv distribution each in cat/BIG, and ``datasets`` more datasets,
    written straight into the server's database (the API would take minutes for this many)."""
    server.create_dataset("cat", "BIG", title="Big")
    assert server.upload("cat", "BIG", "00000000", "csv", b"x\n").status == 200
    db = sqlite3.connect(server.root / "catalog.sqlite", timeout=30)
    with db:
        (blob,) = db.execute("SELECT blob FROM distributions").fetchone()
        now = "2024-01-01T00:00:00Z"
        db.executemany(
            "INSERT INTO series(catalog, dataset, id, created) VALUES ('cat', 'BIG', ?, ?)",
            ((f"{i:08d}", now) for i in range(1, series)),
        )
        db.executemany(
            "INSERT INTO distributions(catalog, dataset, series, format, blob, size, digest, checksum, modified) "
            "VALUES ('cat', 'BIG', ?, 'csv', ?, 2, 'd', 'c', ?)",
            ((f"{i:08d}", blob, now) for i in range(1, series)),
        )
        db.executemany(
            "INSERT INTO datasets(catalog, id, meta, modified) VALUES ('cat', ?, ?, ?)",
            ((f"D{i:05d}", f'{{"identifier": "D{i:05d}", "title": "Dataset {i}"}}', now) for i in range(datasets)),
        )
    db.close()


def test_a_catalog_of_100000_distributions_is_browsed_by_pages(server: RunningServer) -> None:
    seed_many(server, 100_000, 250)
    cookie, _ = sign_in(server)
    started = time.monotonic()
    page = fetch(server, "GET", "/catalogs/cat/datasets/BIG", headers={"Cookie": cookie})
    first = time.monotonic() - started
    assert page.status == 200
    shown = re.findall(r">(\d{8})</a>", page.text)
    assert shown == [f"{i:08d}" for i in range(99_999, 99_949, -1)]  # the newest 50
    older = re.search(r'href="\?before=(\d+)" rel="next"', page.text)
    assert older is not None and older.group(1) == "00099950"
    page = fetch(server, "GET", "/catalogs/cat/datasets/BIG?before=00000030", headers={"Cookie": cookie})
    assert re.findall(r">(\d{8})</a>", page.text) == [f"{i:08d}" for i in range(29, -1, -1)]
    assert 'rel="next"' not in page.text  # the last page
    assert first < 2.0, f"the first page took {first:.2f} s"  # a page, not 100,000 rows (about 0.05 s here)

    catalog = fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie})
    names = re.findall(r'datasets/(D\d{5}|BIG)"', catalog.text)
    assert names == ["BIG"] + [f"D{i:05d}" for i in range(99)]
    following = fetch(server, "GET", "/catalogs/cat?after=D00098", headers={"Cookie": cookie})
    assert re.findall(r'datasets/(D\d{5})"', following.text)[:2] == ["D00099", "D00100"]
    found = fetch(server, "GET", "/search?q=dataset%2024", headers={"Cookie": cookie})
    assert re.findall(r'datasets/(D\d{5})"', found.text) == ["D00024"] + [f"D{i:05d}" for i in range(240, 250)]


def test_the_status_page_shows_uploads_in_progress_and_recent_changes(server: RunningServer) -> None:
    server.create_dataset("cat", "DS")
    server.upload("cat", "DS", "20240101", "csv", b"a,b\n" * 1000)
    target = "catalogs/cat/datasets/DS/datasetseries/20240102/distributions/parquet"
    assert server.api("POST", target + "/operationType/upload").status == 200
    cookie, _ = sign_in(server)
    page = fetch(server, "GET", "/status", headers={"Cookie": cookie}).text
    stats = dict((label, value) for value, label in re.findall(r"<strong>([^<]+)</strong><span>([^<]+)</span>", page))
    assert stats["storage used"] == "3.9 KiB" and stats["distributions"] == "1" and stats["uploads in progress"] == "1"
    assert re.search(r"<td>20240102</td><td><code>parquet</code></td>\s*<td>open</td>", page)
    assert re.search(r"<td>created</td>.*DS</a></td>\s*<td>20240101</td>", page, re.S)


def test_under_tls_the_session_cookie_is_secure(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    (tmp_path / "server.pem").chmod(0o600)  # a key others may read is refused
    pem = str(tmp_path / "server.pem")
    server = start_server(tmp_path / "root", "--tls-cert", pem, "--tls-key", pem, ca_file=tmp_path / "ca.pem")
    try:
        server.create_dataset("cat", "DS", title="Over TLS")
        cookie, csrf = sign_in(server)  # checks Secure
        assert "Over TLS" in fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie}).text
        own = {"Cookie": cookie, "Origin": server.base, "X-CSRF-Token": csrf}
        assert fetch(server, "POST", "/session/token", headers=own).status == 200
        plain = {**own, "Origin": server.base.replace("https:", "http:")}  # the same host without TLS
        assert fetch(server, "POST", "/session/token", headers=plain).status == 403
    finally:
        server.stop()


@pytest.mark.scaled
def test_pages_read_either_store(server: RunningServer) -> None:
    """The pages' queries (pages by key, search in the metadata's JSON, totals) on SQLite and on PostgreSQL."""
    server.create_dataset("cat", "A_ONE", title="First", description="Has the Needle inside")
    server.create_dataset("cat", "B_TWO", title="needle in the title")
    server.create_dataset("cat", "C_THREE", title="Third", description="nothing here")
    for series in ("20240101", "20240103", "20240102"):
        assert server.upload("cat", "A_ONE", series, "csv", series.encode()).status == 200
    cookie, _ = sign_in(server)
    catalog = fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie}).text
    assert re.findall(r'datasets/([A-Z_]+)"', catalog) == ["A_ONE", "B_TWO", "C_THREE"]
    dataset = fetch(server, "GET", "/catalogs/cat/datasets/A_ONE", headers={"Cookie": cookie}).text
    assert re.findall(r">(\d{8})</a>", dataset) == ["20240103", "20240102", "20240101"]
    found = fetch(server, "GET", "/search?q=NEEDLE", headers={"Cookie": cookie}).text
    assert re.findall(r'datasets/([A-Z_]+)"', found) == ["A_ONE", "B_TWO"]
    found = fetch(server, "GET", "/search?q=_T", headers={"Cookie": cookie}).text  # _ is no wildcard
    assert re.findall(r'datasets/([A-Z_]+)"', found) == ["B_TWO", "C_THREE"]
    status = fetch(server, "GET", "/status", headers={"Cookie": cookie}).text
    assert "<strong>24 B</strong><span>storage used</span>" in status
    assert "<strong>3</strong><span>series members</span>" in status


def test_web_sign_ins_back_off_with_the_token_endpoint_and_end_with_the_client(server: RunningServer) -> None:
    """Guessing secrets through the sign-in page is slowed down as through /oauth2/token (the same count per
    client and address), and a session ends when its client's secret is rotated."""
    pair, _ = sign_in(server)
    creds = server.credentials()
    wrong = urllib.parse.urlencode({"client_id": creds["client_id"], "client_secret": "a-wrong-guess-0123"})
    for _ in range(5):
        assert fetch(server, "POST", "/signin", wrong).status == 401
    slowed = fetch(server, "POST", "/signin", wrong)
    assert slowed.status == 429 and "Too many failed sign-ins" in slowed.text, slowed.text
    token_form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    )
    assert fetch(server, "POST", "/oauth2/token", token_form).status == 429  # the same count as the API's
    assert fetch(server, "GET", "/", headers={"Cookie": pair}).status == 200  # a session made before goes on
    new_file = server.root.parent / "rotated.json"
    done = subprocess.run(
        [sys.executable, "-m", "fusionsync", "clients", "rotate", creds["client_id"], "--root", str(server.root),
         "--credentials", str(new_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ended = fetch(server, "GET", "/", headers={"Cookie": pair})
    assert ended.status == 303 and ended.headers["Location"].startswith("/signin"), ended.status


@pytest.mark.scaled
def test_a_signed_out_session_is_refused_to_a_copy_of_its_cookie(server: RunningServer) -> None:
    """Signing out revokes the session in the metadata store: a copy of the cookie (another tab, a thief) is
    refused by whichever worker answers, while another session of the same client goes on; signing out without
    a valid session only drops the cookie."""
    server.create_dataset("cat", "SECRET_DS", title="Only for the signed in")
    cookie, csrf = sign_in(server)
    other, _ = sign_in(server)
    assert "SECRET_DS" in fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie}).text
    out = fetch(server, "POST", "/signout", f"csrf={csrf}", headers={"Cookie": cookie, "Origin": server.base})
    assert out.status == 303 and out.headers["Location"] == "/signin", out.status
    for _ in range(6):  # two workers: each must refuse it
        page = fetch(server, "GET", "/catalogs/cat", headers={"Cookie": cookie})
        assert page.status == 303 and page.headers["Location"] == "/signin?next=/catalogs/cat", page.status
        assert "SECRET_DS" not in page.text
        assert fetch(server, "POST", "/session/token", headers={"Cookie": cookie, "X-CSRF-Token": csrf}).status == 403
        assert fetch(server, "GET", "/download/catalogs/cat/SECRET_DS/x/csv", headers={"Cookie": cookie}).status == 303
        assert "SECRET_DS" in fetch(server, "GET", "/catalogs/cat", headers={"Cookie": other}).text
    for headers in ({"Cookie": cookie}, {"Cookie": "fusionsync_session=forged.token"}, {}):  # nothing left to end
        again = fetch(server, "POST", "/signout", "csrf=", headers=headers)
        assert again.status == 303 and 'fusionsync_session=""' in again.headers["Set-Cookie"], again.status
    audit = [json.loads(line) for line in (server.root / "audit.log").read_text().splitlines()]
    outs = [line for line in audit if line["event"] == "sign-out"]
    assert len(outs) == 1 and outs[0]["client"] == server.credentials()["client_id"], outs
    assert cookie.split("=", 1)[1] not in (server.root / "audit.log").read_text()
