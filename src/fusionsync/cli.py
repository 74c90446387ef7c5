"""The ``fusionsync`` command: sync, check, ls, serve, demo (and create/delete, from ``cli_admin``)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from fusionsync import __version__
from fusionsync.errors import FusionSyncError, UsageError, exit_code

F = TypeVar("F", bound=Callable[..., Any])
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DEFAULT_CREDENTIALS = "config/client_credentials.json"


def fail(exc: BaseException) -> NoReturn:
    """Print one clear line and exit with the status that fits the error."""
    click.echo(f"fusionsync: error: {exc}", err=True)
    sys.exit(exit_code(exc))


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


def connection_options(fn: F) -> F:
    fn = click.option(
        "--root-url",
        envvar="FUSION_ROOT_URL",
        help="API root, e.g. http://127.0.0.1:8765/api/v1/ (default: the credentials file's root_url).",
    )(fn)
    return click.option(
        "--credentials",
        envvar="FUSION_CREDENTIALS",
        default=DEFAULT_CREDENTIALS,
        show_default=True,
        help="client_credentials.json in the official SDK's format.",
    )(fn)


def make_fusion_fs(credentials: str, root_url: str | None) -> Any:
    from fusionsync.client import FusionFileSystem

    if not Path(credentials).is_file():
        raise UsageError(f"credentials file {credentials} not found (give --credentials FILE)")
    return FusionFileSystem(credentials=credentials, root_url=root_url)


def sync_options(fn: F) -> F:
    options = [
        click.argument("direction", type=click.Choice(["upload", "download"])),
        click.option("--local-path", default="", help="Local root (a folder or an fsspec URL such as s3://bucket/)."),
        click.option("--catalog", default="common", show_default=True, help="Fusion catalog."),
        click.option("--dataset", "datasets", multiple=True, help="Dataset to sync (repeatable)."),
        click.option("--product", "products", multiple=True, help="Product whose datasets to sync (repeatable)."),
        click.option("--flatten", is_flag=True, help="No series folder: {catalog}/{dataset}/{file}."),
        click.option("--format", "dataset_format", help="Only distributions of this format (csv, parquet, ...)."),
        click.option("--n-par", type=click.IntRange(1), default=8, show_default=True, help="Transfers at once."),
        click.option("--log-level", default="WARNING", show_default=True, type=click.Choice(LEVELS, False)),
        click.option("--log-path", default=".", show_default=True, help="Folder of fusion_fsync.log."),
        connection_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_sync(**kw: Any) -> Any:
    from fusionsync.sync.fsync import fsync

    fs_fusion = make_fusion_fs(kw.pop("credentials"), kw.pop("root_url"))
    import fsspec

    local_path = kw.pop("local_path")
    fs_local = fsspec.core.url_to_fs(local_path or ".")[0]
    return fsync(
        fs_fusion,
        fs_local,
        products=list(kw.pop("products")) or None,
        datasets=list(kw.pop("datasets")) or None,
        local_path=local_path,
        log_level=getattr(logging, kw.pop("log_level").upper()),
        **kw,
    )


@main.command()
@sync_options
@click.option("--once", is_flag=True, help="One pass, then exit (default: repeat every --interval seconds).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be done; transfer nothing.")
@click.option("--delete", is_flag=True, help="Mirror: delete at the destination what the source no longer has.")
@click.option("--max-delete", type=click.IntRange(0), help="Refuse a pass that would delete more files.")
@click.option("--backup-dir", help="Move local files changed since the last sync here before replacing them.")
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the report of each pass as JSON.")
def sync(no_progress: bool, as_json: bool, **kw: Any) -> None:
    """Sync Fusion datasets with a local folder, DIRECTION upload or download.

    Downloads go to LOCAL_PATH/{catalog}/{dataset}/{series}/{dataset}__{catalog}__{series}.{format};
    uploads take every conforming file under LOCAL_PATH/{catalog}/{dataset}/. Exit status: 0 when
    everything is in sync, 1 when items failed or were kept as conflicts, 2 on bad usage.
    """
    try:
        report = _run_sync(show_progress=not no_progress and not as_json, **kw)
    except FusionSyncError as exc:
        fail(exc)
    if report is None:
        sys.exit(0)
    _print_report(report, as_json)
    sys.exit(0 if report.ok else 1)


@main.command()
@sync_options
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def check(as_json: bool, **kw: Any) -> None:
    """Compare local and remote without transferring; exit 1 when they differ.

    Each difference is printed as a line: '+' missing at the destination, '*' differs,
    '-' missing at the source, '!' a local change a sync would keep.
    """
    try:
        report = _run_sync(show_progress=False, once=True, dry_run=True, **kw)
    except FusionSyncError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.plan_lines:
            click.echo(line)
        click.echo(f"{len(report.plan_lines)} differences, {report.skipped} in sync")
    sys.exit(1 if report.plan_lines else 0)


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    if report.dry_run:
        for line in report.plan_lines:
            click.echo(line)
    for item in report.failed:
        click.echo(f"failed: {item.path}: {item.reason}", err=True)
    for item in report.conflicts:
        click.echo(f"kept: {item.path}: {item.reason}", err=True)
    click.echo(report.summary())


@main.command()
@click.argument("path", default="")
@connection_options
@click.option("-l", "--long", is_flag=True, help="Show sizes and types.")
def ls(path: str, credentials: str, root_url: str | None, long: bool) -> None:
    """List a Fusion path: catalogs, then CATALOG/datasets, .../datasetseries, .../distributions."""
    try:
        fs = make_fusion_fs(credentials, root_url)
        entries = fs.ls(path, detail=True)
    except FusionSyncError as exc:
        fail(exc)
    for entry in entries:
        if long:
            size = "" if entry.get("size") is None else str(entry["size"])
            click.echo(f"{entry['type'][:3]:3} {size:>12}  {entry['name']}")
        else:
            click.echo(entry["name"])


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
    "--max-upload-size",
    default=64 * 2**30,
    show_default=True,
    type=click.IntRange(1),
    help="Largest single-request upload, in bytes (413 above it). Multipart uploads are bounded by "
    "their 10,000 parts of at most 5 GiB.",
)
@click.option(
    "--metadata",
    metavar="URL",
    default="",
    help="Where the catalog's metadata lives: sqlite:///PATH (default: sqlite:///ROOT/catalog.sqlite) or "
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (its schema is created and migrated by the server).",
)
@click.option(
    "--blobs",
    metavar="FOLDER|URL",
    default="",
    help="Where file bytes live: a folder (default: ROOT, under ROOT/blobs) or s3://BUCKET[/PREFIX] (endpoint, "
    "region and keys from the standard AWS variables and files, AWS_ENDPOINT_URL included).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port; any of them serves any request.",
)
@click.option(
    "--upload-expiry",
    default=86400,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds after which an unfinished upload with no activity is dropped (an S3 upload is aborted).",
)
@click.option("--log-level", default="WARNING", show_default=True, type=click.Choice(LEVELS, case_sensitive=False))
def serve(
    root: Path,
    host: str,
    port: int,
    no_auth: bool,
    clients: tuple[str, ...],
    page_size: int,
    token_ttl: int,
    max_upload_size: int,
    metadata: str,
    blobs: str,
    workers: int,
    upload_expiry: int,
    log_level: str,
) -> None:
    """Run a Fusion-compatible catalog server under http://HOST:PORT/api/v1/.

    By default metadata lives in ROOT/catalog.sqlite and file blobs under ROOT/blobs; ROOT also holds the
    signing key, the clients and the server's lock (a second server on ROOT refuses to start). Unless
    --no-auth is given, a client_credentials.json for the first client is written to ROOT, ready for
    fusionsync or the official SDK.
    """
    from fusionsync.server import ServeError, ServerConfig, run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = ServerConfig(
        root=root,
        host=host,
        port=port,
        auth=not no_auth,
        page_size=page_size,
        token_ttl=token_ttl,
        clients=_parse_clients(clients),
        max_upload_bytes=max_upload_size,
        metadata=metadata,
        blobs=blobs,
        workers=workers,
        upload_expiry=upload_expiry,
    )

    def ready(bound: int) -> None:
        auth = "authentication off" if no_auth else f"credentials in {root / 'client_credentials.json'}"
        click.echo(f"Serving Fusion API at http://{host}:{bound}/api/v1/ ({auth})")
        sys.stdout.flush()

    try:
        run(config, ready)
    except (ServeError, ValueError) as exc:
        fail(UsageError(str(exc)))
    except OSError as exc:
        fail(UsageError(f"cannot serve from {root}: {exc.strerror or exc}"))


@main.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the demo's folders here.")
def demo(keep: Path | None) -> None:
    """A real server, a sample catalog, syncs down and up with progress, and a summary."""
    from fusionsync.demo import run_demo

    os.environ.setdefault("FUSIONSYNC_DEMO", "1")
    sys.exit(run_demo(keep))


from fusionsync import cli_admin  # noqa: E402  (its commands use the options above)

for command in cli_admin.commands():
    main.add_command(command)
