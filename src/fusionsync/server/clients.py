"""Who may use the catalog server: the clients of ``ROOT/clients.json``, their roles and catalogs.

The file holds no secret, only its scrypt hash, and is never given on the command line (``fusionsync clients``
edits it)::

    {"clients": {"etl": {"secret": "scrypt$...", "role": "write", "catalogs": ["prices"]}}}

Roles: ``read`` (look and download), ``write`` (also upload, change and delete inside its catalogs), ``admin``
(also create and delete catalogs). ``catalogs`` (optional) names the only catalogs the client may see. The
server reads the file again whenever it changes, so a client removed (or given a new secret) is refused at once:
a token names its client and the fingerprint of that client's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionsync.server.disk import UnsafeFile, read_private, write_private

log = logging.getLogger("fusionsync.server")
CLIENTS_FILE = "clients.json"
READ, WRITE, ADMIN = "read", "write", "admin"
ROLES = (READ, WRITE, ADMIN)
SCRYPT = {"n": 2**13, "r": 8, "p": 1}
"""About 50 ms and 8 MiB a check (once per secret and process: a verified secret is remembered by its SHA-256)."""


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, maxmem=2**26, **SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            secret.encode("utf-8", errors="surrogatepass"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
            maxmem=2**26,
        )
        return hmac.compare_digest(found, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True, slots=True)
class Client:
    """A configured client."""

    id: str
    secret: str
    """The scrypt hash of its secret."""
    role: str
    catalogs: frozenset[str] | None = None
    """The only catalogs it may see (None: every one)."""

    @property
    def fingerprint(self) -> str:
        """Names this client's current secret in its tokens (a new secret makes its old tokens void)."""
        return hashlib.sha256(self.secret.encode()).hexdigest()[:16]

    def may(self, role: str, catalog: str | None = None) -> bool:
        """Whether the client has ``role`` (or more), in ``catalog`` when one is named."""
        if ROLES.index(self.role) < ROLES.index(role):
            return False
        return catalog is None or self.catalogs is None or catalog in self.catalogs

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"secret": self.secret, "role": self.role}
        if self.catalogs is not None:
            entry["catalogs"] = sorted(self.catalogs)
        return entry


def parse_clients(data: Any, where: str) -> dict[str, Client]:
    """The clients of a clients file's JSON (``ValueError`` naming ``where`` when it does not fit)."""
    if not isinstance(data, dict) or not isinstance(data.get("clients"), dict):
        raise ValueError(f'{where} must hold {{"clients": {{"ID": {{"secret": ..., "role": ...}}}}}}')
    clients = {}
    for client_id, entry in data["clients"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
            raise ValueError(f"{where}: client {client_id!r} needs a hashed secret")
        role = entry.get("role", READ)
        if role not in ROLES:
            raise ValueError(f"{where}: client {client_id!r} has role {role!r}; roles are {', '.join(ROLES)}")
        catalogs = entry.get("catalogs")
        if catalogs is not None and not (isinstance(catalogs, list) and all(isinstance(c, str) for c in catalogs)):
            raise ValueError(f"{where}: client {client_id!r}: catalogs must be a list of catalog identifiers")
        clients[client_id] = Client(client_id, entry["secret"], role, None if catalogs is None else frozenset(catalogs))
    return clients


def load_clients(path: Path) -> dict[str, Client]:
    """The clients configured in ``path`` (``FileNotFoundError``, ``UnsafeFile``, ``ValueError``). A file of an
    earlier release (``{"ID": "plain secret"}``) is rewritten with hashed secrets, its clients admins."""
    raw = read_private(path)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
        clients = {cid: Client(cid, hash_secret(secret), ADMIN) for cid, secret in data.items()}
        save_clients(path, clients)
        return clients
    return parse_clients(data, str(path))


def save_clients(path: Path, clients: dict[str, Client]) -> None:
    document = {"clients": {cid: c.as_json() for cid, c in sorted(clients.items())}}
    write_private(path, json.dumps(document, indent=2) + "\n")


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def credentials_for(base_url: str, client_id: str, secret: str) -> dict[str, object]:
    """A ``client_credentials.json`` (the official SDK's format) for a client of the server at ``base_url``."""
    base = base_url.rstrip("/")
    return {
        "client_id": client_id,
        "client_secret": secret,
        "resource": "fusionsync",
        "auth_url": f"{base}/oauth2/token",
        "root_url": f"{base}/api/v1/",
        "proxies": {},
    }


class Registry:
    """The clients of a clients file, read again whenever the file changes (checked on every use: a stat)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._clients: dict[str, Client] = {}
        self._verified: dict[str, tuple[str, bytes]] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file (``UnsafeFile``, ``ValueError``, ``FileNotFoundError`` the first time; later, a file
        that became unusable leaves no client at all, and is logged)."""
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
            if stamp == self._stamp:
                return
            clients = load_clients(self.path)
        except (OSError, UnsafeFile, ValueError) as exc:
            if self._stamp is None:
                raise
            log.error("clients file unusable, every client refused until it is fixed: %s", exc)
            self._stamp, self._clients = None, {}
            return
        self._stamp, self._clients = stamp, clients

    def get(self, client_id: str) -> Client | None:
        try:
            self.reload()
        except (OSError, UnsafeFile, ValueError):
            return None
        return self._clients.get(client_id)

    def remembered(self, client: Client, secret: str) -> bool | None:
        """Whether ``secret`` was verified for this client's current hash (None: not known, check it)."""
        known = self._verified.get(client.id)
        if known is None or known[0] != client.secret:
            return None
        return hmac.compare_digest(known[1], hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest())

    def remember(self, client: Client, secret: str) -> None:
        self._verified[client.id] = (client.secret, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest())
