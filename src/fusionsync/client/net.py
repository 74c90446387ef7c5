"""How the client reaches a server: which proxy (if any) and which certificate authorities.

One :class:`NetPolicy` serves every path that opens a connection (aiohttp's pool, the lean
small-GET pool, the token endpoint), so they can never disagree.

Proxies, as ``requests`` (and so the official SDK) finds them: the credentials file's ``proxies``
(``{"https": "http://proxy:8080"}``; keys ``scheme://host``, ``scheme``, ``all://host``, ``all``)
win; otherwise ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` from the environment (lower case
first). A host listed in ``NO_PROXY`` (or the file's ``no_proxy`` key) is reached directly,
whichever source named the proxy: names match as a suffix, ``*`` matches all, and an IP address
matches a listed address or network (``10.0.0.0/8``).

Certificate authorities: the ``ca_bundle`` option, else ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``
or ``SSL_CERT_FILE`` (the first set), else the system's. Verification is always on.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import urllib.request
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from fusionsync.errors import FusionSyncError, UsageError

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class TLSError(FusionSyncError):
    """A server's certificate is not trusted (or TLS cannot be set up): retrying cannot help."""


class NetPolicy:
    """Proxies and TLS for every connection of one client."""

    def __init__(
        self,
        proxies: Mapping[str, str] | None = None,
        ca_bundle: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.file_proxies = {k: v for k, v in (proxies or {}).items() if v and k != "no_proxy"}
        self.env_proxies = {} if self.file_proxies else _env_proxies(env)
        no_proxy = (proxies or {}).get("no_proxy") or _env(env, "no_proxy") or ""
        self.no_proxy = [entry.strip().lower() for entry in no_proxy.split(",") if entry.strip()]
        self.ca_bundle, self.ca_source = _ca_bundle(ca_bundle, env)
        self._ssl: ssl.SSLContext | None = None

    def portable_proxies(self) -> dict[str, str]:
        """The proxies in force, as a credentials file's ``proxies`` (with ``no_proxy``): what another
        process needs to connect the same way whatever its environment."""
        proxies = dict(self.file_proxies or self.env_proxies)
        if proxies and self.no_proxy:
            proxies["no_proxy"] = ",".join(self.no_proxy)
        return proxies

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to reach ``url`` through, or None to connect directly."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if self.bypass(host, parts.port):
            return None
        if self.file_proxies:
            for key in (f"{scheme}://{host}", scheme, f"all://{host}", "all"):
                if self.file_proxies.get(key):
                    return self.file_proxies[key]
            return None
        return self.env_proxies.get(scheme) or self.env_proxies.get("all")

    def route(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        """aiohttp's ``proxy`` and ``proxy_headers`` for ``url`` (credentials moved to Proxy-Authorization)."""
        proxy = self.proxy_for(url)
        if proxy is None:
            return None, None
        scheme, host, port, basic = proxy_auth(proxy)
        bracketed = f"[{host}]" if ":" in host else host
        return f"{scheme}://{bracketed}:{port}", ({"Proxy-Authorization": basic} if basic else None)

    def bypass(self, host: str, port: int | None = None) -> bool:
        """Whether ``host`` is listed in NO_PROXY."""
        if not self.no_proxy or not host:
            return False
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        for entry in self.no_proxy:
            if entry == "*":
                return True
            if address is not None:
                try:
                    if address in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
            name, _, entry_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
            if entry_port and port is not None and entry_port != str(port):
                continue
            name = name.lstrip(".").lstrip("*.")
            if name and (host == name or host.endswith("." + name)):
                return True
        return False

    def ssl_context(self) -> ssl.SSLContext:
        """The context every TLS connection uses: verification on, the chosen CA bundle."""
        if self._ssl is None:
            try:
                if self.ca_bundle is None:
                    context = ssl.create_default_context()
                elif os.path.isdir(self.ca_bundle):
                    context = ssl.create_default_context(capath=self.ca_bundle)
                else:
                    context = ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise UsageError(f"the CA bundle {self.ca_bundle} ({self.ca_source}) cannot be read: {reason}") from exc
            self._ssl = context
        return self._ssl

    def untrusted(self, host: str, port: int | None, exc: BaseException) -> TLSError:
        """The one sentence for a certificate that failed verification."""
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        where = f"{host}:{port}" if port else host
        return TLSError(
            f"the TLS certificate of {where} is not trusted ({reason}) by {self.ca_description}; "
            "give your network's CA bundle with --ca-bundle or REQUESTS_CA_BUNDLE"
        )

    @property
    def ca_description(self) -> str:
        if self.ca_bundle is None:
            return "the system's certificate authorities"
        return f"the CA bundle {self.ca_bundle} ({self.ca_source})"


def proxy_auth(proxy: str) -> tuple[str, str, int, str | None]:
    """``(scheme, host, port, "Basic …" or None)`` of a proxy URL (``http://user:pass@host:port``)."""
    import base64

    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if not parts.hostname:
        raise UsageError(f"proxy {proxy!r} names no host (expected http://host:port)")
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    basic = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return scheme, parts.hostname, port, basic


def _env(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name.lower()) or env.get(name.upper()) or None


def _env_proxies(env: Mapping[str, str]) -> dict[str, str]:
    if env is os.environ:
        found = urllib.request.getproxies_environment()  # as requests reads them (CGI's HTTP_PROXY ignored)
    else:
        found = {name: value for name in ("http", "https", "all") if (value := _env(env, f"{name}_proxy"))}
    return {k: v for k, v in found.items() if k in ("http", "https", "all") and v}


def _ca_bundle(option: str | None, env: Mapping[str, str]) -> tuple[str | None, str]:
    if option:
        return os.path.expanduser(option), "given as ca_bundle"
    for name in CA_VARIABLES:
        value = env.get(name)
        if value:
            return os.path.expanduser(value), f"from {name}"
    return None, "the system's"
