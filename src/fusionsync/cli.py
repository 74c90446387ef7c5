"""The ``fusionsync`` command: serve, demo (sync and ls arrive with the client)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from fusionsync import __version__


def _parse_clients(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    clients: dict[str, str] = {}
    for value in values:
        client_id, sep, secret = value.partition(":")
        if not sep or not client_id or not secret:
            raise click.BadParameter(f"{value!r} is not of the form ID:SECRET", param_hint="--client")
        clients[client_id] = secret
    return clients


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fusionsync")
def main() -> None:
    """Keep folders and fsspec filesystems in sync with a Fusion data catalog."""


@main.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder holding the catalog (metadata database and file blobs); created if missing.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@click.option("--no-auth", is_flag=True, help="Accept every request without a token (purely local use).")
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="ID:SECRET",
    help="An OAuth2 client allowed to get tokens (repeatable). Default: ROOT/clients.json, "
    "created with one random client when missing.",
)
@click.option(
    "--page-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Items per page of a collection (x-jpmc-next-token paging).",
)
@click.option(
    "--token-ttl",
    default=3600,
    show_default=True,
    type=click.IntRange(1),
    help="Lifetime of issued tokens, in seconds.",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def serve(
    root: Path,
    host: str,
    port: int,
    no_auth: bool,
    clients: tuple[str, ...],
    page_size: int,
    token_ttl: int,
    log_level: str,
) -> None:
    """Run a Fusion-compatible catalog server under http://HOST:PORT/api/v1/.

    Metadata lives in ROOT/catalog.sqlite, file blobs under ROOT/blobs. Unless --no-auth is given,
    a client_credentials.json for the first client is written to ROOT, ready for fusionsync or the
    official SDK.
    """
    from fusionsync.server import ServerConfig, run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = ServerConfig(
        root=root,
        host=host,
        port=port,
        auth=not no_auth,
        page_size=page_size,
        token_ttl=token_ttl,
        clients=_parse_clients(clients),
    )

    def ready(bound: int) -> None:
        auth = "authentication off" if no_auth else f"credentials in {root / 'client_credentials.json'}"
        click.echo(f"Serving Fusion API at http://{host}:{bound}/api/v1/ ({auth})")
        sys.stdout.flush()

    asyncio.run(run_server(config, ready))


@main.command()
def demo() -> None:
    """Start a server with a sample catalog, show it, and stop."""
    from fusionsync.demo import run_demo

    sys.exit(run_demo())
