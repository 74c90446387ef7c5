"""Who may read or change a catalog: the one decision the web pages ask (and the place a finer model plugs in).

Today a signed-in client (one of the server's configured clients) may read and change every catalog; with
``--no-auth`` everybody may read and nobody changes anything through the web pages. Writes made from a page
go through the API with a token issued to the signed-in client, so whatever the API decides for that client
applies to them as well.
"""

from __future__ import annotations

from fusionsync.server.common import State


def may(st: State, client: str | None, catalog: str, write: bool = False) -> bool:
    """Whether ``client`` (None: nobody signed in) may read ``catalog`` or, with ``write``, change it."""
    if not st.config.auth:
        return not write
    return client is not None
