"""The web catalog: pages for people at ``/`` (the API stays under ``/api/v1/``), server-rendered from Jinja2
templates with a little JavaScript (``static/app.js``: uploads and new datasets, through the API)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from fusionsync.server.errors import ApiError
from fusionsync.server.web import pages, session
from fusionsync.server.web.render import HERE, render
from fusionsync.server.web.session import viewer

log = logging.getLogger("fusionsync.server")
API_PREFIX = "/api/v1/"
NOT_PAGES = frozenset({"/oauth2/token", "/session/token", "/metrics"})
"""Routes outside the API that answer JSON or text, not pages."""
C = "/catalogs/{catalog}"


async def signin_page(request: web.Request) -> web.Response:
    return render(request, "signin.html", None, next=session.next_path(request.query.get("next")), problem=None)


async def _viewer(request: web.Request) -> session.Viewer | None:
    """The viewer, for an error page: nobody when even that cannot be known (the metadata store fails)."""
    try:
        return await viewer(request)
    except Exception:
        return None


@web.middleware
async def html_errors(request: web.Request, handler: pages.Handler) -> web.StreamResponse:
    """Errors of the pages as pages (those of the API stay JSON)."""
    if request.path.startswith(API_PREFIX) or request.path in NOT_PAGES:
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return render(request, "error.html", await _viewer(request), exc.status, message=exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return render(request, "error.html", await _viewer(request), exc.status, message=exc.text or exc.reason)
    except (asyncio.CancelledError, ConnectionError, web.RequestPayloadError):
        raise  # the last one: a 400 from the outer middleware
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return render(request, "error.html", await _viewer(request), 500, message="Internal server error.")


def register(app: web.Application) -> None:
    """Add the pages to ``app``."""
    get = app.router.add_get
    get("/", pages.index)
    get("/search", pages.search)
    get("/status", pages.status)
    get(C, pages.catalog_page)
    get(C + "/products/{product}", pages.product_page)
    get(C + "/datasets/{dataset}", pages.dataset_page)
    get(C + "/datasets/{dataset}/series/{series}", pages.series_page)
    get("/download" + C + "/{dataset}/{series}/{format}", pages.download)
    get("/signin", signin_page)
    app.router.add_post("/signin", session.signin)
    app.router.add_post("/signout", session.signout)
    app.router.add_post("/session/token", session.session_token)
    app.router.add_static("/static/", HERE / "static", append_version=False)
