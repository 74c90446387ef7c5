"""The Fusion-compatible catalog server (`fusionsync serve`)."""

from fusionsync.server.app import make_app
from fusionsync.server.common import ServerConfig
from fusionsync.server.runner import ServeError, run

__all__ = ["ServeError", "ServerConfig", "make_app", "run"]
