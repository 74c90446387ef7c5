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
from fusionsync.errors import EXIT_CODES, FusionSyncError, UsageError, exit_code

F = TypeVar("F", bound=Callable[..., Any])
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DEFAULT_CREDENTIALS = "config/client_credentials.json"


def fail(exc: BaseException) -> NoReturn:
    """Print one clear line and exit with the status that fits the error."""
    from fusionsync.sync.execute import describe

    if isinstance(exc, KeyboardInterrupt):  # before a pass began (a pass reports its own interruption)
        click.echo("fusionsync: interrupted before the sync began; nothing was done", err=True)
    else:
        click.echo(f"fusionsync: error: {describe(exc)}", err=True)
    sys.exit(exit_code(exc))


EXIT_STATUS_HELP = "\b\nExit status:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS_HELP)
@click.version_option(__version__, prog_name="fusionsync")
def main() -> None:
    """Keep folders and fsspec filesystems in sync with a Fusion data catalog."""


CA_BUNDLE = "fusionsync.ca_bundle"


def connection_options(fn: F) -> F:
    fn = click.option(
        "--ca-bundle",
        type=click.Path(exists=True),
        expose_value=False,  # kept in the context for make_fusion_fs: every command connects the same way
        callback=lambda ctx, _, value: ctx.meta.__setitem__(CA_BUNDLE, value),
        help="Certificate authorities (PEM file or folder) to verify the server with, e.g. your network's "
        "TLS-inspecting CA (default: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, else the system's). "
        "Proxies come from the credentials file's proxies, else HTTPS_PROXY/HTTP_PROXY (NO_PROXY respected).",
    )(fn)
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
    context = click.get_current_context(silent=True)
    ca_bundle = context.meta.get(CA_BUNDLE) if context is not None else None
    return FusionFileSystem(credentials=credentials, root_url=root_url, ca_bundle=ca_bundle)


