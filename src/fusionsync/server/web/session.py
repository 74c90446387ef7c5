"""Signing in to the web pages with a client's credentials, the session cookie, and the checks on writes.

A session is a signed token (``auth.TokenAuthority``, kind ``web``) in a cookie that scripts cannot read
(HttpOnly), that other sites' requests do not carry (SameSite=Strict) and, under TLS, that only travels
encrypted (Secure); it lasts ``--token-ttl`` seconds, until its client is removed or its secret rotated, or until
it signs out: signing out records the session's id as revoked in the metadata store (until the session would
have ended), so a copy of the cookie is refused by every worker process and every server sharing the database.
A page request looks its session up there once (an API request never does).
Every write a page makes is a POST that carries the session's CSRF token (derived from the cookie, which other
sites cannot read) and, when the browser says where it comes from (``Origin``, ``Sec-Fetch-Site``), comes from
this site. Pages change the catalog through the API, with an API token that ``POST /session/token`` issues to
the signed-in client. The secret travels only in the sign-in form's body; nothing here logs a request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from fusionsync.server.access import may, sign_in
from fusionsync.server.auth import API, Claims
from fusionsync.server.common import json_response, state

COOKIE = "fusionsync_session"
WEB = "web"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
VIEWER = "fusionsync.viewer"
"""Where a request keeps its viewer once known (an error page asks again)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a page: a signed-in client, or nobody when authentication is off."""

    client: str | None
    csrf: str
    auth: bool
    session: Claims | None = None

    @property
    def signed_in(self) -> bool:
        return self.client is not None


class Forbidden(web.HTTPForbidden):
    """A write refused: not from this site, or without the session's CSRF token."""


def csrf_token(session: str) -> str:
    return hashlib.sha256(b"fusionsync csrf " + session.encode()).hexdigest()


async def viewer(request: web.Request) -> Viewer | None:
    """The viewer of ``request``: None when authentication is on and there is no valid session (none, expired,
    of a removed client or signed out; a session of an earlier release, without an id, signs in again)."""
    if VIEWER not in request:
        request[VIEWER] = await _viewer(request)
    found: Viewer | None = request[VIEWER]
    return found


async def _viewer(request: web.Request) -> Viewer | None:
    st = state(request)
    if not st.config.auth:
        return Viewer(None, "", False)
    session = request.cookies.get(COOKIE, "")
    claims = st.tokens.verify(session, WEB) if session else None
    if claims is None or not claims.id or await st.meta.session_revoked(claims.id):
        return None
    return Viewer(claims.subject, csrf_token(session), True, claims)


async def require_viewer(request: web.Request) -> Viewer:
    """The viewer, or a redirect to the sign-in page (which then comes back here)."""
    found = await viewer(request)
    if found is None:
        raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='/')}")
    return found


def may_write(request: web.Request, who: Viewer, catalog: str) -> bool:
    return may(state(request), who.client, catalog, write=True)


def same_site(request: web.Request) -> None:
    """Refuse a request another site made (as far as the browser tells: Origin, Sec-Fetch-Site)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden(text="refused: the request comes from another site")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden(text="refused: the request comes from another site")


async def check_write(request: web.Request, given: str | None) -> Viewer:
    """The signed-in viewer of a write request that carries its CSRF token and comes from this site."""
    same_site(request)
    who = await viewer(request)
    if who is None or not who.signed_in:
        raise Forbidden(text="sign in first")
    _check_csrf(who, given)
    return who


def _check_csrf(who: Viewer, given: str | None) -> None:
    if not given or not hmac.compare_digest(given, who.csrf):
        raise Forbidden(text="refused: the request does not carry this session's CSRF token")


def next_path(value: object) -> str:
    """Where to go after signing in: a path of this site only."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def signin(request: web.Request) -> web.StreamResponse:
    """Check the posted client id and secret; on success set the session cookie and go on."""
    from fusionsync.server.web.render import render

    same_site(request)
    st = state(request)
    form = await request.post()
    target = next_path(form.get("next"))
    if not st.config.auth:
        raise web.HTTPSeeOther(target)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        return render(request, "signin.html", None, 401, next=target, problem="Unknown client or wrong secret.")
    client, wait = await sign_in(st, client_id, secret, request.remote)
    if wait > 0:
        problem = f"Too many failed sign-ins: try again in {math.ceil(wait)} s."
        return render(request, "signin.html", None, 429, next=target, problem=problem)
    if client is None:
        return render(request, "signin.html", None, 401, next=target, problem="Unknown client or wrong secret.")
    answer = web.HTTPSeeOther(target)
    answer.set_cookie(
        COOKIE,
        st.tokens.issue(client_id, WEB),
        max_age=st.tokens.ttl,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise answer


async def signout(request: web.Request) -> web.StreamResponse:
    """End the session for good: its id is revoked (a copy of the cookie no longer signs anyone in) and the
    browser drops the cookie. Without a valid session there is nothing to end: the browser drops the cookie."""
    same_site(request)
    form = await request.post()
    field = form.get(CSRF_FIELD)
    who = await viewer(request)
    if who is not None and who.session is not None:
        _check_csrf(who, field if isinstance(field, str) else None)
        st = state(request)
        await st.meta.revoke_session(who.session.id, who.session.expires)
        st.audit.record("sign-out", client=who.client, address=request.remote, session=who.session.id, status=303)
    answer = web.HTTPSeeOther("/signin")
    answer.del_cookie(COOKIE, path="/")
    raise answer


async def session_token(request: web.Request) -> web.Response:
    """An API token for the signed-in client, for the page's own calls to the API (uploads, new datasets)."""
    who = await check_write(request, request.headers.get(CSRF_HEADER))
    assert who.client is not None
    tokens = state(request).tokens
    answer = json_response({"access_token": tokens.issue(who.client, API), "expires_in": tokens.ttl})
    answer.headers["Cache-Control"] = "no-store"
    return answer
