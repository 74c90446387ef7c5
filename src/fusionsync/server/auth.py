"""Token issuing and checking for the catalog server.

Tokens are ``base64url(claims).base64url(HMAC-SHA256(claims))``, signed with a key of ``ROOT/server.key`` and
naming it, so they survive a restart and cost no lookup but a stat of the clients and key files. A token is
refused once its client is removed or given a new secret (it carries the secret's fingerprint), once it
expires (lifetimes are capped at ``MAX_TTL``), and once its key is dropped. Each token has an id of its own
(``jti``): a web session is refused once signed out too, as ``web.session`` looks its id up among the sessions
revoked in the metadata store (the one lookup a token costs, and only a web page's). Rotating the key
(``fusionsync clients rotate-key``) signs new tokens with a new key while the previous one still verifies
the tokens it signed until they expire: no client has to restart.

API tokens come from the OAuth2 client-credentials endpoint; *fusion tokens*, which downloads and uploads
also need, are issued per dataset to clients that may read it, and open that dataset only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fusionsync.server.clients import Client, Registry, secret_matches
from fusionsync.server.disk import read_private, write_private

API = "api"
FUSION = "fusion"
MAX_TTL = 86400
"""The longest lifetime a token may have, in seconds."""
KEY_FILE = "server.key"
KEEP_KEYS = 2
"""Keys kept after a rotation: the new one and the previous one (its tokens live out their lifetime)."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw(text: str) -> bytes:
    """Text from a request as bytes, whatever it holds (non-ASCII, lone surrogates)."""
    return text.encode("utf-8", errors="surrogatepass")


class KeyRing:
    """The signing keys of ``ROOT/server.key`` (created on first use), read again when the file changes.

    The file holds ``{"current": KID, "keys": {KID: base64}}``; a file of an earlier release (32 raw bytes) is
    one key named ``0``."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.current = ""
        self.keys: dict[str, bytes] = {}
        try:
            self._load()
        except FileNotFoundError:
            if not create:
                raise
            rotate_key(path)
            self._load()

    def _load(self) -> None:
        info = os.stat(self.path)
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp == self._stamp:
            return
        raw = read_private(self.path)
        try:
            data = json.loads(raw)
            self.keys = {str(k): base64.b64decode(v) for k, v in data["keys"].items()}
            self.current = str(data["current"])
            self.keys[self.current]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            if len(raw) < 16:
                raise ValueError(f"{self.path} holds no signing key") from None
            self.keys, self.current = {"0": raw}, "0"
        self._stamp = stamp

    def refresh(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # a rotation half seen: the keys known go on working
            self._load()


def rotate_key(path: Path) -> str:
    """Add a new signing key to ``path`` and make it current (keeping the previous one); its id."""
    try:
        ring = KeyRing(path, create=False)
        keys = {k: ring.keys[k] for k in [*ring.keys][-(KEEP_KEYS - 1) :]} if KEEP_KEYS > 1 else {}
    except FileNotFoundError:
        keys = {}
    kid = secrets.token_hex(4)
    keys[kid] = secrets.token_bytes(32)
    document = {"current": kid, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
    write_private(path, json.dumps(document) + "\n")
    return kid


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says."""

    subject: str
    kind: str
    scope: str
    expires: float
    id: str = ""
    """Names this token alone (a web session's id, which signing out revokes); tokens of earlier releases
    have none."""


class TokenAuthority:
    """Issues and checks signed tokens for the clients of a registry (None: authentication is off)."""

    def __init__(self, keys: KeyRing, clients: Registry | None, ttl: int = 3600) -> None:
        self.keys = keys
        self.clients = clients
        self.ttl = min(ttl, MAX_TTL)

    async def sign_in(self, client_id: str, client_secret: str) -> Client | None:
        """The client when the id and secret match a configured client."""
        client = self.clients.get(client_id) if self.clients is not None else None
        if client is None:
            return None
        known = self.clients.remembered(client, client_secret) if self.clients is not None else None
        if known is None:  # scrypt, off the event loop
            loop = asyncio.get_running_loop()
            known = await loop.run_in_executor(None, secret_matches, client_secret, client.secret)
            if known and self.clients is not None:
                self.clients.remember(client, client_secret)
        return client if known else None

    def client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id) if self.clients is not None else None

    def issue(self, subject: str, kind: str, scope: str = "") -> str:
        self.keys.refresh()
        client = self.client(subject)
        claims = {
            "sub": subject,
            "typ": kind,
            "scp": scope,
            "exp": time.time() + self.ttl,
            "kid": self.keys.current,
            "fp": client.fingerprint if client is not None else "",
            "jti": secrets.token_urlsafe(12),
        }
        body = _b64e(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(self.keys.keys[self.keys.current], body)}"

    @staticmethod
    def _sign(key: bytes, body: str) -> str:
        return _b64e(hmac.new(key, _raw(body), hashlib.sha256).digest())

    def verify(self, token: str, kind: str, scope: str = "") -> Claims | None:
        """The token's claims if it is genuine, unexpired, of ``kind``, for ``scope`` and of a client that is
        still configured with the same secret."""
        body, _, sig = token.partition(".")
        if not body or not sig:
            return None
        try:
            raw = json.loads(_b64d(body))
            kid = str(raw["kid"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        self.keys.refresh()
        key = self.keys.keys.get(kid)
        if key is None or not hmac.compare_digest(_raw(self._sign(key, body)), _raw(sig)):
            return None
        try:
            claims = Claims(
                str(raw["sub"]), str(raw["typ"]), str(raw["scp"]), float(raw["exp"]), str(raw.get("jti", ""))
            )
            fingerprint = str(raw["fp"])
        except (ValueError, KeyError, TypeError):
            return None
        if claims.kind != kind or claims.scope != scope or claims.expires < time.time():
            return None
        client = self.client(claims.subject)
        if client is None or client.fingerprint != fingerprint:
            return None
        return claims


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Backoff:
    """Failed token requests, per client and per address: after ``FREE`` failures each further try must wait
    twice as long as the last (up to ``MAX_WAIT`` seconds); a success forgets a client's failures."""

    FREE = 5
    MAX_WAIT = 300.0
    FORGET = 900.0
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}

    def wait(self, keys: list[str]) -> float:
        """Seconds before a try with these keys may be checked (0: now)."""
        now = time.monotonic()
        return max((self._failures.get(k, (0, now))[1] - now for k in keys), default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        for key in keys:
            count, until = self._failures.pop(key, (0, now))
            if until < now - self.FORGET:
                count = 0
            count += 1
            wait = 0.0 if count < self.FREE else min(self.MAX_WAIT, 2.0 ** (count - self.FREE))
            self._failures[key] = (count, now + wait)
        while len(self._failures) > self.MAX_KEYS:  # the oldest go first
            del self._failures[next(iter(self._failures))]

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
