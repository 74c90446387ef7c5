"""The web catalog in a real browser (Debian's chromium, headless, through Playwright): browse to a
distribution and download it, search, create a dataset and upload 12 MiB from the page (the SDK then
downloads it byte-identical), sign in and out, forged writes from another site, hostile titles. Each main
page is saved as a screenshot at 1280 px and on a narrow window under the pytest temp folder."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import browser, context, page, screenshot, shots
from tests.helpers import RunningServer

__all__ = ["browser", "context", "page", "shots"]
SCRIPT_TITLE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def sign_in(page: Page, server: RunningServer, path: str = "/") -> None:
    page.goto(server.base + path)
    expect(page).to_have_url(f"{server.base}/signin?next={path}")
    creds = server.credentials()
    page.get_by_label("Client id").fill(creds["client_id"])
    page.get_by_label("Client secret").fill(creds["client_secret"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.base + path)


def seed(server: RunningServer) -> bytes:
    answer = server.api("POST", "catalogs/markets", json_body={"title": "Markets", "description": "Prices and rates"})
    assert answer.status == 201, answer.body
    server.create_dataset(
        "markets",
        "FX_RATES",
        title="FX spot rates",
        description="Daily closing rates of 40 currencies",
        region=["EMEA"],
    )
    server.create_dataset("markets", "EQ_PRICES", title="Equity prices", description="Closing prices")
    server.create_product("markets", "PRICING", ["FX_RATES", "EQ_PRICES"])
    attrs = [
        {"identifier": "ccy", "index": 0, "dataType": "String", "title": "Currency", "isDatasetKey": True},
        {"identifier": "rate", "index": 1, "dataType": "Double", "title": "Rate", "description": "Units per USD"},
    ]
    assert server.api(
        "PUT", "catalogs/markets/datasets/FX_RATES/attributes", json_body={"attributes": attrs}
    ).status in (
        200,
        201,
    )
    content = b"ccy,rate\nEUR,0.91\nGBP,0.78\n" * 100
    for series in ("20240102", "20240103"):
        assert server.upload("markets", "FX_RATES", series, "csv", content).status == 200
    assert server.upload("markets", "FX_RATES", "20240103", "json", b'{"EUR": 0.91}').status == 200
    return content


def test_browse_from_front_page_to_a_distribution_and_download_it(
    server: RunningServer, page: Page, shots: Path
) -> None:
    content = seed(server)
    page.goto(server.base + "/")
    screenshot(page, shots, "signin")
    sign_in(page, server)
    expect(page.get_by_role("link", name="Markets")).to_be_visible()
    screenshot(page, shots, "catalogs")
    page.get_by_role("link", name="Markets").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Markets")
    expect(page.get_by_text("Prices and rates")).to_be_visible()
    screenshot(page, shots, "catalog")
    page.get_by_role("link", name="PRICING").click()
    expect(page.locator("table.list")).to_contain_text("Equity prices")
    page.get_by_role("link", name="FX_RATES").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("FX spot rates")
    expect(page.get_by_text("Daily closing rates of 40 currencies")).to_be_visible()
    expect(page.locator("table.attributes")).to_contain_text("Units per USD")
    dists = page.locator("table.dists")
    expect(dists).to_contain_text("20240103")
    expect(dists).to_contain_text(f"{len(content) / 1024:.1f} KiB")
    screenshot(page, shots, "dataset")
    page.get_by_role("link", name="20240102").click()
    digest = server.api("GET", "catalogs/markets/datasets/FX_RATES/datasetseries/20240102/distributions").json()
    expect(page.locator("section.dist")).to_contain_text(digest["resources"][0]["digest"])
    expect(page.locator("section.dist")).to_contain_text(f"{len(content)} bytes")
    screenshot(page, shots, "series")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == "FX_RATES__markets__20240102.csv"
    assert Path(download.path()).read_bytes() == content


def test_search_finds_a_dataset_by_title_and_description(server: RunningServer, page: Page, shots: Path) -> None:
    seed(server)
    sign_in(page, server)
    box = page.get_by_role("searchbox", name="Search datasets")
    box.fill("closing RATES")
    box.press("Enter")
    results = page.locator("table.results")
    expect(results).to_contain_text("FX_RATES")
    expect(results).not_to_contain_text("EQ_PRICES")
    screenshot(page, shots, "search")
    page.get_by_role("searchbox", name="Search text").fill("eq_")
    page.get_by_role("button", name="Search").click()
    expect(results).to_contain_text("EQ_PRICES")
    expect(results).not_to_contain_text("FX_RATES")


def test_create_a_dataset_and_upload_12_mib_from_the_page_then_the_sdk_downloads_it(
    server: RunningServer, page: Page, shots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusion import Fusion
    from fusion.credentials import FusionCredentials

    server.create_catalog("markets")
    sign_in(page, server, "/catalogs/markets")
    page.locator("#new-dataset summary").click()
    form = page.locator("form.js-new-dataset")
    form.get_by_label("Identifier").fill("RATES_WEB")
    form.get_by_label("Title").fill("Rates from the web")
    form.get_by_label("Description").fill("Uploaded by a person")
    form.get_by_role("button", name="Create dataset").click()
    expect(page).to_have_url(server.base + "/catalogs/markets/datasets/RATES_WEB")
    assert server.api("GET", "catalogs/markets/datasets/RATES_WEB").json()["title"] == "Rates from the web"

    source = tmp_path / "rates.csv"
    source.write_bytes(os.urandom(12 * 2**20))  # three parts of the multipart upload
    upload = page.locator("form.js-upload")
    upload.get_by_label("File").set_input_files(str(source))
    upload.get_by_label("Series member").fill("20240105")
    upload.get_by_role("button", name="Upload").click()
    expect(upload.locator(".message")).to_contain_text("Uploaded rates.csv", timeout=30_000)
    screenshot(page, shots, "upload")
    page.reload()
    expect(page.locator("table.dists")).to_contain_text("12.0 MiB")

    monkeypatch.chdir(tmp_path)  # the SDK writes its log into the current folder
    fusion = Fusion(credentials=FusionCredentials.from_file(server.credentials_file), root_url=server.root_url)
    out = tmp_path / "down"
    fusion.download(
        "RATES_WEB",
        dt_str="20240105",
        dataset_format="csv",
        catalog="markets",
        show_progress=False,
        download_folder=str(out),
    )
    assert (out / "rates.csv").read_bytes() == source.read_bytes()
    page.goto(server.base + "/status")
    expect(page.locator("ul.stats")).to_contain_text("12.0 MiB")
    expect(page.locator("table.events")).to_contain_text("RATES_WEB")
    screenshot(page, shots, "status")


def test_sign_in_and_out_and_nothing_without_a_session(
    server: RunningServer, page: Page, context: BrowserContext
) -> None:
    seed(server)
    for path in ("/", "/catalogs/markets", "/catalogs/markets/datasets/FX_RATES", "/search?q=fx", "/status"):
        page.goto(server.base + path)
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        shown = page.content()
        assert not any(data in shown for data in ("Markets", "FX spot rates", "Equity", "closing", "2024")), path
    page.get_by_label("Client id").fill(server.credentials()["client_id"])
    page.get_by_label("Client secret").fill("not the secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown client or wrong secret.")
    assert context.cookies() == []

    sign_in(page, server, "/catalogs/markets")
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
    assert server.credentials()["client_secret"] not in cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert context.cookies() == []
    page.goto(server.base + "/catalogs/markets")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


class Attacker(http.server.BaseHTTPRequestHandler):
    """Another site (another origin on this machine) whose page posts to the catalog."""

    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><body>
<form id="out" method="post" action="{self.target}/signout"><input name="csrf" value="guessed"></form>
<form id="api" method="post" enctype="text/plain" action="{self.target}/api/v1/catalogs/markets/datasets/EVIL">
<input name='{{"title": "x", "a": "' value='"}}'></form>
<script>
async function go() {{
  const outcome = {{}};
  for (const id of ["out", "api"]) {{
    const form = document.getElementById(id);
    const frame = document.createElement("iframe");
    frame.name = id + "-frame"; document.body.append(frame); form.target = frame.name;
    await new Promise((done) => {{ frame.onload = done; form.submit(); }});
  }}
  try {{
    const r = await fetch("{self.target}/session/token", {{method: "POST", credentials: "include"}});
    outcome.token = r.status;
  }} catch (e) {{ outcome.token = "blocked"; }}
  window.outcome = outcome;
}}
go();
</script></body>"""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(server: RunningServer) -> Iterator[str]:
    handler = type("Handler", (Attacker,), {"target": server.base})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_a_forged_or_cross_site_write_is_refused(server: RunningServer, page: Page, attacker: str) -> None:
    seed(server)
    sign_in(page, server)  # the browser holds a session; another site tries to use it
    page.goto(attacker)
    page.wait_for_function("window.outcome !== undefined")
    outcome = page.evaluate("window.outcome")
    # the cookie travels (same site, other port) but the write is refused: CORS stops the script's fetch from
    # reading the answer, and the server refuses it (Origin of another site, no CSRF token)
    assert outcome["token"] in ("blocked", 0, 403), outcome
    assert server.api("GET", "catalogs/markets/datasets/EVIL").status == 404
    page.goto(server.base + "/catalogs/markets")  # still signed in: the forged sign-out did nothing
    expect(page.get_by_role("heading", level=1)).to_contain_text("Markets")


def test_a_script_in_a_title_is_shown_as_text(server: RunningServer, page: Page) -> None:
    server.create_catalog("markets")
    server.create_dataset("markets", "HOSTILE", title=SCRIPT_TITLE, description=SCRIPT_TITLE)
    server.upload("markets", "HOSTILE", "20240101", "csv", b"a\n")
    sign_in(page, server)
    for path in ("/catalogs/markets", "/catalogs/markets/datasets/HOSTILE", "/search?q=script", "/status"):
        page.goto(server.base + path)
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(server.base + "/catalogs/markets/datasets/HOSTILE")
    expect(page.get_by_role("heading", level=1)).to_contain_text("<script>window.pwned = 1</script>")
