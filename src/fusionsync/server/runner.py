"""Running ``fusionsync serve``: the root's lock, the listening socket, the start-up clean-up, and either one
process or a parent with ``--workers`` processes that share the socket.

Order matters for safety. The root is locked first: a second server on it stops there, having touched
nothing. Then the port is bound: a server that cannot listen stops before it changes anything. Only then
does the owner migrate the schema, sweep what crashed uploads left, expire idle uploads and write the
credentials file. With several workers the parent does all that, holds the lock, forks the workers (which
inherit the lock and the socket, and stop when the parent dies) and starts a new one when one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import fcntl
import json
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from fusionsync.server import metrics, uploads
from fusionsync.server.app import MAX_HEADER_LINE, MAX_HEADERS, make_app
from fusionsync.server.audit import AUDIT_FILE, REPEAT_WINDOW, AuditLog
from fusionsync.server.auth import KEY_FILE, KeyRing, TokenAuthority
from fusionsync.server.blobs import FolderBlobs
from fusionsync.server.clients import (
    ADMIN,
    CLIENTS_FILE,
    Client,
    Registry,
    credentials_for,
    hash_secret,
    new_secret,
    save_clients,
)
from fusionsync.server.clients import secret_matches as _matches
from fusionsync.server.common import ServerConfig, State
from fusionsync.server.connections import GuardedSite, Limits
from fusionsync.server.disk import UnsafeFile, claim_folder, private_umask, read_private, write_private
from fusionsync.server.meta import SqlMetaStore
from fusionsync.server.store import BlobStore

log = logging.getLogger("fusionsync.server")
LOCK_FILE = "server.lock"
METRICS_FOLDER = "metrics"
"""Where worker processes keep their request metrics for one another (``metrics.Shared``)."""
DISK_THREADS = 32
LINGER_SECONDS = 1.0
KEEPALIVE_SECONDS = 75.0
"""An idle connection is closed after this long (aiohttp's default is an hour)."""
RESPAWN_LIMIT = 5
"""Worker deaths within a minute after which the server gives up (something is wrong at start)."""


class ServeError(Exception):
    """Why the server cannot run, in one sentence."""


def lock_root(root: Path) -> int:
    """Claim the folder ``root`` (see ``disk.claim_folder``) and lock it for this server (the returned
    descriptor holds the lock while it is open)."""
    try:
        claim_folder(root)
    except UnsafeFile as exc:
        raise ServeError(str(exc)) from None
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ServeError(
            f"{root} is served by another fusionsync server (process {owner}); stop it or choose another --root"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        raise ServeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


async def open_blobs(config: ServerConfig) -> BlobStore:
    if config.blobs.startswith("s3://"):
        from fusionsync.server.blobs_s3 import S3Blobs

        return await S3Blobs.open(config.blobs)
    if "://" in config.blobs:
        raise ValueError(f"--blobs {config.blobs!r}: use a folder or s3://BUCKET[/PREFIX]")
    return FolderBlobs(Path(config.blobs) if config.blobs else config.root)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


async def open_state(config: ServerConfig) -> State:
    """The stores and the token authority (the schema is migrated on the way)."""
    url = config.metadata_url()
    try:
        meta = await SqlMetaStore.open(url, config.blob_grace_seconds)
    except ValueError:
        raise
    except Exception as exc:  # unreachable, refused, not a database (sqlite3, asyncpg and OS errors)
        raise ServeError(f"cannot open the metadata at {_redacted(url)}: {exc}") from exc
    try:
        blobs = await open_blobs(config)
    except BaseException:
        await meta.close()
        raise
    try:
        registry = Registry(config.root / CLIENTS_FILE) if config.auth else None
        keys = KeyRing(config.root / KEY_FILE)
    except (UnsafeFile, ValueError) as exc:
        await blobs.close()
        await meta.close()
        raise ServeError(str(exc)) from None
    tokens = TokenAuthority(keys, registry, config.token_ttl)
    return State(config, meta, blobs, tokens, AuditLog(config.root / AUDIT_FILE))


async def close_state(st: State) -> None:
    st.audit.close()
    await st.blobs.close()
    await st.meta.close()


def first_client(config: ServerConfig) -> str | None:
    """With authentication on and no clients file yet: a file with one admin client, and its secret (to be
    written to the credentials file once the port is known)."""
    path = config.root / CLIENTS_FILE
    if not config.auth or os.path.lexists(path):
        return None
    secret = new_secret()
    save_clients(path, {"fusionsync": Client("fusionsync", hash_secret(secret), ADMIN)})
    return secret


async def tidy_root(st: State, port: int, secret: str | None) -> None:
    """What only the root's owner does at start: sweep what crashed uploads left, expire idle uploads, write
    the credentials file (for a client made now, or again for this port)."""
    live_ops = {op.id: op.handle for op, _ in await st.meta.open_operations()}
    swept = await st.blobs.sweep(await st.meta.live_blobs(), live_ops, 2 * st.config.upload_expiry)
    if swept:
        log.info("removed %d orphaned blobs and temporaries", swept)
    await uploads.tidy(st.meta, st.blobs, st.config.upload_expiry)
    config = st.config
    path = config.root / "client_credentials.json"
    if secret is not None:
        client_id = "fusionsync"
    else:
        try:
            known = json.loads(read_private(path))
            client_id, secret = str(known["client_id"]), str(known["client_secret"])
        except (OSError, UnsafeFile, ValueError, KeyError, TypeError):
            return  # none, or not ours to rewrite
        client = st.tokens.client(client_id)
        if client is None or not await asyncio.get_running_loop().run_in_executor(
            None, _matches, secret, client.secret
        ):
            return  # a client since removed or given a new secret: the file is stale, left as it is
    write_private(path, json.dumps(credentials_document(config, port, client_id, secret), indent=2))


def scheme(config: ServerConfig) -> str:
    return "https" if config.tls_cert else "http"


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate is configured (``--tls-cert`` and ``--tls-key``)."""
    if config.tls_cert is None:
        return None
    key = config.tls_key or config.tls_cert
    mode = stat.S_IMODE(os.stat(key).st_mode)
    if mode & 0o007:  # as ssh refuses a private key others may read (a group, e.g. ssl-cert, may)
        raise ServeError(f"permissions {mode:04o} for {key} are too open: others may read it (chmod o-rwx {key})")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ServeError(f"cannot serve TLS with {config.tls_cert} and {config.tls_key}: {reason}") from exc
    return context


def credentials_document(config: ServerConfig, port: int, client_id: str, secret: str) -> dict[str, object]:
    """A ``client_credentials.json`` (the SDK's format) for a client of this server."""
    return credentials_for(f"{scheme(config)}://{config.host}:{port}", client_id, secret)


async def _janitor(st: State) -> None:
    """Now and then: abort idle uploads, remove blobs whose grace period is over, trim the event log, write the
    audit log's counts of repeated refusals."""
    interval = min(60.0, max(0.2, st.config.upload_expiry / 4))
    while True:
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))
        try:
            await uploads.tidy(st.meta, st.blobs, st.config.upload_expiry)
        except Exception:
            log.exception("tidying up failed; trying again later")
        st.audit.flush(REPEAT_WINDOW)


async def serve(
    config: ServerConfig,
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    ready: Callable[[int], None] | None,
    parent: int | None,
    secret: str | None = None,
    index: int = 0,
) -> None:
    """Serve on ``sock`` (HTTPS with ``tls``) until SIGINT or SIGTERM (or, for worker ``index``, until its parent
    is gone)."""
    loop = asyncio.get_running_loop()
    # Blob commits wait on fsync far more than they use a core: enough threads let many overlap.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=DISK_THREADS, thread_name_prefix="fusionsync-disk"))
    st = await open_state(config)
    try:
        port = sock.getsockname()[1]
        if parent is None:
            await tidy_root(st, port, secret)
        runner = web.AppRunner(
            make_app(st, None if parent is None else metrics.Shared(config.root / METRICS_FOLDER, index)),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            max_headers=MAX_HEADERS,
            # After an early answer (an upload refused before its body was read) aiohttp reads and drops
            # what the client still sends, so that the answer is not lost to a reset; 10 s by default, which
            # also holds up a shutdown that long. On a network, a second is plenty.
            lingering_time=LINGER_SECONDS,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # Bodies are decoded by the routes that take them, after the token was checked (common.decoded):
            # aiohttp would inflate a gzip body even when the answer was a 401.
            auto_decompress=False,
        )
        await runner.setup()
        limits = Limits(config.max_connections, config.header_timeout, config.read_timeout)
        await GuardedSite(runner, sock, limits, ssl_context=tls).start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.ensure_future(_janitor(st))]
        if parent is not None:
            tasks.append(asyncio.ensure_future(_orphaned(parent, stop)))
        if ready is not None:
            ready(port)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()
    finally:
        await close_state(st)


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """Stop once the parent is gone (killed): a worker must not outlive the lock's owner."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            stop.set()
            return


async def _prepare(config: ServerConfig, port: int, secret: str | None) -> None:
    st = await open_state(config)
    try:
        await tidy_root(st, port, secret)
    finally:
        await close_state(st)


def run(config: ServerConfig, ready: Callable[[int], None]) -> None:
    """Lock the root, bind the port, serve (``ServeError`` when it cannot)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack, on stderr
    private_umask()
    tls = tls_context(config)  # a certificate that does not load stops the server before it touches anything
    locks = [lock_root(config.root)]
    try:
        folder = Path(config.blobs) if config.blobs and "://" not in config.blobs else None
        if folder is not None and folder.resolve() != config.root.resolve():
            locks.append(lock_root(folder))  # a blob folder is swept at start: one server at a time there too
        sock = listen(config.host, config.port)
        with sock:
            secret = first_client(config)
            if config.workers <= 1:
                asyncio.run(serve(config, sock, tls, ready, None, secret))
            else:
                shutil.rmtree(config.root / METRICS_FOLDER, ignore_errors=True)  # a previous run's workers' tables
                (config.root / METRICS_FOLDER).mkdir()
                asyncio.run(_prepare(config, sock.getsockname()[1], secret))
                _supervise(config, sock, tls, ready)
    finally:
        for fd in locks:
            os.close(fd)


