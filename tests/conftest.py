"""Fixtures: a real `fusionsync serve` on a free 127.0.0.1 port with a fresh root folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, Start, start_server
from tests.s3 import s3_bucket, s3_endpoint

__all__ = ["s3_bucket", "s3_endpoint"]  # S3 fixtures (tests/s3.py), for every test module


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with authentication on and small pages (paging is exercised everywhere)."""
    srv = start_server(tmp_path / "server-root", "--page-size", "2")
    yield srv
    srv.stop()


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server started with --no-auth."""
    srv = start_server(tmp_path / "server-root", "--page-size", "2", auth=False)
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
