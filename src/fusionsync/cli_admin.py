"""``fusionsync create ...`` and ``fusionsync delete ...``: administer a catalog through its API, with the
credentials and options of every other command (registered on the ``fusionsync`` group by ``cli``)."""

from __future__ import annotations

from typing import Any

import click

from fusionsync.catalog.names import InvalidIdentifier, check_identifier
from fusionsync.cli import connection_options as connection
from fusionsync.cli import fail, make_fusion_fs
from fusionsync.errors import FusionSyncError, UsageError


def _call(credentials: str, root_url: str | None, method: str, path: str, what: str, body: Any = None) -> None:
    """One API call through the client (tokens, retries, errors as one sentence); an error ends the command."""
    from fsspec.asyn import sync

    try:
        fs = make_fusion_fs(credentials, root_url)
        try:
            sync(fs.loop, fs.http.call, method, path, what, json_body=body)
        finally:
            fs.close()
    except FusionSyncError as exc:
        fail(exc)


def _names(**names: str | tuple[str, ...]) -> None:
    """Every identifier given must be a safe one (exit 2 otherwise)."""
    try:
        for kind, value in names.items():
            for name in (value,) if isinstance(value, str) else value:
                check_identifier(name, kind.rstrip("s"))
    except InvalidIdentifier as exc:
        fail(UsageError(str(exc)))


def _meta(title: str | None, description: str | None) -> dict[str, Any]:
    return {k: v for k, v in (("title", title), ("description", description)) if v is not None}


@click.group()
def create() -> None:
    """Create a catalog, product or dataset (exit 1 when it exists already, 2 on a bad name)."""


@click.group()
def delete() -> None:
    """Delete a catalog (when empty), product or dataset (with its series members and files)."""


@create.command("catalog")
@click.argument("catalog")
@click.option("--title", help="Title (default: the identifier).")
@click.option("--description", help="Description.")
@connection
def create_catalog(
    catalog: str, title: str | None, description: str | None, credentials: str, root_url: str | None
) -> None:
    """Create CATALOG."""
    _names(catalog=catalog)
    _call(credentials, root_url, "POST", catalog, f"catalog {catalog!r}", _meta(title, description))
    click.echo(f"created catalog {catalog}")


@create.command("product")
@click.argument("catalog")
@click.argument("product")
@click.option("--dataset", "datasets", multiple=True, help="A dataset the product contains (repeatable; must exist).")
@click.option("--title", help="Title (default: the identifier).")
@click.option("--description", help="Description.")
@connection
def create_product(
    catalog: str,
    product: str,
    datasets: tuple[str, ...],
    title: str | None,
    description: str | None,
    credentials: str,
    root_url: str | None,
) -> None:
    """Create PRODUCT in CATALOG."""
    _names(catalog=catalog, product=product, datasets=datasets)
    body = {**_meta(title, description), **({"dataset": list(datasets)} if datasets else {})}
    _call(credentials, root_url, "POST", f"{catalog}/products/{product}", f"product {product!r}", body)
    click.echo(f"created product {catalog}/{product}")


@create.command("dataset")
@click.argument("catalog")
@click.argument("dataset")
@click.option("--product", "products", multiple=True, help="A product the dataset joins (repeatable; must exist).")
@click.option("--title", help="Title (default: the identifier).")
@click.option("--description", help="Description.")
@click.option("--raw", is_flag=True, help="Raw data: files of any extension (format 'raw'); default: tabular.")
@connection
def create_dataset(
    catalog: str,
    dataset: str,
    products: tuple[str, ...],
    title: str | None,
    description: str | None,
    raw: bool,
    credentials: str,
    root_url: str | None,
) -> None:
    """Create DATASET in CATALOG."""
    _names(catalog=catalog, dataset=dataset, products=products)
    body = {**_meta(title, description), "isRawData": raw, **({"product": list(products)} if products else {})}
    _call(credentials, root_url, "POST", f"{catalog}/datasets/{dataset}", f"dataset {dataset!r}", body)
    click.echo(f"created dataset {catalog}/{dataset}")


@delete.command("catalog")
@click.argument("catalog")
@connection
def delete_catalog(catalog: str, credentials: str, root_url: str | None) -> None:
    """Delete CATALOG, which must be empty."""
    _names(catalog=catalog)
    _call(credentials, root_url, "DELETE", catalog, f"catalog {catalog!r}")
    click.echo(f"deleted catalog {catalog}")


@delete.command("product")
@click.argument("catalog")
@click.argument("product")
@connection
def delete_product(catalog: str, product: str, credentials: str, root_url: str | None) -> None:
    """Delete PRODUCT from CATALOG (its datasets stay)."""
    _names(catalog=catalog, product=product)
    _call(credentials, root_url, "DELETE", f"{catalog}/products/{product}", f"product {product!r}")
    click.echo(f"deleted product {catalog}/{product}")


@delete.command("dataset")
@click.argument("catalog")
@click.argument("dataset")
@connection
def delete_dataset(catalog: str, dataset: str, credentials: str, root_url: str | None) -> None:
    """Delete DATASET from CATALOG, with its series members and files."""
    _names(catalog=catalog, dataset=dataset)
    _call(credentials, root_url, "DELETE", f"{catalog}/datasets/{dataset}", f"dataset {dataset!r}")
    click.echo(f"deleted dataset {catalog}/{dataset}")


def commands() -> list[click.Command]:
    """The commands this module adds to ``fusionsync``."""
    return [create, delete]
