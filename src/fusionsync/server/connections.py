"""Bounded connections: what a client that sends slowly, or not at all, may hold of the server.

aiohttp waits for a request's head and body as long as the client likes. Each connection is wrapped here:

* the head of a request (request line and headers) must arrive within ``header_timeout`` seconds of the
  connection's first byte (or of the connection itself): else 408 and the connection is closed;
* while a handler waits for a body that has not all arrived, the client must send at least
  ``MIN_BODY_BYTES`` each ``read_timeout`` seconds (a body trickled a byte at a time is cut off); time the
  server itself holds the client back (reading paused, a full buffer) does not count;
* at most ``max_connections`` are open per process: a new one first displaces the oldest connection that is
  idle or still sending its head and has nothing waiting to be read (a flood of half-open sockets cannot
  lock clients out), and is refused only when every connection is busy with a request.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import resource
import sys
import termios
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("fusionsync.server")
MIN_BODY_BYTES = 1024
HEAD, BUSY, IDLE = "head", "busy", "idle"
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
FULL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
RESERVED_FILES = 128
"""File descriptors kept for everything but connections (the database, blobs being read or written, logs)."""


def connection_limit(wanted: int) -> int:
    """``wanted``, or fewer when the process may not open enough files (its soft limit is raised first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    # each connection may hold a blob open besides its socket
    return max(1, min(wanted, (soft - RESERVED_FILES) // 2))


class Limits:
    """The connections of one process, oldest first, and their limits."""

    def __init__(self, max_connections: int, header_timeout: float, read_timeout: float) -> None:
        self.max_connections = connection_limit(max_connections)
        self.header_timeout = header_timeout
        self.read_timeout = read_timeout
        self.open: dict[Guarded, None] = {}
        self.dropped = 0

    def admit(self, new: Guarded) -> bool:
        """Make room for ``new`` (displacing the oldest connection that is idle or half-sent and has nothing
        waiting to be read: a client whose request is on its way keeps its place); False when full."""
        if len(self.open) >= self.max_connections:
            victim = next((c for c in self.open if c.state != BUSY and not c.waiting()), None)
            if victim is None:
                return False
            log.debug("closing a connection (%s) to admit another: %d open", victim.state, len(self.open))
            victim.drop(None)
        self.open[new] = None
        return True


class Guarded(asyncio.Protocol):
    """An aiohttp connection (``inner``) under the limits: the head's deadline and the body's pace."""

    def __init__(self, inner: Any, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.state = HEAD
        self.transport: asyncio.Transport | None = None
        self.request: web.BaseRequest | None = None
        self.received = 0
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    # -- the transport's calls ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.limits.admit(self):
            self.limits.dropped += 1
            transport.write(FULL)
            transport.close()
            self.transport = None
            return
        self.inner.connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.received += len(data)
        if self.state == IDLE:  # the next request begins
            self.state = HEAD
            self._tail = b""
            self._arm(self.limits.header_timeout, self._head_late)
        if self.state == HEAD:
            seen = self._tail + data[:4096]
            if b"\r\n\r\n" in seen:  # the head is complete: its handler is about to start
                self.state = BUSY
                self._cancel()
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.limits.open.pop(self, None)
        if self.transport is not None:
            self.transport = None
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- the request's course (from the middleware) ----------------------------------------------
    def started(self, request: web.BaseRequest) -> None:
        """The head arrived and a handler runs."""
        self.state = BUSY
        self.request = request
        if request.can_read_body and not request.content.is_eof():
            self._arm(self.limits.read_timeout, self._check_pace, self.received)
        else:
            self._cancel()

    def finished(self) -> None:
        self.state = IDLE
        self.request = None
        self._cancel()

    # -- timers ---------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, callback, *args)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        if self.state == HEAD:
            self.drop(TIMED_OUT)

    def _check_pace(self, before: int) -> None:
        request, transport = self.request, self.transport
        if self.state != BUSY or request is None or transport is None or request.content.is_eof():
            return
        if transport.is_reading() and self.received - before < MIN_BODY_BYTES:
            log.info("closing a connection whose request body arrives too slowly")
            self.drop(None)
            return
        self._arm(self.limits.read_timeout, self._check_pace, self.received)

    def waiting(self) -> bool:
        """Whether bytes from the client wait in the kernel, not read yet (a connection accepted in the same
        batch as many others has not been read from at all)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            pending = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(pending, sys.byteorder) > 0

    def drop(self, answer: bytes | None) -> None:
        """Close the connection (after ``answer``, raw bytes, when the client is owed one)."""
        self._cancel()
        self.limits.open.pop(self, None)
        if self.transport is not None:
            if answer is not None:
                self.transport.write(answer)
            self.transport.close()


def guarded_factory(factory: Callable[[], Any], limits: Limits) -> Callable[[], Guarded]:
    return lambda: Guarded(factory(), limits)


class GuardedSite(web.SockSite):
    """A site whose connections are guarded by ``limits``."""

    def __init__(self, runner: web.BaseRunner, sock: Any, limits: Limits, **kw: Any) -> None:
        super().__init__(runner, sock, **kw)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            guarded_factory(server, self.limits), sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )


def guard_of(request: web.BaseRequest) -> Guarded | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, Guarded) else None
