"""A real PostgreSQL 16 for tests and benchmarks: the server binaries of the ``pgserver`` wheel, started in a
temporary folder on a free 127.0.0.1 port (``postgres_server``), and a fresh database per use (``new_database``).

PostgreSQL refuses to run as root: when the tests run as root (CI does) the server runs as the unprivileged
user ``nobody``; when ``nobody`` cannot reach the binaries where pip put them, they are copied first.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NOBODY = 65534
ROOT = os.geteuid() == 0


def _binaries() -> Path:
    """Where the ``pgserver`` wheel (a dev dependency) keeps PostgreSQL (not imported: only its binaries serve)."""
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.origin is not None, "pip install pgserver (the dev extra has it)"
    return Path(spec.origin).parent / "pginstall"


def _as_server_user() -> dict[str, Any]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if ROOT else {}


def _reachable(install: Path) -> bool:
    try:
        probe = subprocess.run([install / "bin" / "postgres", "--version"], capture_output=True, **_as_server_user())
    except PermissionError:  # a folder on the way that nobody may enter (a clone in a private temp folder)
        return False
    return probe.returncode == 0


def _copy(install: Path, dest: Path) -> Path:
    """The wheel's PostgreSQL copied where everyone may read it, with the libraries its RPATH names
    (``$ORIGIN/../../../pgserver.libs``: next to the package)."""
    package = install.parent
    for folder in (package, package.with_name(package.name + ".libs")):
        if folder.exists():
            shutil.copytree(folder, dest / folder.name)
    subprocess.run(["chmod", "-R", "a+rX", str(dest)], check=True)
    return dest / package.name / install.name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server(durable: bool = False) -> Iterator[str]:
    """A running PostgreSQL; its URL without a database (``postgresql://postgres@127.0.0.1:PORT``). Not
    ``durable``: commits do not wait for the disk (tests); durable: as configured in production (benchmarks)."""
    work = Path(tempfile.mkdtemp(prefix="pgtest-"))
    install = _binaries()
    if ROOT:
        os.chown(work, NOBODY, NOBODY)
        if not _reachable(install):  # e.g. a checkout under /root: nobody may not enter it
            install = _copy(install, work / "copy")
    data, port = work / "data", _free_port()
    run = _as_server_user()
    subprocess.run(
        [install / "bin" / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        **run,
    )
    options = f"-h 127.0.0.1 -p {port} -k {work} -c max_connections=400" + ("" if durable else " -c fsync=off")
    ctl = [install / "bin" / "pg_ctl", "-D", data, "-l", work / "log", "-w", "-t", "60"]
    subprocess.run([*ctl, "-o", options, "start"], check=True, capture_output=True, **run)
    _watch(work, [str(part) for part in [*ctl, "-m", "immediate", "stop"]])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, **run)
        shutil.rmtree(work, ignore_errors=True)


_watchdogs: list[subprocess.Popen[bytes]] = []
_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, work, user, stop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
while os.path.isdir(work) and os.path.isdir(f"/proc/{parent}"):
    time.sleep(1)
if os.path.isdir(work):  # the test process was killed before it could stop its server
    as_user = {"user": user, "group": user, "extra_groups": []} if user >= 0 else {}
    subprocess.run(stop, capture_output=True, **as_user)
    shutil.rmtree(work, ignore_errors=True)
"""


def _watch(work: Path, stop: list[str]) -> None:
    """A process of its own that stops the server and removes its folder once this process is gone: pg_ctl
    detaches PostgreSQL, which would otherwise outlive a test run that was killed."""
    user = NOBODY if ROOT else -1
    _watchdogs.append(
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(work), str(user), *stop],
            start_new_session=True,  # a Ctrl+C or a kill of the test run's process group does not reach it
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


def new_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    import asyncio

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url + "/postgres")
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{server_url}/{name}"
