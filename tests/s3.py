"""A real S3 endpoint for tests: moto's server on a free 127.0.0.1 port, and s3fs clients of it.

``s3_endpoint`` (a fixture, registered in ``conftest.py``) starts one server per test session and
worker, sets dummy AWS credentials and ``AWS_ENDPOINT_URL`` in the environment (so child processes
such as ``fusionsync sync --local-path s3://…`` reach it too), and unsets ``AWS_CA_BUNDLE``: this
machine exports one, which breaks plain-http endpoints. ``s3_bucket`` is a fresh, empty bucket.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with s3_environment(endpoint):
            yield endpoint
    finally:
        server.stop()


@contextmanager
def s3_environment(endpoint: str) -> Iterator[None]:
    """Dummy credentials and ``AWS_ENDPOINT_URL=endpoint`` in the environment, without ``AWS_CA_BUNDLE``,
    for the block (this process and the children it starts); the environment as it was afterwards."""
    saved = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
    os.environ.pop("AWS_CA_BUNDLE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_filesystem(endpoint: str) -> Any:
    """A new s3fs client of ``endpoint`` (not fsspec's cached one: no listing from another test)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """The name of a new, empty bucket."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_filesystem(s3_endpoint).mkdir(name)
    return name
