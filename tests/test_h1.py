"""The lean HTTP/1.1 client for small GETs, against a real TCP server that answers as it is told."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fsspec.asyn import sync

from fusionsync.catalog.layout import DistKey
from fusionsync.client.credentials import Credentials
from fusionsync.client.filesystem import FusionFileSystem
from fusionsync.client.h1 import Answer, SmallGets, Unsupported
from fusionsync.client.http import Http
from tests.background import BackgroundServer, Cleanup
from tests.helpers import RunningServer
from tests.sync_fixtures import payload, sync_once, write_local

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
TARGET = "/api/v1/catalogs/c/datasets/D/datasetseries/S/distributions/csv/operationType/download"


def ok(body: bytes, *extra: str, checksum: str = "c") -> bytes:
    head = "\r\n".join(["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", f"x-jpmc-checksum: {checksum}", *extra])
    return head.encode() + b"\r\n\r\n" + body


class RawServer(BackgroundServer):
    """Reads each request's head, then lets ``answer`` write what it wants; counts connections and requests.

    ``answer(reader, writer, n)`` (n: the request's number, from 0) returns False to close the connection.
    """

    def __init__(self, answer: Script) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        super().__init__()

    async def _serve(self) -> Cleanup:
        handlers: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            self.connections += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if b"/oauth2/token " in head or b"/authorize/token " in head:  # tokens for whoever asks
                        length = re.search(rb"(?i)content-length: *(\d+)", head)
                        await reader.readexactly(int(length.group(1)) if length else 0)
                        token = b'{"access_token": "t", "expires_in": 3600}'
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(token), token))
                        continue
                    self.requests.append(head)
                    if not await self.answer(reader, writer, len(self.requests) - 1):
                        break
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                handlers.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

        async def cleanup() -> None:
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

        return cleanup

    def client(self, read_timeout: float = 5.0) -> SmallGets:
        return SmallGets(f"http://127.0.0.1:{self.port}/api/v1/", 5.0, read_timeout)


def fetch(server: RawServer, count: int = 1, max_body: int = 2**20, read_timeout: float = 5.0) -> list[bytes]:
    async def go() -> list[bytes]:
        client = server.client(read_timeout)
        try:
            return [(await client.get(TARGET, {"Authorization": "Bearer t"}, max_body)).body for _ in range(count)]
        finally:
            client.close()

    return asyncio.run(go())


def download_through(server: RawServer, dest: Path, size_hint: int) -> None:
    """One distribution downloaded by FusionFileSystem from ``server`` (listed at ``size_hint`` bytes)."""
    base = f"http://127.0.0.1:{server.port}"
    creds = {"client_id": "x", "client_secret": "y", "auth_url": f"{base}/oauth2/token"}
    fs = FusionFileSystem(credentials=creds | {"root_url": f"{base}/api/v1/"})
    try:
        sync(fs.loop, fs._download, "c/datasets/D/datasetseries/S/distributions/csv", str(dest), size_hint=size_hint)
    finally:
        fs.close()


def test_one_connection_carries_many_requests_and_their_headers() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(f"body {n}".encode()))
        return True

    with RawServer(answer) as server:
        assert fetch(server, 5) == [f"body {n}".encode() for n in range(5)]
        assert server.connections == 1
        first = server.requests[0].decode()
        assert first.startswith(f"GET {TARGET} HTTP/1.1\r\n")
        assert "Authorization: Bearer t\r\n" in first and f"Host: 127.0.0.1:{server.port}\r\n" in first


def test_an_answer_in_pieces_is_put_together() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        for i, byte in enumerate(ok(b"x" * 300)):
            writer.write(bytes([byte]))
            if i % 50 == 0:
                await writer.drain()
                await asyncio.sleep(0.001)
        return True

    with RawServer(answer) as server:
        assert fetch(server, 2) == [b"x" * 300] * 2


def test_connection_close_is_honoured() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"bye", "Connection: close"))
        return True  # the server would go on: the client must not

    with RawServer(answer) as server:
        assert fetch(server, 3) == [b"bye"] * 3
        assert server.connections == 3


def test_a_kept_connection_the_server_closed_is_replaced_at_once() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:  # the request came on the kept connection: closed unanswered, as an idle timeout would
            return False
        writer.write(ok(b"first" if n == 0 else b"again"))
        return True

    with RawServer(answer) as server:
        assert fetch(server, 2) == [b"first", b"again"]
        assert server.connections == 2 and len(server.requests) == 3


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Encoding: gzip\r\n\r\nhello", "encoded"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "llhttp rejects"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "llhttp rejects"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n folded\r\n\r\nhello", "llhttp rejects"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "interim"),
        (b"ICY 200 OK\r\nContent-Length: 5\r\n\r\nhello", "llhttp rejects"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", "2000000 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n" + b"x" * 2**21, "more than"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more", "after the end"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "longer than"),
        (b"HTTP/1.1 200 OK\r\nx-jpmc-checksum: c\r\n\r\nhello", "ends when the connection closes"),
        # Defects of the hand-written parser this one replaced: each ended in a fatal protocol error, a wrong
        # status, or a wait for the whole read timeout.
        ("HTTP/1.1 200 OK\r\nContent-Length: \u0661\u0662\r\n\r\nhello".encode(), "Content-Length"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello", "status"),
        (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", "llhttp rejects"),
    ],
    ids=[
        "gzip",
        "two-lengths",
        "negative-length",
        "folded",
        "1xx",
        "not-http",
        "too-big",
        "too-big-chunked",
        "extra",
        "huge-head",
        "close-delimited",
        "non-ascii-digits",
        "four-digit-status",
        "bare-lf",
    ],
)
def test_answers_it_does_not_handle_are_left_to_the_general_client(raw: bytes, why: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(3)  # keep the connection open: the verdict must not wait for the close
        return False

    with RawServer(answer) as server, pytest.raises(Unsupported, match=why):
        started = time.monotonic()
        try:
            fetch(server, read_timeout=2.0)
        finally:
            assert time.monotonic() - started < 1.5, "decided at once, not after the read timeout"


def test_a_chunked_answer_and_an_empty_one_are_taken_as_they_are() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        ok(b"after"),
    ]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(answers[n])
        return True

    with RawServer(answer) as server:
        assert fetch(server, 3) == [b"hello world", b"", b"after"]
        assert server.connections == 1


def test_a_connection_cut_mid_answer_and_a_silent_server_are_errors_to_retry() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"y" * 1000)[:-400])
        return False

    with RawServer(cut) as server, pytest.raises(ConnectionError, match="closed after 600 of 1000 bytes of the body"):
        fetch(server)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await asyncio.sleep(5)
        return False

    with RawServer(silent) as server, pytest.raises(TimeoutError):
        fetch(server, read_timeout=0.3)

    closed = SmallGets("http://127.0.0.1:1/api/v1/", 5.0, 5.0)  # nothing listens on port 1
    with pytest.raises(ConnectionError, match=r"cannot connect to 127\.0\.0\.1:1\b"):
        asyncio.run(closed.get(TARGET, {}, 100))


def test_requests_that_would_need_encoding_are_not_sent() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"sent"))
        return True

    unsendable = [
        (TARGET.replace("/S/", "/a b/"), {}),
        (TARGET.replace("/S/", "/%C3%A9/"), {}),
        (TARGET, {"Authorization": "Bearer x\r\nInjected: 1"}),
        (TARGET, {"Authorization": "Bearer é"}),
    ]

    async def go(client: SmallGets) -> bytes:
        try:
            for target, headers in unsendable:  # get() itself refuses them, whoever calls it
                assert not client.can_send(target, headers)
                with pytest.raises(Unsupported, match="needs encoding"):
                    await client.get(target, headers, 100)
            assert client.can_send(TARGET, {"Authorization": "Bearer abc.def"})
            return (await client.get(TARGET, {"Authorization": "Bearer abc.def"}, 100)).body
        finally:
            client.close()

    with RawServer(answer) as server:
        assert asyncio.run(go(server.client())) == b"sent"
    assert len(server.requests) == 1, "nothing was sent for the requests refused"


def test_a_file_larger_than_its_listing_said_is_left_to_aiohttp_and_still_verified(tmp_path: Path) -> None:
    body = b"grown since it was listed\n" * 50_000  # over the 1 MiB the lean client takes
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(body, checksum=checksum))
        return True

    with RawServer(answer) as server:
        download_through(server, tmp_path / "f", size_hint=100)
    assert (tmp_path / "f").read_bytes() == body
    assert len(server.requests) == 2, "one try on the lean client, then the same GET through aiohttp"


def test_a_redirected_download_is_followed_by_aiohttp(tmp_path: Path) -> None:
    body = b"moved here\n"
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if b"GET /moved " in server.requests[n]:
            writer.write(ok(body, checksum=checksum))
        else:
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n")
        return True

    with RawServer(answer) as server:
        download_through(server, tmp_path / "f", size_hint=len(body))
    assert (tmp_path / "f").read_bytes() == body
    assert [r.split(b" ")[1] for r in server.requests] == [TARGET.encode(), TARGET.encode(), b"/moved"]


def lean_http(server: RawServer, **kw: Any) -> Http:
    base = f"http://127.0.0.1:{server.port}"
    creds = Credentials.from_dict({"client_id": "x", "client_secret": "y", "auth_url": f"{base}/oauth2/token"})
    return Http(creds, f"{base}/api/v1/", **kw)


def small_gets(http: Http, count: int) -> list[Answer | None]:
    path = "c/datasets/D/datasetseries/S/distributions/csv/operationType/download"

    async def go() -> list[Answer | None]:
        try:
            return [await http.get_small(path, "download", 2**20) for _ in range(count)]
        finally:
            await http.close()

    return asyncio.run(go())


def test_a_server_that_frames_answers_otherwise_is_asked_through_the_general_client_from_then_on() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        big = b"x" * (2**20 + 1)  # too large for the lean client this once: it asks again next time
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        elif n == 1:  # an error page from something in between, framed by the close: says nothing of the downloads
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\nbad")
            return False
        else:  # a success framed by the close: every answer will be so
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nhello")
            return False
        return True

    with RawServer(answer) as server:
        assert small_gets(lean_http(server), 5) == [None] * 5
    assert len(server.requests) == 3, "a large body or an error page does not turn the lean client off"


def test_an_empty_answer_keeps_the_fast_path_on() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" if n == 0 else ok(b"then this"))
        return True

    with RawServer(answer) as server:
        first, second = small_gets(lean_http(server), 2)
    assert first is not None and (first.status, first.body) == (204, b"")
    assert second is not None and second.body == b"then this", "both on the lean connections"


def test_the_fast_path_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"lean"))
        return True

    with RawServer(answer) as server:
        assert small_gets(lean_http(server, fast_path=False), 2) == [None, None]
        monkeypatch.setenv("FUSIONSYNC_FAST_PATH", "0")
        assert small_gets(lean_http(server), 2) == [None, None]
        monkeypatch.setenv("FUSIONSYNC_FAST_PATH", "1")
        assert [a.body if a else None for a in small_gets(lean_http(server), 1)] == [b"lean"]
    assert len(server.requests) == 1, "switched off, the lean client sends nothing"


def test_a_sync_of_small_files_downloads_them_all_on_few_connections(server: RunningServer, tmp_path: Path) -> None:
    keys = [DistKey("cat", "A", f"2024010{i}", "csv") for i in range(1, 10)]
    server.create_dataset("cat", "A")
    source = tmp_path / "src"
    for key in keys:
        write_local(source, key, payload(key, 3000))
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    assert sync_once(fs, source, tmp_path, datasets=["A"], direction="upload").ok
    dest = tmp_path / "dest"
    report = sync_once(fs, dest, tmp_path, datasets=["A"], direction="download")
    assert report.ok and len(report.transferred) == len(keys)
    for key in keys:
        name = f"A__cat__{key.series}.csv"
        assert (dest / "cat" / "A" / key.series / name).read_bytes() == payload(key, 3000)
