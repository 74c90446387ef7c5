"""The Fusion-compatible catalog server (`fusionsync serve`)."""

from fusionsync.server.app import make_app, run_server
from fusionsync.server.common import ServerConfig

__all__ = ["ServerConfig", "make_app", "run_server"]
