"""``fusionsync clients ...``: the clients of a server's root (``ROOT/clients.json``) and its signing key.

Secrets never appear on a command line (any user reads ``/proc/PID/cmdline``): ``add`` and ``rotate`` make a
new secret and write it into a credentials file of the official SDK's format (0600), or read one from
standard input with ``--secret-stdin``. A running server sees every change at its next request.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fusionsync.cli import fail
from fusionsync.errors import UsageError
from fusionsync.server.auth import KEY_FILE, rotate_key
from fusionsync.server.clients import (
    CLIENTS_FILE,
    READ,
    ROLES,
    Client,
    credentials_for,
    hash_secret,
    load_clients,
    new_secret,
    save_clients,
)
from fusionsync.server.disk import UnsafeFile, private_umask, write_private

ROOT = click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="The server's root folder.",
)
SERVER_URL = "http://127.0.0.1:8765"
F = TypeVar("F", bound=Callable[..., Any])


def _load(root: Path, missing_ok: bool = False) -> dict[str, Client]:
    try:
        return load_clients(root / CLIENTS_FILE)
    except FileNotFoundError:
        if missing_ok:
            return {}
        fail(UsageError(f"{root / CLIENTS_FILE} not found: start the server once, or add a client"))
    except (UnsafeFile, ValueError) as exc:
        fail(UsageError(str(exc)))


def _secret(from_stdin: bool) -> str:
    if not from_stdin:
        return new_secret()
    secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < 16:
        fail(UsageError("a client secret must have at least 16 characters"))
    return secret


def _credentials(path: Path, client_id: str, secret: str, url: str) -> None:
    write_private(path, json.dumps(credentials_for(url, client_id, secret), indent=2))
    click.echo(f"credentials of {client_id!r} written to {path} (readable by you only)")


@click.group()
def clients() -> None:
    """Manage who may use a server: clients with a role (read, write, admin) and, optionally, the only
    catalogs they may see. A running server applies every change at once (a removed client's tokens stop
    working)."""
    private_umask()


CLIENT_OPTIONS = [
    click.option(
        "--credentials",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Where to write the client's credentials (client_credentials.json format; default: ID_credentials.json).",
    ),
    click.option("--secret-stdin", is_flag=True, help="Read the secret from standard input instead of making one."),
    click.option("--url", default=SERVER_URL, show_default=True, help="The server's address, for the credentials."),
]


def _client_options(fn: F) -> F:
    for option in reversed(CLIENT_OPTIONS):
        fn = option(fn)
    return fn


@clients.command("add")
@click.argument("client_id")
@ROOT
@click.option("--role", type=click.Choice(ROLES), default=READ, show_default=True, help="What the client may do.")
@click.option("--catalog", "catalogs", multiple=True, help="A catalog the client may see (repeatable; default: all).")
@_client_options
def add(
    client_id: str,
    root: Path,
    role: str,
    catalogs: tuple[str, ...],
    credentials: Path | None,
    secret_stdin: bool,
    url: str,
) -> None:
    """Add a client (or change the role and catalogs of one, keeping its secret)."""
    known = _load(root, missing_ok=True)
    existing = known.get(client_id)
    secret = None if existing is not None else _secret(secret_stdin)
    hashed = existing.secret if existing is not None else hash_secret(secret or "")
    known[client_id] = Client(client_id, hashed, role, frozenset(catalogs) if catalogs else None)
    save_clients(root / CLIENTS_FILE, known)
    click.echo(f"client {client_id!r}: role {role}, catalogs {', '.join(sorted(catalogs)) or 'all'}")
    if secret is not None:
        _credentials(credentials or Path(f"{client_id}_credentials.json"), client_id, secret, url)


@clients.command("rotate")
@click.argument("client_id")
@ROOT
@_client_options
def rotate(client_id: str, root: Path, credentials: Path | None, secret_stdin: bool, url: str) -> None:
    """Give a client a new secret: its tokens stop working at once."""
    known = _load(root)
    if client_id not in known:
        fail(UsageError(f"no client {client_id!r} in {root / CLIENTS_FILE}"))
    secret = _secret(secret_stdin)
    old = known[client_id]
    known[client_id] = Client(client_id, hash_secret(secret), old.role, old.catalogs)
    save_clients(root / CLIENTS_FILE, known)
    _credentials(credentials or Path(f"{client_id}_credentials.json"), client_id, secret, url)


@clients.command("remove")
@click.argument("client_id")
@ROOT
def remove(client_id: str, root: Path) -> None:
    """Remove a client: its tokens stop working at once."""
    known = _load(root)
    if known.pop(client_id, None) is None:
        fail(UsageError(f"no client {client_id!r} in {root / CLIENTS_FILE}"))
    save_clients(root / CLIENTS_FILE, known)
    click.echo(f"client {client_id!r} removed")


@clients.command("list")
@ROOT
def list_clients(root: Path) -> None:
    """The clients, their roles and catalogs."""
    for client in _load(root).values():
        catalogs = ", ".join(sorted(client.catalogs)) if client.catalogs is not None else "all"
        click.echo(f"{client.id}\t{client.role}\t{catalogs}")


@clients.command("rotate-key")
@ROOT
def rotate_signing_key(root: Path) -> None:
    """Sign new tokens with a new key. Tokens of the previous key keep working until they expire (rotating
    twice within a token lifetime revokes every token of the oldest key)."""
    try:
        kid = rotate_key(root / KEY_FILE)
    except (UnsafeFile, ValueError) as exc:
        fail(UsageError(str(exc)))
    click.echo(f"new signing key {kid} in {root / KEY_FILE}")


def commands() -> list[click.Command]:
    """The commands this module adds to ``fusionsync``."""
    return [clients]
