"""Credentials in the official SDK's ``client_credentials.json`` format, and the tokens they buy.

``{"client_id", "client_secret", "resource", "auth_url", "root_url", "proxies"}`` for OAuth2
client credentials, or ``{"grant_type": "bearer", "bearer_token": ...}`` for a token obtained
elsewhere. API calls carry ``Authorization: Bearer <token>``; distribution calls also carry a
per-dataset ``Fusion-Authorization`` token. Tokens are cached and refreshed before they expire.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fusionsync.errors import AuthError, CredentialsError

DEFAULT_ROOT_URL = "https://fusion.jpmorgan.com/api/v1/"
DEFAULT_AUTH_URL = "https://authe.jpmorgan.com/as/token.oauth2"


@dataclass
class Credentials:
    """What a credentials file says."""

    client_id: str | None = None
    client_secret: str | None = None
    resource: str | None = None
    auth_url: str = DEFAULT_AUTH_URL
    root_url: str | None = None
    proxies: dict[str, str] = field(default_factory=dict)
    grant_type: str = "client_credentials"
    bearer_token: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "credentials") -> Credentials:
        grant = str(data.get("grant_type") or ("bearer" if data.get("bearer_token") else "client_credentials"))
        creds = cls(
            client_id=data.get("client_id"),
            client_secret=data.get("client_secret"),
            resource=data.get("resource"),
            auth_url=data.get("auth_url") or DEFAULT_AUTH_URL,
            root_url=data.get("root_url"),
            proxies=dict(data.get("proxies") or {}),
            grant_type=grant,
            bearer_token=data.get("bearer_token"),
        )
        if grant == "bearer":
            if not creds.bearer_token:
                raise CredentialsError(f"{source}: grant_type bearer needs a bearer_token")
        elif grant == "client_credentials":
            if not creds.client_id or creds.client_secret is None:
                raise CredentialsError(f"{source}: client_id and client_secret are required")
        else:
            raise CredentialsError(f"{source}: unsupported grant_type {grant!r}")
        return creds

    @classmethod
    def from_file(cls, path: str | Path) -> Credentials:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CredentialsError(f"credentials file {path} not found") from None
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"credentials file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CredentialsError(f"credentials file {path} must hold a JSON object")
        return cls.from_dict(data, str(path))


def load_credentials(value: Any) -> Credentials:
    """Accept a path, a dict, our :class:`Credentials` or an SDK ``FusionCredentials`` object."""
    if isinstance(value, Credentials):
        return value
    if isinstance(value, str | Path):
        return Credentials.from_file(value)
    if isinstance(value, dict):
        return Credentials.from_dict(value)
    if hasattr(value, "client_id") and hasattr(value, "auth_url"):
        token = getattr(getattr(value, "bearer_token", None), "token", None)
        fields = ("client_id", "client_secret", "resource", "auth_url", "proxies", "grant_type")
        return Credentials.from_dict({**{k: getattr(value, k, None) for k in fields}, "bearer_token": token})
    raise CredentialsError(f"cannot read credentials from {type(value).__name__}")


@dataclass
class _Token:
    value: str
    expires: float | None
    lifetime: float | None

    def fresh(self) -> bool:
        if self.expires is None or self.lifetime is None:
            return True
        margin = min(300.0, self.lifetime * 0.2)
        return time.monotonic() < self.expires - margin


class TokenCache:
    """The API token and one fusion token per dataset, fetched once and refreshed before expiry."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self._api: _Token | None = None
        if creds.grant_type == "bearer" and creds.bearer_token:
            self._api = _Token(creds.bearer_token, None, None)
        self._fusion: dict[tuple[str, str], _Token] = {}
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget cached tokens (after the server refused one)."""
        if self.creds.grant_type != "bearer":
            self._api = None
        self._fusion.clear()

    async def api_token(self, session: aiohttp.ClientSession) -> str:
        token = self._api
        if token is not None and token.fresh():
            return token.value
        async with self._lock:
            if self._api is None or not self._api.fresh():
                self._api = await self._fetch_api(session)
            return self._api.value

    async def _fetch_api(self, session: aiohttp.ClientSession) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.creds.client_id or "",
            "client_secret": self.creds.client_secret or "",
        }
        if self.creds.resource:
            form["aud"] = self.creds.resource
        return await _token_call(session, "POST", self.creds.auth_url, "the token endpoint", data=form)

    async def fusion_token(self, session: aiohttp.ClientSession, url: str, catalog: str, dataset: str) -> str:
        token = self._fusion.get((catalog, dataset))
        if token is not None and token.fresh():
            return token.value
        api = await self.api_token(session)
        token = await _token_call(
            session, "GET", url, f"the fusion token of dataset {dataset!r}", headers={"Authorization": f"Bearer {api}"}
        )
        self._fusion[(catalog, dataset)] = token
        return token.value


async def _token_call(session: aiohttp.ClientSession, method: str, url: str, what: str, **kw: Any) -> _Token:
    """Fetch a token; connection errors propagate as they are, so the caller's retries apply."""
    async with session.request(method, url, **kw) as resp:
        body = await resp.read()
        if resp.status in (400, 401, 403):
            raise AuthError(f"{what} refused the credentials (HTTP {resp.status}): {_message(body)}")
        if resp.status >= 300:
            raise AuthError(f"{what} answered HTTP {resp.status}: {_message(body)}")
    try:
        data = json.loads(body)
        value = str(data["access_token"])
        lifetime = float(data["expires_in"]) if data.get("expires_in") is not None else None
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"{what} answered without an access_token") from exc
    expires = time.monotonic() + lifetime if lifetime is not None else None
    return _Token(value, expires, lifetime)


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error_description") or data.get("error") or data)
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace") or "no message"
