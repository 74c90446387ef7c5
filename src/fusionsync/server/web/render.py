"""Pages from Jinja2 templates: every value is escaped (autoescape), URLs are built from quoted segments."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from fusionsync import __version__
from fusionsync.server.web.session import Viewer

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # scripts and styles from this site only (no inline script can run, whatever a value holds)
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def human_size(n: object) -> str:
    """Bytes for people: ``1.5 MiB``."""
    if not isinstance(n, int):
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def segment(value: object) -> str:
    """A path segment, quoted whole (identifiers may hold spaces, ``?``, ``#``...)."""
    return quote(str(value), safe="")


def is_simple(value: object) -> bool:
    """A value to show as it is (text, a number, a flag), not as structure."""
    return value is None or isinstance(value, str | int | float | bool)


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment, made on first use (importing Jinja2 costs server start-up time)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["size"] = human_size
    env.filters["seg"] = segment
    env.tests["simple"] = is_simple
    env.globals["version"] = __version__
    return env


def render(request: web.Request, template: str, who: Viewer | None, status: int = 200, **context: Any) -> web.Response:
    """The page ``template`` for ``who``."""
    body = environment().get_template(template).render(who=who, path=request.path_qs, **context)
    return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)
