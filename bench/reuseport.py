"""How to share one port between worker processes: one listening socket inherited by every worker (what
``fusionsync serve --workers`` does, as gunicorn does) against one socket per worker with ``SO_REUSEPORT``.

Run: ``.venv/bin/python -m bench.reuseport [--workers 2] [--clients 64] [--seconds 5]``. Two aiohttp workers
answer a small JSON body; a load generator (one process, keep-alive connections, or a new connection per
request) counts answers per second and how they spread over the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import time

import aiohttp
from aiohttp import web


def worker(sock: socket.socket | None, port: int) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"pid": os.getpid()})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        own = sock or socket.create_server(("127.0.0.1", port), backlog=1024, reuse_port=True)
        await web.SockSite(runner, own).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def start(workers: int, shared: bool) -> tuple[int, list[int]]:
    if shared:
        sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    else:  # bound with SO_REUSEPORT, never listening: it only holds the port for the workers' own sockets
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                worker(sock if shared else None, port)
            finally:
                os._exit(0)
        pids.append(pid)
    time.sleep(1.0)
    return port, pids


async def load(port: int, clients: int, seconds: float, keep_alive: bool) -> tuple[float, collections.Counter[int]]:
    spread: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients, force_close=not keep_alive)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    spread[(await resp.json())["pid"]] += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return sum(spread.values()) / (time.perf_counter() - start), spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    for keep_alive in (True, False):
        for shared in (True, False):
            port, pids = start(args.workers, shared)
            try:
                rate, spread = asyncio.run(load(port, args.clients, args.seconds, keep_alive))
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            shares = "/".join(f"{100 * n / sum(spread.values()):.0f}%" for n in spread.values())
            how = "one inherited socket" if shared else "SO_REUSEPORT"
            conn = "keep-alive" if keep_alive else "a connection per request"
            print(f"{how:22} {conn:26} {rate:7.0f} answers/s  spread {shares}")


if __name__ == "__main__":
    main()
