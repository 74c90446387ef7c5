"""An S3 bucket as the local side (moto on 127.0.0.1): downloads stream into S3's own writer with
progress measured there, uploads stream from S3's reader, and no scratch file is ever made; plus
local paths that cannot be opened."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fusionsync import FusionFileSystem
from fusionsync.catalog.layout import TEMP_MARK, local_relative_path
from tests.helpers import RunningServer, wait_for
from tests.proxy import Proxy
from tests.s3 import s3_filesystem
from tests.sync_fixtures import payload, remote_bytes, seed

SIZE = 12 * 2**20  # three parts of an S3 multipart upload (s3fs writes 5 MiB blocks)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    fs = s3_filesystem(endpoint)
    return {path[len(bucket) + 1 :]: fs.cat_file(path) for path in fs.find(bucket)}


def test_a_bucket_is_mirrored_and_published_both_ways(
    server: RunningServer, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}}, size=SIZE)
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    s3 = s3_filesystem(s3_endpoint)
    root = f"s3://{s3_bucket}/mirror"

    def once(**kw: object) -> object:
        from fusionsync import fsync

        return fsync(fs, s3, catalog="cat", datasets=["A"], local_path=root, log_path=str(tmp_path), once=True,
                     show_progress=False, **kw)  # fmt: skip

    down = once(direction="download")
    assert down.ok and objects(s3_endpoint, s3_bucket) == {  # type: ignore[attr-defined]
        f"mirror/{local_relative_path(k)}": payload(k, SIZE) for k in keys
    }
    again = once(direction="download")
    assert again.transferred == [] and again.hashed == 0  # type: ignore[attr-defined]
    s3.pipe(f"{s3_bucket}/mirror/{local_relative_path(keys[0])}", b"edited in the bucket")
    up = once(direction="upload")
    assert up.ok and up.transferred == [local_relative_path(keys[0])]  # type: ignore[attr-defined]
    assert remote_bytes(server, keys[0]) == b"edited in the bucket"
    fs.close()


class Recorder:
    """A transfer's progress, as reported."""

    def __init__(self) -> None:
        self.done = 0
        self.size = 0

    def set_size(self, size: int) -> None:
        self.size = size

    def relative_update(self, inc: int = 1) -> None:
        self.done += inc

    def absolute_update(self, value: int) -> None:
        self.done = value


def test_a_download_into_s3_counts_bytes_as_s3_takes_them(
    server: RunningServer, s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}}, size=SIZE)
    progress = Recorder()
    at_first_part: list[int] = []

    def part_upload(method: str, path: str) -> bool:
        if method == "PUT" and not at_first_part:
            at_first_part.append(progress.done)
        return method == "PUT"

    scratch = tmp_path / "tmpdir"  # this test's own: other tests running beside it use the machine's
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with Proxy(s3_endpoint, part_upload, delay=0.3) as proxy:
        s3 = s3_filesystem(proxy.base)

        async def main() -> None:
            async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as afs:
                await afs.stream_distribution(key, s3, f"{s3_bucket}/m/file.csv", progress)

        asyncio.run(main())
    assert at_first_part and at_first_part[0] < SIZE // 2, "progress ran ahead of what S3 received"
    assert progress.done == progress.size == SIZE
    assert s3_filesystem(s3_endpoint).cat_file(f"{s3_bucket}/m/file.csv") == payload(key, SIZE)
    assert not [p for p in scratch.iterdir() if p.name.startswith("fusionsync")], "no scratch file left"
    assert [p for p in s3_filesystem(s3_endpoint).find(s3_bucket)] == [f"{s3_bucket}/m/file.csv"]


def test_kill_9_mid_transfer_leaves_no_scratch_file_and_the_next_pass_converges(
    server: RunningServer, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    size = 2**20  # one PUT each: the one held by the proxy is killed in flight
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}}, size=size)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    args = [
        sys.executable, "-m", "fusionsync", "sync", "download", "--local-path", f"s3://{s3_bucket}/m",
        "--catalog", "cat", "--dataset", "A", "--credentials", str(server.credentials_file),
        "--log-path", str(tmp_path), "--once", "--no-progress",
    ]  # fmt: skip
    with Proxy(s3_endpoint, lambda method, path: method == "PUT", delay=1) as proxy:
        env = {**os.environ, "TMPDIR": str(scratch), "AWS_ENDPOINT_URL": proxy.base}
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: proxy.seen.in_flight > 0)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert list(scratch.iterdir()) == []
    done = subprocess.run(args, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert objects(s3_endpoint, s3_bucket) == {f"m/{local_relative_path(k)}": payload(k, size) for k in keys}
    upload = [*args[:4], "upload", *args[5:]]
    s3_filesystem(s3_endpoint).pipe(f"{s3_bucket}/m/{local_relative_path(keys[1])}", b"edited")
    sent = subprocess.run(upload, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    assert remote_bytes(server, keys[1]) == b"edited" and list(scratch.iterdir()) == []
    assert not [p for p in s3_filesystem(s3_endpoint).find(s3_bucket) if TEMP_MARK in p]


@pytest.mark.parametrize(
    ("local_path", "prelude", "message"),
    [
        ("nosuch://x", "", "--local-path nosuch://x cannot be opened: Protocol not known: nosuch"),
        ("s3://bucket/m", "import sys; sys.modules['s3fs'] = None; ", "--local-path s3://bucket/m: Install s3fs"),
    ],
)
def test_a_local_path_that_cannot_be_opened_is_one_sentence(
    server: RunningServer, tmp_path: Path, local_path: str, prelude: str, message: str
) -> None:
    code = prelude + "from fusionsync.cli import main; main()"
    args = ["sync", "download", "--local-path", local_path, "--dataset", "A", "--once"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--credentials", str(server.credentials_file)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith(f"fusionsync: error: {message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1