def _supervise(
    config: ServerConfig, sock: socket.socket, tls: ssl.SSLContext | None, ready: Callable[[int], None]
) -> None:
    """Fork the workers, start a new one for each that dies, stop them all on SIGINT or SIGTERM."""
    parent = os.getpid()
    workers: dict[int, int] = {}
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                faulthandler.register(signal.SIGUSR1, all_threads=True)
                asyncio.run(serve(config, sock, tls, None, parent, index=index))
                code = 0
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        workers[pid] = index

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def dump(signum: int, frame: object) -> None:  # kill -USR1 on the parent: every worker's stacks too
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    signal.signal(signal.SIGUSR1, dump)
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)
    for index in range(config.workers):
        spawn(index)
    ready(sock.getsockname()[1])
    deaths: list[float] = []
    while workers:
        pid, status = os.wait()
        if pid not in workers or stopping:
            workers.pop(pid, None)
            continue
        index = workers.pop(pid)
        deaths = [t for t in deaths if t > time.monotonic() - 60] + [time.monotonic()]
        log.warning("worker %d (process %d) ended (status %d); starting another", index, pid, status)
        if len(deaths) > RESPAWN_LIMIT:
            log.error("workers keep dying; stopping")
            stop(signal.SIGTERM, None)
            continue
        spawn(index)
