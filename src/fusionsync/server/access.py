"""The authorisation model: which role a request needs, in which catalog, and what the audit log keeps.

Every API path but the catalog listing lies in one catalog (``catalogs/{catalog}/...``). Reading (GET, HEAD)
needs ``read``; anything else (writes, uploads, deletes) needs ``write``; creating or deleting a catalog needs
``admin``. A client limited to some catalogs sees only those: others answer 404, as if they did not exist.
"""

from __future__ import annotations

from aiohttp import web

from fusionsync.server.clients import ADMIN, READ, WRITE, Client
from fusionsync.server.common import State
from fusionsync.server.errors import ApiError

CLIENT = "client"
"""Where a request keeps the client that sent it (a ``Client``; absent when authentication is off)."""
READING = frozenset({"GET", "HEAD", "OPTIONS"})


def needed(method: str, parts: list[str]) -> tuple[str, str | None]:
    """The role a request needs and the catalog it lies in (None: the catalog listing) for the path ``parts``
    after ``/api/v1/``."""
    catalog = parts[1] if len(parts) >= 2 and parts[0] == "catalogs" and parts[1] else None
    if method in READING:
        return READ, catalog
    if catalog is not None and (len(parts) == 2 or (len(parts) == 3 and parts[2] == "")):
        return ADMIN, catalog  # a catalog itself
    return WRITE, catalog


def authorise(request: web.Request, client: Client, parts: list[str]) -> None:
    """Refuse a request its client may not make (403; 404 for a catalog it may not see)."""
    role, catalog = needed(request.method, parts)
    if catalog is not None and not client.may(READ, catalog):
        raise ApiError(404, f"catalog {catalog!r} not found")
    if not client.may(role, catalog):
        raise ApiError(403, f"client {client.id!r} has role {client.role!r}; this request needs {role!r}")


def visible_catalogs(request: web.Request) -> frozenset[str] | None:
    """The catalogs the request's client may see (None: every one)."""
    client = request.get(CLIENT)
    return client.catalogs if isinstance(client, Client) else None


def audited(method: str, status: int) -> bool:
    """Whether a request's outcome goes to the audit log: every change tried, and every refusal."""
    return method not in READING or status in (401, 403)


def may(st: State, client_id: str | None, catalog: str, write: bool = False) -> bool:
    """Whether ``client_id`` (None: nobody signed in) may read ``catalog`` or, with ``write``, change what it
    holds: the one decision the web pages ask. With ``--no-auth`` everybody may read and nobody changes anything
    through the pages."""
    if not st.config.auth:
        return not write
    client = st.tokens.client(client_id) if client_id is not None else None
    return client is not None and client.may(WRITE if write else READ, catalog)


async def sign_in(st: State, client_id: str, secret: str, address: str | None) -> tuple[Client | None, float]:
    """Check a client's id and secret, for the token endpoint and the web sign-in alike: the client (None when
    refused) and, when failed tries from this client or address must wait first, the seconds left (nothing is
    checked then). Sign-ins and refusals go to the audit log; failures make the next try wait longer."""
    keys = [f"client:{client_id}", f"address:{address}"]
    audit = {"client": client_id[:200], "address": address}
    wait = st.backoff.wait(keys)
    if wait > 0:  # counted per address: a flood may name a new client each time
        st.audit.refused("sign-in refused", None, address, 429, tried=client_id[:200], reason="too many failed tries")
        return None, wait
    client = await st.tokens.sign_in(client_id, secret)
    if client is None:
        st.backoff.failed(keys)
        st.audit.record("sign-in refused", **audit, status=401, reason="unknown client or wrong secret")
        return None, 0.0
    st.backoff.succeeded(keys)
    st.audit.record("sign-in", **audit, status=200)
    return client, 0.0
