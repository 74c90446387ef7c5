"""Small GETs on lean keep-alive HTTP/1.1 connections.

aiohttp spends ~0.2 ms of Python on each request (URL objects, request and response objects,
timers, the streaming reader); a sync of thousands of small files is bound by it. A GET whose
whole answer fits in memory needs much less: one write of the request, one parse of the
answer's head, a Content-Length body. This module does only that, and gives way (``Unsupported``)
to the aiohttp path for anything else: a chunked or compressed answer, a head too large, a body
larger than the caller can take, a path or header that would need encoding.

Failures are the ones ``Http.retrying`` retries: ``ConnectionError`` for a refused, reset or
closed connection, ``TimeoutError`` for a server that stops answering. A kept connection that
closes before any byte of its answer (a server's idle timeout) is replaced at once: a GET can
be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from typing import NamedTuple
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD = 64 * 1024
MAX_IDLE = 128
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9._~/=&-]+(\?[A-Za-z0-9._~/=&%-]*)?")
_ssl_context: ssl.SSLContext | None = None


class Unsupported(Exception):
    """An answer this client does not handle: use the general path. ``lasting`` when the server
    will answer every request so (its framing or encoding), not just this one (a large body)."""

    def __init__(self, message: str, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class Answer(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class ConnectionLost(ConnectionResetError):
    """The connection closed; ``answered`` tells whether any byte of the answer had come."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One connection, one request at a time: the answer's head parsed, then Content-Length bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._max_body = 0
        self._head: tuple[int, CIMultiDict[str], int, bool] | None = None  # status, headers, length, close after

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._head is not None:
            what = f"after {len(self._buffer)} of {self._head[2]} bytes of the body"
        else:
            what = "in the answer's head" if self._buffer else "before any answer"
        reason = f" ({exc})" if exc else ""
        answered = self._head is not None or bool(self._buffer)
        waiter.set_exception(ConnectionLost(f"the connection closed {what}{reason}", answered))

    def request(self, data: bytes, max_body: int) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        self._buffer.clear()
        self._head = None
        self._max_body = max_body
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        self._buffer += data
        try:
            self._advance()
        except Unsupported as exc:
            self._finish(exc)

    def _advance(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise Unsupported(f"an answer head longer than {MAX_HEAD} bytes")
                return
            self._head = _parse_head(bytes(self._buffer[:end]), self._max_body)
            del self._buffer[: end + 4]
        status, headers, length, close_after = self._head
        if len(self._buffer) < length:
            return
        if len(self._buffer) > length:  # more than the answer: a server we do not understand
            raise Unsupported("bytes after the end of the answer")
        body = bytes(self._buffer)
        self._buffer.clear()
        if close_after:
            self.close()
        self._finish(Answer(status, CIMultiDictProxy(headers), body))

    def _finish(self, outcome: Answer | Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if isinstance(outcome, Exception):
            self.close()
        if waiter is not None and not waiter.done():
            if isinstance(outcome, Exception):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)


def _parse_head(head: bytes, max_body: int) -> tuple[int, CIMultiDict[str], int, bool]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() or code.startswith("1"):
        raise Unsupported(f"the status line {lines[0][:80]!r}")
    lasting = code.startswith("2")  # an error page framed otherwise says nothing of the downloads
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise Unsupported(f"the header line {line[:80]!r}", lasting)
        headers.add(name, value.strip())
    lengths = set(headers.getall("Content-Length", []))
    if len(lengths) != 1:
        raise Unsupported("an answer without one Content-Length", lasting)
    length_text = lengths.pop()
    if not length_text.isdigit():
        raise Unsupported(f"Content-Length {length_text[:40]!r}", lasting)
    length = int(length_text)
    if length > max_body:
        raise Unsupported(f"an answer of {length} bytes", lasting=False)
    if "Transfer-Encoding" in headers or headers.get("Content-Encoding", "identity").lower() != "identity":
        raise Unsupported("an encoded answer", lasting)
    connection = headers.get("Connection", "").lower()
    close_after = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    return int(code), headers, length, close_after


class SmallGets:
    """A pool of keep-alive connections to the host of ``root_url``, for GETs of small answers."""

    def __init__(self, root_url: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(root_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {root_url}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def can_send(self, target: str, headers: dict[str, str]) -> bool:
        """Whether the request needs nothing this client leaves out (percent-encoding, odd headers)."""
        if _PLAIN_TARGET.fullmatch(target) is None:
            return False
        return not any("\r" in v or "\n" in v or not v.isascii() for v in headers.values())

    async def get(self, target: str, headers: dict[str, str], max_body: int) -> Answer:
        """GET ``target`` (a path with its query, already plain ASCII); the whole answer."""
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host_header}", "Accept-Encoding: identity"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        while True:
            conn, reused = await self._connection()
            try:
                async with asyncio.timeout(self.read_timeout):
                    answer = await conn.request(data, max_body)
            except ConnectionLost as exc:
                if reused and not exc.answered:  # the server had closed it while idle: try a new one
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return answer

    async def _connection(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that made them
            self.close()
            self._loop = loop
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        ssl_context = _default_ssl() if self.secure else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=ssl_context)
        except TimeoutError:
            raise TimeoutError(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        return conn, False

    def _release(self, conn: _Connection) -> None:
        if conn.closed or len(self._idle) >= MAX_IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the socket went with it
                conn.close()

    @property
    def idle(self) -> int:
        """Connections kept open for the next requests."""
        return len(self._idle)


def _default_ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context
