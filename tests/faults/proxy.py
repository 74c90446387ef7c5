"""A fault-injecting TCP proxy on 127.0.0.1, between a client and `fusionsync serve`.

It forwards bytes both ways and, for the first ``times`` requests that ``match`` (method and
path of an HTTP/1.1 request line), breaks the answer in one of these ways:

- ``reset``: forward ``after`` bytes of the answer, then reset the connection (RST);
- ``truncate``: forward ``after`` bytes, then close cleanly (the body ends short);
- ``flip``: flip one byte of the answer at offset ``after``;

with ``upstream`` these three act on the request's body instead (an upload cut or damaged on its way);
- ``delay``: hold every chunk of the answer ``delay`` seconds;
- ``status``: answer ``status`` (429 or 503) with ``Retry-After: 0`` without asking the server.

``injected`` counts the requests a fault was armed for, ``fired`` the faults that took effect
(an answer shorter than ``after`` is not cut): a test asserts on ``fired``. ``requests`` lists the
(method, target) of every request seen, ``up`` and ``down`` count the bytes carried each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from tests.background import BackgroundServer, Cleanup


@dataclass
class Fault:
    kind: str
    match: Callable[[str, str], bool]
    times: int = 1
    after: int = 0
    delay: float = 0.0
    status: int = 503
    upstream: bool = False  # reset, truncate or flip the request's body (an upload) instead of the answer


class FaultProxy(BackgroundServer):
    def __init__(self, upstream_port: int, fault: Fault | None = None) -> None:
        self.upstream_port = upstream_port
        self.fault = fault
        self.injected = 0
        self.fired = 0
        self.requests: list[tuple[str, str]] = []
        self.up = 0
        self.down = 0
        super().__init__()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    async def _serve(self) -> Cleanup:
        self._tasks: set[asyncio.Task[None]] = set()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

        async def cleanup() -> None:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

        return cleanup

    def _arm(self, head: bytes) -> Fault | None:
        """The fault for a request whose bytes start with ``head``, if it matches and budget remains."""
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(line) >= 2:
            self.requests.append((line[0], line[1]))
        fault = self.fault
        if fault is None or self.injected >= fault.times:
            return None
        if len(line) < 2 or not fault.match(line[0], line[1]):
            return None
        self.injected += 1
        return fault

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        armed: list[Fault | None] = [None]
        sent = [0]  # bytes of the current answer forwarded so far

        async def client_to_server() -> None:
            received = 0
            while data := await reader.read(2**16):
                if data[:8].split(b" ")[0] in (b"GET", b"PUT", b"POST", b"HEAD", b"DELETE"):
                    armed[0] = self._arm(data)
                    sent[0] = 0
                    received = 0
                    fault = armed[0]
                    if fault is not None and fault.kind == "status":
                        body = b'{"message": "injected"}'
                        writer.write(
                            f"HTTP/1.1 {fault.status} Injected\r\nRetry-After: 0\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                            + body
                        )
                        await writer.drain()
                        self.fired += 1
                        _abort(writer, reset=False)
                        _abort(up_writer, reset=False)
                        return
                fault = armed[0]
                if fault is not None and fault.upstream:
                    if received == 0 and b"\r\n\r\n" in data:  # count the body only
                        received = -(data.index(b"\r\n\r\n") + 4)
                    if fault.kind in ("reset", "truncate") and received + len(data) > fault.after:
                        up_writer.write(data[: max(0, fault.after - received)])
                        await up_writer.drain()
                        self.fired += 1
                        _abort(up_writer, reset=fault.kind == "reset")
                        _abort(writer, reset=fault.kind == "reset")
                        return
                    if fault.kind == "flip" and received <= fault.after < received + len(data):
                        i = fault.after - received
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                        self.fired += 1
                    received += len(data)
                self.up += len(data)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(2**16):
                fault = armed[0]
                done = sent[0]
                if fault is not None and not fault.upstream:
                    if fault.kind in ("reset", "truncate") and done + len(data) > fault.after:
                        writer.write(data[: max(0, fault.after - done)])
                        await writer.drain()
                        self.fired += 1
                        _abort(writer, reset=fault.kind == "reset")
                        _abort(up_writer, reset=True)
                        return
                    if fault.kind == "flip" and done <= fault.after < done + len(data):
                        i = fault.after - done
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                        self.fired += 1
                    if fault.kind == "delay":
                        self.fired += done == 0
                        await asyncio.sleep(fault.delay)
                sent[0] += len(data)
                self.down += len(data)
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (ConnectionError, OSError):
            pass
        finally:
            _abort(writer, reset=True)
            _abort(up_writer, reset=True)
            self._tasks.discard(task)


def _abort(writer: asyncio.StreamWriter, reset: bool) -> None:
    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        with contextlib.suppress(OSError):  # already closed (the peer went away): abort it all the same
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort() if reset else writer.close()
