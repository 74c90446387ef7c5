"""The scaled-out server configuration for benchmarks: PostgreSQL 16 (tests/pg.py, commits durable as in
production) and an S3 endpoint (moto's server, in a process of its own), with a new database and bucket.

``with scaled_options(workers=2) as options:`` gives the ``fusionsync serve`` options that use them; the
AWS variables the server needs are set in this process's environment (children inherit them).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

from tests.pg import new_database, postgres_server
from tests.s3 import s3_environment


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port; its endpoint URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def workers_option(workers: int) -> list[str]:
    """The option for ``workers`` processes (none for one: the default, which every version understands)."""
    return ["--workers", str(workers)] if workers > 1 else []


@contextlib.contextmanager
def scaled_options(workers: int = 2) -> Iterator[list[str]]:
    with postgres_server(durable=True) as pg, s3_server() as endpoint, s3_environment(endpoint):
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).close()
        yield ["--metadata", new_database(pg), "--blobs", f"s3://{bucket}/blobs", "--workers", str(workers)]
