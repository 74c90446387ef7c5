"""Token issuing and checking for the catalog server.

Tokens are stateless: ``base64url(claims).base64url(HMAC-SHA256(claims))`` signed with a
key kept in the server's root folder, so they survive a restart and cost no lookup.
API tokens come from the OAuth2 client-credentials endpoint; *fusion tokens*, which
downloads and uploads also need, are issued per dataset and open that dataset only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

API = "api"
FUSION = "fusion"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw(text: str) -> bytes:
    """Text from a request as bytes, whatever it holds (non-ASCII, lone surrogates)."""
    return text.encode("utf-8", errors="surrogatepass")


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` atomically by a file readable by its owner only (0600 from its creation)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def load_key(root: Path) -> bytes:
    """The signing key stored in ``root/server.key``, created on first use."""
    path = root / "server.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        write_private(path, secrets.token_bytes(32))
        return path.read_bytes()


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says."""

    subject: str
    kind: str
    scope: str
    expires: float


class TokenAuthority:
    """Issues and checks signed tokens; knows the configured clients."""

    def __init__(self, key: bytes, clients: dict[str, str], ttl: int = 3600) -> None:
        self._key = key
        self.clients = dict(clients)
        self.ttl = ttl

    def check_client(self, client_id: str, client_secret: str) -> bool:
        """Whether the client id and secret match a configured client (constant time)."""
        expected = self.clients.get(client_id)
        if expected is None:
            hmac.compare_digest(_raw(client_secret), _raw(client_secret))
            return False
        return hmac.compare_digest(_raw(expected), _raw(client_secret))

    def issue(self, subject: str, kind: str, scope: str = "") -> str:
        claims = {"sub": subject, "typ": kind, "scp": scope, "exp": time.time() + self.ttl}
        body = _b64e(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64e(hmac.new(self._key, _raw(body), hashlib.sha256).digest())

    def verify(self, token: str, kind: str, scope: str = "") -> Claims | None:
        """The token's claims if it is genuine, unexpired, of ``kind`` and for ``scope``."""
        body, _, sig = token.partition(".")
        if not body or not sig or not hmac.compare_digest(_raw(self._sign(body)), _raw(sig)):
            return None
        try:
            raw = json.loads(_b64d(body))
            claims = Claims(str(raw["sub"]), str(raw["typ"]), str(raw["scp"]), float(raw["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if claims.kind != kind or claims.scope != scope or claims.expires < time.time():
            return None
        return claims


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def load_clients(root: Path) -> dict[str, str]:
    """Clients configured in ``root/clients.json`` (``{"client_id": "secret", ...}``)."""
    path = root / "clients.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path} must map client ids to secrets")
    return {str(k): v for k, v in data.items()}


def ensure_client(root: Path) -> dict[str, str]:
    """The configured clients; when there are none, create one and save it in ``clients.json``."""
    clients = load_clients(root)
    if not clients:
        clients = {"fusionsync": secrets.token_urlsafe(24)}
        write_private(root / "clients.json", json.dumps(clients, indent=2))
    return clients
