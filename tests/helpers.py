"""Test helpers: run a real `fusionsync serve` and talk to it over real HTTP (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, b64
from fusionsync.server.process import ServerProcess

Start = Callable[[list[str]], "subprocess.Popen[str]"]  # the `start` fixture (tests/conftest.py)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RunningServer(ServerProcess):
    """A `fusionsync serve` subprocess on 127.0.0.1 with a fresh root folder, plus API helpers."""

    _token: str | None = None

    @property
    def bucket(self) -> tuple[str, str] | None:
        """The S3 bucket and key prefix of its blobs (None: a folder)."""
        blobs = next((self.args[i + 1] for i, a in enumerate(self.args) if a == "--blobs"), "")
        if not blobs.startswith("s3://"):
            return None
        bucket, _, prefix = blobs[5:].partition("/")
        return bucket, prefix.strip("/") + "/" if prefix else ""

    def temporaries(self) -> list[str]:
        """What unfinished uploads keep: files under ROOT/tmp, or S3 multipart uploads in progress."""
        if self.bucket is None:
            return sorted(p.name for p in (self.root / "tmp").iterdir())
        import boto3

        bucket, prefix = self.bucket
        answer = boto3.client("s3").list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return sorted(u["Key"][len(prefix) :] for u in answer.get("Uploads", []))

    def blobs(self) -> list[str]:
        """The blobs stored (files under ROOT/blobs, or the objects of the bucket)."""
        if self.bucket is None:
            return sorted(p.name for p in (self.root / "blobs").rglob("*") if p.is_file())
        import boto3

        bucket, prefix = self.bucket
        answer = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix) :] for o in answer.get("Contents", []))

    def token(self) -> str:
        if self._token is None:
            creds = self.credentials() if self.auth else {"client_id": "x", "client_secret": "y"}
            form = {
                "grant_type": "client_credentials",
                **{k: creds[k] for k in ("client_id", "client_secret")},
            }
            answer = self.request("POST", "/oauth2/token", form=form, auth=False)
            assert answer.status == 200, answer.body
            self._token = answer.json()["access_token"]
        return self._token

    def fusion_token(self, catalog: str, dataset: str) -> str:
        answer = self.api("GET", f"catalogs/{catalog}/datasets/{dataset}/authorize/token")
        assert answer.status == 200, answer.body
        return str(answer.json()["access_token"])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float = 60,
    ) -> Answer:
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth and self.auth:
            hdrs.setdefault("Authorization", f"Bearer {self.token()}")
            parts = path.split("?")[0].split("/")
            if "distributions" in parts and "Fusion-Authorization" not in hdrs:
                i = parts.index("catalogs")
                hdrs["Fusion-Authorization"] = f"Bearer {self.fusion_token(parts[i + 1], parts[i + 3])}"
        route, mark, query = path.partition("?")  # identifiers may hold spaces and accents: quote the path
        target = self.base + urllib.parse.quote(route, safe="/%:@") + mark + query
        req = urllib.request.Request(target, data=body, method=method, headers=hdrs)
        try:
            context = ssl.create_default_context(cafile=self.ca_file) if self.scheme == "https" else None
            with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
                return Answer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, dict(err.headers), err.read())

    def api(self, method: str, path: str, **kw: Any) -> Answer:
        return self.request(method, "/api/v1/" + path, **kw)

    # -- seeding through the public API -------------------------------------------------
    def create_catalog(self, catalog: str) -> None:
        answer = self.api("POST", f"catalogs/{catalog}", json_body={})
        assert answer.status in (201, 409), answer.body

    def create_dataset(self, catalog: str, dataset: str, raw: bool = False, **meta: Any) -> None:
        """Create the dataset (and its catalog), or update it when it exists."""
        self.create_catalog(catalog)
        body = {"isRawData": raw, **meta}
        answer = self.api("POST", f"catalogs/{catalog}/datasets/{dataset}", json_body=body)
        if answer.status == 409:
            answer = self.api("PUT", f"catalogs/{catalog}/datasets/{dataset}", json_body=body)
        assert answer.status in (200, 201), answer.body

    def create_product(self, catalog: str, product: str, datasets: list[str]) -> None:
        self.create_catalog(catalog)
        assert self.api("POST", f"catalogs/{catalog}/products/{product}", json_body={}).status in (201, 409)
        body = {"product": product, "datasets": datasets}
        answer = self.api("PUT", f"catalogs/{catalog}/productDatasets", json_body=body)
        assert answer.status == 200, answer.body

    def upload(self, catalog: str, dataset: str, series: str, fmt: str, data: bytes) -> Answer:
        """Upload ``data`` as one distribution (multipart above 5 MiB), as the SDK does."""
        url = f"catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions/{fmt}"
        hasher = FusionHasher()
        hasher.update(data)
        dates = {
            "x-jpmc-distribution-from-date": "2024-01-01",
            "x-jpmc-distribution-to-date": "2199-12-31",
            "x-jpmc-distribution-created-date": "2024-01-01",
        }
        whole = {"Digest": f"SHA-256={hasher.fsync_digest()}", **dates}
        if len(data) <= PART_SIZE:
            return self.api("PUT", url, body=data, headers={**whole, "Content-Type": "application/octet-stream"})
        op = self.api("POST", url + "/operationType/upload", headers=dates).json()["operationId"]
        parts = []
        for i in range(0, len(data), PART_SIZE):
            chunk = data[i : i + PART_SIZE]
            digest = b64(hashlib.sha256(chunk).digest())
            answer = self.api(
                "PUT",
                f"{url}/operations/upload?operationId={op}&partNumber={i // PART_SIZE + 1}",
                body=chunk,
                headers={"Digest": f"SHA-256={digest}", "Content-Type": "application/octet-stream"},
            )
            assert answer.status == 200, answer.body
            parts.append(answer.json())
        return self.api("POST", f"{url}/operations/upload?operationId={op}", json_body={"parts": parts}, headers=whole)


def start_server(
    root: Path, *args: str, auth: bool = True, port: int = 0, ca_file: Path | None = None
) -> RunningServer:
    """Start `fusionsync serve` on a free 127.0.0.1 port and wait until it answers."""
    server = RunningServer(root, *args, auth=auth, port=port, ca_file=ca_file)
    server.start()
    return server


def wait_for(condition: Callable[[], bool], what: str = "a condition", timeout: float = 30) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
