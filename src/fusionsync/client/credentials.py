"""Credentials in the official SDK's ``client_credentials.json`` format, and the tokens they buy.

``{"client_id", "client_secret", "resource", "auth_url", "root_url", "proxies"}`` for OAuth2
client credentials (``FUSION_CLIENT_ID`` / ``FUSION_CLIENT_SECRET`` fill in missing ones, as in
the SDK), ``{"grant_type": "password", "client_id", "username", "password"}``, or
``{"grant_type": "bearer", "bearer_token": ...}`` for a token obtained elsewhere; an optional
``fusion_e2e`` is sent as the ``fusion-e2e`` header. API calls carry ``Authorization: Bearer
<token>``; distribution calls also carry a per-dataset ``Fusion-Authorization`` token. Tokens are
cached and refreshed before they expire.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fusionsync.client.net import NetPolicy
from fusionsync.client.wire import Retryable, message, status_error
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
    username: str | None = None
    password: str | None = None
    fusion_e2e: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "credentials") -> Credentials:
        grant = str(data.get("grant_type") or ("bearer" if data.get("bearer_token") else "client_credentials"))
        proxies = data.get("proxies") or {}
        if not isinstance(proxies, dict):
            raise CredentialsError(f"{source}: proxies must be an object like {{'https': 'http://proxy:8080'}}")
        creds = cls(
            client_id=_text(data, "client_id", source) or os.environ.get("FUSION_CLIENT_ID"),
            client_secret=_text(data, "client_secret", source) or os.environ.get("FUSION_CLIENT_SECRET"),
            resource=_text(data, "resource", source),
            auth_url=_text(data, "auth_url", source) or DEFAULT_AUTH_URL,
            root_url=_text(data, "root_url", source),
            proxies={str(k): str(v) for k, v in proxies.items() if v},
            grant_type=grant,
            bearer_token=_text(data, "bearer_token", source),
            username=_text(data, "username", source),
            password=_text(data, "password", source),
            fusion_e2e=_text(data, "fusion_e2e", source),
        )
        if grant == "bearer":
            if not creds.bearer_token:
                raise CredentialsError(f"{source}: grant_type bearer needs a bearer_token")
        elif grant == "client_credentials":
            if not creds.client_id or creds.client_secret is None:
                hint = " (signed JWT assertions with kid/private_key are not supported)" if data.get("kid") else ""
                raise CredentialsError(f"{source}: client_id and client_secret are required{hint}")
        elif grant == "password":
            if not creds.client_id or not creds.username or creds.password is None:
                raise CredentialsError(f"{source}: grant_type password needs client_id, username and password")
        else:
            raise CredentialsError(f"{source}: unsupported grant_type {grant!r}")
        return creds

    @classmethod
    def from_file(cls, path: str | Path) -> Credentials:
        """Read a credentials file; like the SDK, a path that is not a file makes us look for
        ``config/client_credentials.json`` in its folder and the folders above."""
        found = find_credentials_file(Path(path))
        try:
            data = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"credentials file {found} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CredentialsError(f"credentials file {found} must hold a JSON object")
        return cls.from_dict(data, str(found))


def find_credentials_file(path: Path) -> Path:
    """``path`` itself, or the nearest ``config/client_credentials.json`` from its folder upwards."""
    if path.is_file():
        return path
    start = (path.parent if path.parent.is_dir() else Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / "config" / "client_credentials.json"
        if candidate.is_file():
            return candidate
    raise CredentialsError(
        f"credentials file {path} not found (nor config/client_credentials.json in {start} or above)"
    )


def _text(data: dict[str, Any], key: str, source: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise CredentialsError(f"{source}: {key} must be a string, not {type(value).__name__}")


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
        fields = (
            "client_id", "client_secret", "resource", "auth_url", "proxies", "grant_type",
            "username", "password", "fusion_e2e",
        )  # fmt: skip
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

    def __init__(self, creds: Credentials, policy: NetPolicy | None = None) -> None:
        self.creds = creds
        self.policy = policy or NetPolicy(creds.proxies)
        self._api: _Token | None = None
        if creds.grant_type == "bearer" and creds.bearer_token:
            self._api = _Token(creds.bearer_token, None, None)
        self._fusion: dict[tuple[str, str], _Token] = {}
        self._lock = asyncio.Lock()
        self._fusion_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def rebind(self) -> None:
        """New locks for a new event loop (an asyncio lock belongs to the loop that first used it)."""
        self._lock = asyncio.Lock()
        self._fusion_locks = {}

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
        creds = self.creds
        if creds.grant_type == "password":  # the SDK's form for a user: resource, not aud
            form = {
                "grant_type": "password",
                "client_id": creds.client_id or "",
                "username": creds.username or "",
                "password": creds.password or "",
            }
            if creds.resource:
                form["resource"] = creds.resource
        else:
            form = {
                "grant_type": "client_credentials",
                "client_id": creds.client_id or "",
                "client_secret": creds.client_secret or "",
            }
            if creds.resource:
                form["aud"] = creds.resource
        url = creds.auth_url
        return await _token_call(session, "POST", url, "the token endpoint", self._route(url), data=form)

    async def fusion_token(self, session: aiohttp.ClientSession, url: str, catalog: str, dataset: str) -> str:
        """The dataset's fusion token; concurrent requests for one dataset share one fetch."""
        key = (catalog, dataset)
        token = self._fusion.get(key)
        if token is not None and token.fresh():
            return token.value
        async with self._fusion_locks.setdefault(key, asyncio.Lock()):
            token = self._fusion.get(key)
            if token is None or not token.fresh():
                api = await self.api_token(session)
                what = f"the fusion token of dataset {dataset!r}"
                headers = {"Authorization": f"Bearer {api}"}
                token = await _token_call(session, "GET", url, what, self._route(url), headers=headers)
                self._fusion[key] = token
            return token.value

    def _route(self, url: str) -> dict[str, Any]:
        proxy, headers = self.policy.route(url)
        return {"proxy": proxy, "proxy_headers": headers}


async def _token_call(
    session: aiohttp.ClientSession, method: str, url: str, what: str, route: dict[str, Any], **kw: Any
) -> _Token:
    """Fetch a token; connection errors and 429/5xx propagate as retryable, so the caller's retries apply."""
    async with session.request(method, url, **route, **kw) as resp:
        body = await resp.read()
        if resp.status in (400, 401, 403):
            raise AuthError(f"{what} refused the credentials (HTTP {resp.status}): {message(body)}")
        if resp.status >= 300:
            error = status_error(resp.status, what, body, resp.headers)
            if isinstance(error, Retryable):
                raise error
            raise AuthError(f"{what} answered HTTP {resp.status}: {message(body)}") from error
    try:
        data = json.loads(body)
        value = str(data["access_token"])
        lifetime = float(data["expires_in"]) if data.get("expires_in") is not None else None
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"{what} answered without an access_token") from exc
    expires = time.monotonic() + lifetime if lifetime is not None else None
    return _Token(value, expires, lifetime)
