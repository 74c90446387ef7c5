"""Fixtures: a real `fusionsync serve` on a free 127.0.0.1 port with a fresh root folder.

Test modules (or tests) marked ``scaled`` run twice: against the embedded default (SQLite and a blob folder,
one process) and against the scaled-out configuration (PostgreSQL, an S3 bucket, two worker processes);
``scaled(only=True)``: against the latter only.
PostgreSQL (tests/pg.py) and the S3 endpoint (tests/s3.py) start once per test process, when first needed.
"""

from __future__ import annotations

import itertools
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, Start, start_server
from tests.pg import new_database, postgres_server
from tests.s3 import s3_bucket, s3_endpoint

__all__ = ["s3_bucket", "s3_endpoint"]  # S3 fixtures (tests/s3.py), for every test module

EMBEDDED, SCALED = "embedded", "scaled"
Storage = Callable[[], list[str]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(SCALED)
    if "backend" in metafunc.fixturenames and marker is not None:
        both = [SCALED] if marker.kwargs.get("only") else [EMBEDDED, SCALED]
        metafunc.parametrize("backend", both, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Which configuration the server runs: ``embedded`` unless the test is marked ``scaled`` (then both)."""
    return str(getattr(request, "param", EMBEDDED))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    """Options for a new server's storage: none (embedded), or a new database, a new bucket and 2 workers."""

    def options() -> list[str]:
        if backend == EMBEDDED:
            return []
        database = new_database(request.getfixturevalue("pg_server"))
        bucket = f"fs-{uuid.uuid4().hex[:12]}"
        endpoint = request.getfixturevalue("s3_endpoint")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).close()
        return ["--metadata", database, "--blobs", f"s3://{bucket}/blobs", "--workers", "2"]

    return options


@pytest.fixture
def server(tmp_path: Path, storage: Storage) -> Iterator[RunningServer]:
    """A server with authentication on and small pages (paging is exercised everywhere)."""
    srv = start_server(tmp_path / "server-root", "--page-size", "2", *storage())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[RunningServer]:
    """One server for all of a module's tests (per configuration), for tests that keep to a catalog of their
    own (``unique_catalog``) and need no fresh server: what a server's start costs is paid once."""
    srv = start_server(tmp_path_factory.mktemp("shared") / "server-root", "--page-size", "2", *storage())
    yield srv
    srv.stop()


_catalogs = itertools.count()


@pytest.fixture
def unique_catalog() -> str:
    """A catalog name no other test of this process uses."""
    return f"c{next(_catalogs)}"


@pytest.fixture
def open_server(tmp_path: Path, storage: Storage) -> Iterator[RunningServer]:
    """A server started with --no-auth."""
    srv = start_server(tmp_path / "server-root", "--page-size", "2", *storage(), auth=False)
    yield srv
    srv.stop()


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts a process with pipes; any still running at the test's end (a failed test) is killed."""
    procs: list[subprocess.Popen[str]] = []

    def run(args: list[str]) -> subprocess.Popen[str]:
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return procs[-1]

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
