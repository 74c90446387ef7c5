"""Small GETs on lean keep-alive HTTP/1.1 connections, answers framed by llhttp (``httptools``).

aiohttp spends ~0.2 ms of Python on each request (URL objects, request and response objects,
timers, the streaming reader); a sync of thousands of small files is bound by it. A GET whose
whole answer fits in memory needs much less: one write of the request, the answer fed to llhttp
(the parser Node.js and uvicorn use), the body collected. This module does only that, and gives
way (``Unsupported``) to the aiohttp path for anything else: a compressed answer, one that ends
when the connection closes, a body larger than the caller can take, any answer llhttp rejects, a
path or header that would need encoding, a proxy that refuses the tunnel.

Connections follow the client's :class:`~fusionsync.client.net.NetPolicy`, as aiohttp's do:
directly, through an HTTP proxy (absolute-form requests), or through a CONNECT tunnel for an
https server, with the same TLS context.

Failures are the ones ``Http.retrying`` retries: ``ConnectionError`` for a refused, reset or
closed connection, ``TimeoutError`` for a server that stops answering. A kept connection that
closes before any byte of its answer (a server's idle timeout) is replaced at once: a GET can
be sent again. An untrusted certificate raises :class:`~fusionsync.client.net.TLSError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from fusionsync.client.net import NetPolicy, proxy_auth

MAX_HEAD = 64 * 1024
MAX_IDLE = 128
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9._~/=&-]+(\?[A-Za-z0-9._~/=&%-]*)?")


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
    """One connection, one request at a time; llhttp frames the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._max_body = 0
        self._head_only = False  # a CONNECT: its answer is a head alone
        self._received = 0
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._head_done = False
        self._length: int | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._answer: Answer | None = None
        self._lasting = True
        self._keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._head_done:
            of = f" of {self._length}" if self._length is not None else ""
            what = f"after {self._body_size}{of} bytes of the body"
        else:
            what = "in the answer's head" if self._received else "before any answer"
        reason = f" ({exc})" if exc else ""
        waiter.set_exception(ConnectionLost(f"the connection closed {what}{reason}", self._received > 0))

    def request(self, data: bytes, max_body: int, head_only: bool = False) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        self._parser = httptools.HttpResponseParser(self)
        self._max_body, self._head_only = max_body, head_only
        self._received, self._body_size, self._length = 0, 0, None
        self._headers, self._body, self._head_done, self._answer, self._lasting = CIMultiDict(), [], False, None, True
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._parser is None:  # bytes nobody asked for: not to be trusted again
            self.close()
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
            if not self._head_done and self._received > MAX_HEAD:
                raise Unsupported(f"an answer head longer than {MAX_HEAD} bytes")
        except Exception as exc:  # whatever llhttp or a callback raised: the general path takes over
            self._finish(_unsupported(exc, self._lasting))
            return
        if self._answer is not None:
            if not self._head_only and not self._keep_alive:
                self.close()
            self._finish(self._answer)

    # -- llhttp's callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._answer is not None:
            raise Unsupported("bytes after the end of the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._head_done = True
        status = self._parser.get_status_code()
        headers = self._headers
        if self._head_only:
            self._answer = Answer(status, CIMultiDictProxy(headers), b"")
            return
        if status < 200:
            raise Unsupported(f"an interim answer ({status})")
        self._lasting = lasting = status < 300  # an error page framed otherwise says nothing of the downloads
        if headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Unsupported("an encoded answer", lasting)
        length = headers.get("Content-Length")
        if length is not None:
            self._length = int(length)  # llhttp checked it: digits, one value
            if self._length > self._max_body:
                raise Unsupported(f"an answer of {self._length} bytes", lasting=False)
        elif "Transfer-Encoding" not in headers and status not in (204, 304):
            raise Unsupported("an answer that ends when the connection closes", lasting)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._body_size += len(body)
        if self._body_size > self._max_body:
            raise Unsupported(f"an answer of more than {self._max_body} bytes", lasting=False)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._keep_alive = self._parser.should_keep_alive()  # (llhttp forgets it once the message is over)
        self._answer = Answer(self._parser.get_status_code(), CIMultiDictProxy(self._headers), body)

    def _finish(self, outcome: Answer | Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if isinstance(outcome, Exception):
            self.close()
        if waiter is not None and not waiter.done():
            if isinstance(outcome, Exception):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)


def _unsupported(exc: Exception, lasting: bool) -> Unsupported:
    """What a parser error means: the general path answers this request (and, for a bad framing of a
    successful answer, every later one)."""
    cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
    if isinstance(cause, Unsupported):
        return cause
    return Unsupported(f"an answer llhttp rejects ({cause or type(cause).__name__})", lasting)


class SmallGets:
    """A pool of keep-alive connections to the host of ``root_url``, for GETs of small answers."""

    def __init__(
        self, root_url: str, connect_timeout: float, read_timeout: float, policy: NetPolicy | None = None
    ) -> None:
        parts = urlsplit(root_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {root_url}")
        self.policy = policy or NetPolicy()
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.proxy = self.policy.proxy_for(root_url)
        self._absolute = ""  # the origin prefixed to each target when requests go to an HTTP proxy as they are
        self._proxy_headers: list[str] = []
        if self.proxy is not None:
            _, self.proxy_host, self.proxy_port, basic = proxy_auth(self.proxy)
            self.proxy_tls = self.proxy.lower().startswith("https://")
            self._proxy_headers = [f"Proxy-Authorization: {basic}"] if basic else []
            if not self.secure:
                self._absolute = f"http://{self.host_header}"
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def can_send(self, target: str, headers: dict[str, str]) -> bool:
        """Whether the request needs nothing this client leaves out (percent-encoding, odd headers)."""
        if _PLAIN_TARGET.fullmatch(target) is None:
            return False
        return not any("\r" in v or "\n" in v or not v.isascii() for v in headers.values())

    async def get(self, target: str, headers: dict[str, str], max_body: int) -> Answer:
        """GET ``target`` (a path with its query); the whole answer. A target or header that would
        need encoding raises ``Unsupported`` (nothing is sent)."""
        if not self.can_send(target, headers):
            raise Unsupported("a request that needs encoding", lasting=False)
        lines = [f"GET {self._absolute}{target} HTTP/1.1", f"Host: {self.host_header}", "Accept-Encoding: identity"]
        if self._absolute:
            lines.extend(self._proxy_headers)
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
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self._open(loop), False
        except TimeoutError:
            raise TimeoutError(f"no connection to {self._peer} within {self.connect_timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise self.policy.untrusted(self.host, self.port, exc) from exc
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self._peer}: {exc.strerror or exc}") from exc

    @property
    def _peer(self) -> str:
        if self.proxy is not None:
            return f"{self.host}:{self.port} through the proxy {self.proxy_host}:{self.proxy_port}"
        return f"{self.host}:{self.port}"

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        context = self.policy.ssl_context() if self.secure else None
        if self.proxy is None:
            _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=context)
            return conn
        proxy_context = self.policy.ssl_context() if self.proxy_tls else None
        _, conn = await loop.create_connection(
            _Connection, self.proxy_host, self.proxy_port, ssl=proxy_context, ssl_handshake_timeout=None
        )
        if context is None:  # plain HTTP: absolute-form requests to the proxy itself
            return conn
        authority = f"{self.host}:{self.port}"
        head = "\r\n".join([f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", *self._proxy_headers])
        try:
            answer = await conn.request((head + "\r\n\r\n").encode("ascii"), 0, head_only=True)
        except BaseException:
            conn.close()
            raise
        if not 200 <= answer.status < 300:
            conn.close()  # the general path reports what the proxy says
            raise Unsupported(f"the proxy answered {answer.status} to CONNECT {authority}")
        assert conn.transport is not None
        try:
            transport = await loop.start_tls(conn.transport, conn, context, server_hostname=self.host)
        except BaseException:
            conn.close()
            raise
        assert isinstance(transport, asyncio.Transport)
        conn.transport = transport
        return conn

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
