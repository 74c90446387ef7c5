"""The Fusion-compatible catalog server (`fusionsync serve`).

Its names are imported when first used: ``fusionsync clients ...`` reads the clients file without loading the
web application.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fusionsync.server.app import make_app
    from fusionsync.server.common import ServerConfig
    from fusionsync.server.runner import ServeError, run

_HOMES = {
    "make_app": "fusionsync.server.app",
    "ServerConfig": "fusionsync.server.common",
    "ServeError": "fusionsync.server.runner",
    "run": "fusionsync.server.runner",
}

__all__ = ["ServeError", "ServerConfig", "make_app", "run"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fusionsync.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