def sync_options(fn: F) -> F:
    options = [
        click.argument("direction", type=click.Choice(["upload", "download"])),
        click.option(
            "--local-path",
            default="",
            help="Local root (a folder or an fsspec URL such as s3://bucket/). A download makes the folder if "
            "missing, but not the folders above it; an upload needs it to exist.",
        ),
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


def local_filesystem(local_path: str) -> Any:
    """The fsspec filesystem of ``--local-path`` (a folder or a URL), or one sentence saying why not."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(local_path or ".")[0]
    except ImportError as exc:
        raise UsageError(f"--local-path {local_path}: {exc}") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"--local-path {local_path} cannot be opened: {exc}") from exc


def _run_sync(processes: int | None = None, scheduler: str | None = None, **kw: Any) -> Any:
    from fusionsync.sync.executors import open_executor
    from fusionsync.sync.fsync import fsync

    local_path = kw.pop("local_path")
    fs_local = local_filesystem(local_path)
    fs_fusion = make_fusion_fs(kw.pop("credentials"), kw.pop("root_url"))
    with open_executor(processes, scheduler) as executor:
        return fsync(
            fs_fusion,
            fs_local,
            products=list(kw.pop("products")) or None,
            datasets=list(kw.pop("datasets")) or None,
            local_path=local_path,
            log_level=getattr(logging, kw.pop("log_level").upper()),
            executor=executor,
            **kw,
        )


@main.command(epilog=EXIT_STATUS_HELP)
@sync_options
@click.option("--once", is_flag=True, help="One pass, then exit (default: run until Ctrl+C or SIGTERM).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Continuous mode: seconds between full passes, the safety net (changes wake a pass sooner).",
)
@click.option(
    "--poll",
    is_flag=True,
    help="Continuous mode without change events or file watching: a pass every --interval only (for debugging).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be done; transfer nothing.")
@click.option("--delete", is_flag=True, help="Mirror: delete at the destination what the source no longer has.")
@click.option("--max-delete", type=click.IntRange(0), help="Refuse a pass that would delete more files.")
@click.option(
    "--allow-delete-all",
    is_flag=True,
    help="Let --delete remove every distribution of a dataset (refused otherwise: an empty or mistyped source).",
)
@click.option(
    "--backup-dir",
    help="Move local files changed since the last sync here before replacing them (never over an earlier backup).",
)
@click.option("--checksum", is_flag=True, help="Hash every local file again instead of trusting size and time.")
@click.option(
    "--processes",
    type=click.IntRange(1),
    help="Run the transfers in N worker processes of this machine (each with its own connections and event "
    "loop: for many small files), the plan made once here.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the transfers on a running Dask cluster (tcp://HOST:8786; needs pip install 'fusionsync[dask]'). "
    "Every worker must reach the server and --local-path (an s3:// bucket or a shared folder).",
)
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the report of each pass as one JSON object per line.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (passes, files, bytes, failures, conflicts, pass "
    "duration, last successful pass); 0 picks a free port.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port.")
def sync(no_progress: bool, as_json: bool, metrics_port: int | None, metrics_host: str, **kw: Any) -> None:
    """Sync Fusion datasets with a local folder, DIRECTION upload or download.

    Downloads go to LOCAL_PATH/CATALOG/DATASET/SERIES/DATASET__CATALOG__SERIES.FORMAT; uploads take
    every conforming file under LOCAL_PATH/CATALOG/DATASET/. Without --once, passes
    repeat until Ctrl+C or SIGTERM, and each pass that did something prints one line (or one JSON
    object with --json); a conflict is reported once. A download wakes up within a second of a change
    on the server (its change events), an upload within a second of a change under the dataset
    folders (file events); a full pass runs every --interval seconds in any case, and is all there is
    where the server has no change events, the local side is not a local folder, or with --poll.
    Changes on the destination since the last sync are never overwritten: they are kept and reported
    as conflicts (or backed up, with --backup-dir). With --processes or --scheduler the transfers run
    in batches on other processes or machines, with the same verification; the plan, the report and the
    cache stay here, and a batch whose worker dies is run again once, then reported failed.
    """
    once = kw["once"]

    def on_pass(report: Any, news: Any) -> None:
        _print_report(report, as_json, news.conflicts, news.warnings)

    metrics = None
    try:
        if metrics_port is not None:
            from fusionsync.sync.metrics import SyncMetrics

            metrics = SyncMetrics(kw["direction"])
            bound = metrics.serve(metrics_host, metrics_port)
            click.echo(f"metrics at http://{metrics_host}:{bound}/metrics", err=True)
        show = not no_progress and not as_json
        report = _run_sync(show_progress=show, on_pass=None if once else on_pass, metrics=metrics, **kw)
    except (FusionSyncError, OSError, KeyboardInterrupt) as exc:
        fail(exc)
    finally:
        if metrics is not None:
            metrics.close()
    if once:
        _print_report(report, as_json, report.conflicts, report.warnings)
    sys.exit(report.exit_code)


@main.command(epilog=EXIT_STATUS_HELP)
@sync_options
@click.option("--checksum", is_flag=True, help="Hash every local file again (finds silent corruption).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def check(as_json: bool, **kw: Any) -> None:
    """Compare local and remote without transferring; exit 1 when they differ.

    Each difference is printed as a line: '+' missing at the destination, '*' differs,
    '-' missing at the source, '!' a change a sync would keep (a conflict). With --checksum
    every local file is read and hashed again, so content that changed while its size and
    modification time did not (a flipped byte) is found too.
    """
    try:
        report = _run_sync(show_progress=False, once=True, dry_run=True, **kw)
    except (FusionSyncError, OSError, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        for line in report.plan_lines:
            click.echo(line)
        click.echo(f"{len(report.plan_lines)} differences, {report.skipped} in sync")
    if report.interrupted:
        sys.exit(report.exit_code)
    sys.exit(1 if report.plan_lines else 0)


def _print_report(report: Any, as_json: bool, conflicts: list[Any], warnings: list[str]) -> None:
    """One pass: JSON on one line, or its problems on stderr and a summary line on stdout."""
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    if report.dry_run:
        for line in report.plan_lines:
            click.echo(line)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for item in report.failed:
        click.echo(f"failed: {item.path}: {item.reason}", err=True)
    for item in conflicts:
        click.echo(f"kept: {item.path}: {item.reason}", err=True)
    for backup in report.backups:
        click.echo(f"backed up: {backup.path} -> {backup.backup}", err=True)
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
    help="The server's folder (its lock, signing key, clients and credentials file) and, unless --metadata or "
    "--blobs say otherwise, the catalog's database and file blobs; created if missing.",
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
    type=click.IntRange(1, 86400),
    help="Lifetime of issued tokens and of web sign-in sessions, in seconds (at most a day).",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Open connections per server process; past it, the oldest idle or half-sent one is closed.",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a request's line and headers may take to arrive (408 after).",
)
@click.option(
    "--read-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="A request body that brings less than 1 KiB in this many seconds is cut off.",
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
    help="Server processes sharing the port; any of them serves any request, and one that dies is replaced.",
)
@click.option(
    "--upload-expiry",
    default=86400,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds after which an unfinished upload with no activity is dropped (an S3 upload is aborted).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM certificate (chain) to serve HTTPS with; needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="PEM private key of --tls-cert."
)
@click.option("--log-level", default="WARNING", show_default=True, type=click.Choice(LEVELS, case_sensitive=False))
def serve(
    root: Path,
    host: str,
    port: int,
    no_auth: bool,
    page_size: int,
    token_ttl: int,
    max_connections: int,
    header_timeout: float,
    read_timeout: float,
    max_upload_size: int,
    metadata: str,
    blobs: str,
    workers: int,
    upload_expiry: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    log_level: str,
) -> None:
    """Run a Fusion-compatible catalog server under http://HOST:PORT/api/v1/ (https:// with --tls-cert), with a
    web catalog for people at http://HOST:PORT/ (sign in with a client's id and secret; read-only with
    --no-auth) and Prometheus metrics at /metrics.

    By default metadata lives in ROOT/catalog.sqlite and file blobs under ROOT/blobs; ROOT also holds the
    signing key, the clients (managed with fusionsync clients), the audit log and the server's lock (a second
    server on ROOT refuses to start). ROOT must be new, empty or a root of ours; it and everything in it is
    its owner's only. Unless --no-auth is given, a first start makes one admin client and writes its
    client_credentials.json to ROOT, ready for fusionsync or the official SDK.
    """
    from fusionsync.server import ServeError, ServerConfig, run

    if (tls_cert is None) != (tls_key is None):
        fail(UsageError("--tls-cert and --tls-key go together"))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = ServerConfig(
        root=root,
        host=host,
        port=port,
        auth=not no_auth,
        page_size=page_size,
        token_ttl=token_ttl,
        max_connections=max_connections,
        header_timeout=header_timeout,
        read_timeout=read_timeout,
        max_upload_bytes=max_upload_size,
        metadata=metadata,
        blobs=blobs,
        workers=workers,
        upload_expiry=upload_expiry,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )

    for warning in exposure_warnings(host, no_auth, tls=tls_cert is not None):
        click.echo(f"fusionsync: warning: {warning}", err=True)

    def ready(bound: int) -> None:
        auth = "authentication off" if no_auth else f"credentials in {root / 'client_credentials.json'}"
        click.echo(f"Serving Fusion API at {'https' if tls_cert else 'http'}://{host}:{bound}/api/v1/ ({auth})")
        sys.stdout.flush()

    try:
        run(config, ready)
    except (ServeError, ValueError) as exc:
        fail(UsageError(str(exc)))
    except OSError as exc:
        fail(UsageError(f"cannot serve from {root}: {exc.strerror or exc}"))


def exposure_warnings(host: str, no_auth: bool, tls: bool) -> list[str]:
    """What is unsafe about serving on ``host`` so: beyond loopback, without TLS or without authentication."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return []
    warnings = []
    if no_auth:
        warnings.append(f"--no-auth on {host}: anyone who reaches this address may read, change and delete everything")
    if not tls:
        warnings.append(f"serving {host} without TLS: secrets, tokens and data cross the network in clear text")
    return warnings


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

from fusionsync import cli_clients  # noqa: E402

for command in cli_clients.commands():
    main.add_command(command)
