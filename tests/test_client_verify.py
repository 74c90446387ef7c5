"""What downloads are checked against, and how answers become errors (pure functions, no server)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import time
import zlib

import pytest

from fusionsync import APIError, AuthError, NotFoundError
from fusionsync.catalog.digest import PART_SIZE, fsync_digest_of
from fusionsync.client.verify import Expected, Verifier
from fusionsync.client.wire import Retryable, retry_after, status_error


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def verify(data: bytes, headers: dict[str, str], chunk: int = 3 * 2**20) -> bool:
    expected = Expected.from_headers(headers, "distribution x")
    verifier = expected.verifier()
    for i in range(0, len(data), chunk):
        verifier.update(data[i : i + chunk])
    return verifier.result() == expected.value


@pytest.mark.parametrize("size", [0, 1, PART_SIZE, PART_SIZE + 1, 3 * PART_SIZE - 1])
def test_plain_and_composite_checksums(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sha = hashlib.sha256(data).digest()
    assert verify(data, {"x-jpmc-checksum": b64(sha)})  # no algorithm header: SHA-256
    assert verify(data, {"x-jpmc-checksum": b64(sha), "x-jpmc-checksum-algorithm": "sha-256"})
    parts = max(1, -(-size // PART_SIZE))
    # S3's composite of one part is the digest of the digest (what the SDK computes); of several,
    # the digest of the parts' digests, i.e. the fsync digest.
    composite = b64(hashlib.sha256(sha).digest()) if parts == 1 else fsync_digest_of([data])
    assert verify(data, {"x-jpmc-checksum": f"{composite}-{parts}"})
    assert not verify(data + b"!", {"x-jpmc-checksum": b64(sha)})


def test_other_algorithms_the_sdk_accepts() -> None:
    data = b"hello world" * 1000
    for name, digest in [
        ("SHA-1", hashlib.sha1(data).digest()),
        ("MD5", hashlib.md5(data).digest()),
        ("CRC32", zlib.crc32(data).to_bytes(4, "big")),
    ]:
        assert verify(data, {"x-jpmc-checksum": b64(digest), "x-jpmc-checksum-algorithm": name}, chunk=7)


def test_what_cannot_be_verified_is_refused() -> None:
    with pytest.raises(APIError, match="distribution x: the server sent no x-jpmc-checksum"):
        Expected.from_headers({}, "distribution x")
    with pytest.raises(APIError, match="'CRC64NVME' is not supported"):
        Expected.from_headers({"x-jpmc-checksum": "AAAA", "x-jpmc-checksum-algorithm": "CRC64NVME"}, "distribution x")


def test_a_base64_checksum_ending_in_a_dash_and_digits_is_composite() -> None:
    assert Expected.from_headers({"x-jpmc-checksum": "abc+/=-12"}, "x") == Expected("SHA-256", "abc+/=", True)
    assert Expected.from_headers({"x-jpmc-checksum": "abc+/="}, "x") == Expected("SHA-256", "abc+/=", False)
    assert Verifier("SHA-256").result() == b64(hashlib.sha256().digest())


def test_statuses_become_errors_that_name_the_resource_and_the_server_message() -> None:
    body = b'{"message": "dataset \'NOPE\' not found"}'
    error = status_error(404, "dataset NOPE", body)
    assert isinstance(error, NotFoundError) and "dataset NOPE not found: dataset 'NOPE' not found" in str(error)
    assert isinstance(status_error(403, "x", b"{}"), AuthError)
    bad = status_error(400, "upload to D", b'{"message": "Digest does not match"}')
    assert isinstance(bad, APIError) and bad.status == 400 and "Digest does not match" in str(bad)
    assert "plain text" in str(status_error(409, "x", b"plain text"))
    for status in (408, 429, 500, 502, 503, 504):
        error = status_error(status, "x", b"", {"Retry-After": "3"})
        assert isinstance(error, Retryable) and error.retry_after == 3.0


def test_retry_after_as_seconds_or_date() -> None:
    assert retry_after("2.5") == 2.5
    assert retry_after(None) is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = retry_after(later)
    assert delay is not None and 25 < delay <= 31
