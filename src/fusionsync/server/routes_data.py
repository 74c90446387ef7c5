"""Distribution routes: listing, download (whole or ranged) and delete. A dataset's sample is the series
member ``sample``, also reached as ``datasets/{dataset}/sample/distributions/...`` (the SDK's URL for it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web

from fusionsync.server import models as m
from fusionsync.server.common import deleted, ident, page_answer, page_of, paged, require_series, state
from fusionsync.server.content import send, wanted_range
from fusionsync.server.errors import ApiError
from fusionsync.server.spec import BINARY, Answer, Api, H, Param
from fusionsync.server.store import BlobMissing, Distribution

api = Api()
DIST = "/api/v1/catalogs/{catalog}/datasets/{dataset}/datasetseries/{series}/distributions"
SAMPLE = "/api/v1/catalogs/{catalog}/datasets/{dataset}/{series:sample}/distributions"
NOT_FOUND = frozenset({404})
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "parquet": "application/parquet"}


def distribution_file_name(dist: Distribution) -> str:
    """The file name a distribution is known by (the SDK's naming when none was uploaded)."""
    return dist.file_name or f"{dist.dataset}__{dist.catalog}__{dist.series}.{dist.format}"


def content_disposition(name: str) -> str:
    """An attachment named ``name`` as RFC 6266 has it: ``filename*`` with the name percent-encoded in UTF-8,
    and a plain ``filename`` for old clients with every character that could end or escape it replaced."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def distribution_file_id(dist: Distribution) -> str:
    """The identifier of a distribution's one file: the uploaded name's stem, else the format."""
    if dist.file_name:
        return dist.file_name.rsplit(".", 1)[0] or dist.format
    return dist.format


def dist_meta(dist: Distribution) -> dict[str, Any]:
    return {
        "identifier": dist.format,
        "title": dist.format,
        "fileExtension": f".{dist.format}",
        "mediaType": MEDIA_TYPES.get(dist.format, "application/octet-stream"),
        "size": dist.size,
        "checksum": f"SHA-256={dist.checksum}",
        "digest": f"SHA-256={dist.digest}",
        "lastModified": dist.modified,
        "@id": f"{dist.format}/",
    }


def both(method: str, suffix: str, summary: str, answers: dict[int, Answer], **kw: Any) -> Callable[[H], H]:
    """Declare an operation on a series member's distributions and on the sample's."""

    def declare(handler: H) -> H:
        api.op(method, DIST + suffix, summary, answers, **kw)(handler)
        return api.op(method, SAMPLE + suffix, summary + " (the sample)", answers, **kw)(handler)

    return declare


RANGE_PARAMS = (
    Param(
        "downloadRange",
        "query",
        m.ByteRange,
        description="bytes=first-last (inclusive; 'first-' and '-suffix' as in a Range header): answered 206 with "
        "exactly those bytes, 416 when outside the content.",
    ),
    Param(
        "Range", "header", m.Printable, description="A standard Range header; downloadRange wins when both are sent."
    ),
)
FILE_HEADERS = ("Content-Length", "x-jpmc-checksum", "x-jpmc-checksum-algorithm")
CONTENT = {
    200: Answer("The whole content", bytes, BINARY, FILE_HEADERS),
    206: Answer("The requested range", bytes, BINARY, FILE_HEADERS),
}
DOWNLOAD = {"params": RANGE_PARAMS, "errors": frozenset({404, 416})}


@both(
    "GET",
    "",
    "List a series member's distributions",
    {200: Answer("One page", m.DistributionList)},
    paged=True,
    errors=NOT_FOUND,
)
async def list_distributions(request: web.Request) -> web.Response:
    catalog, dataset, series = await require_series(request)
    start, size = page_of(request)
    dists = await state(request).meta.distributions(catalog, dataset, series, start, size + 1)
    return page_answer(request, [dist_meta(d) for d in dists[:size]], len(dists) > size)


async def _require_distribution(request: web.Request) -> Distribution:
    catalog, dataset = ident(request, "catalog"), ident(request, "dataset")
    series, fmt = ident(request, "series", "series member"), ident(request, "format")
    dist = await state(request).meta.distribution(catalog, dataset, series, fmt)  # one query (every download)
    if dist is None:
        catalog, dataset, series = await require_series(request)  # which level is missing
        raise ApiError(404, f"distribution {fmt!r} not found in series member {series!r} of dataset {dataset!r}")
    return dist


# -- download --------------------------------------------------------------------------


@both(
    "GET",
    "/{format}",
    "Download a distribution (a plain GET on the distribution, as the SDK sometimes does)",
    CONTENT,
    **DOWNLOAD,
)
@both("HEAD", "/{format}", "Headers only (size and checksum): download a distribution", CONTENT, **DOWNLOAD)
@both("GET", "/{format}/operationType/download", "Download a distribution", CONTENT, **DOWNLOAD)
@both(
    "HEAD",
    "/{format}/operationType/download",
    "Headers only (size and checksum): download a distribution",
    CONTENT,
    **DOWNLOAD,
)
async def download(request: web.Request) -> web.StreamResponse:
    """The bytes of a distribution; ``downloadRange=bytes=a-b`` or a ``Range`` header for a part."""
    return await file_response(request, await _require_distribution(request))


@both("DELETE", "/{format}", "Delete a distribution", {200: Answer("Deleted", m.Deleted)}, errors=NOT_FOUND)
async def delete_distribution(request: web.Request) -> web.Response:
    dist = await _require_distribution(request)
    await state(request).meta.delete(dist.catalog, dist.dataset, dist.series, dist.format)
    return deleted(dist.format)


@both(
    "GET",
    "/{format}/files",
    "List the files of a distribution",
    {200: Answer("One page", m.FileList)},
    paged=True,
    errors=NOT_FOUND,
)
async def list_files(request: web.Request) -> web.Response:
    dist = await _require_distribution(request)
    file_id = distribution_file_id(dist)
    entry = {
        "identifier": file_id,
        "title": distribution_file_name(dist),
        "size": dist.size,
        "checksum": f"SHA-256={dist.checksum}",
        "@id": f"{file_id}/",
    }
    return paged(request, [entry])


FILE_PARAM = Param(
    "file", "query", str, description="A file identifier or title from the files listing (404 when it names no file)."
)
ONE_FILE = {"params": (FILE_PARAM, *RANGE_PARAMS), "errors": frozenset({404, 416})}


@both("GET", "/{format}/files/operationType/download", "Download one file of a distribution", CONTENT, **ONE_FILE)
@both(
    "HEAD",
    "/{format}/files/operationType/download",
    "Headers only (size and checksum): download one file of a distribution",
    CONTENT,
    **ONE_FILE,
)
async def download_file(request: web.Request) -> web.StreamResponse:
    dist = await _require_distribution(request)
    name = request.query.get("file")
    if name is not None and name not in (distribution_file_id(dist), distribution_file_name(dist)):
        raise ApiError(404, f"file {name!r} not found in distribution {dist.format!r}")
    return await file_response(request, dist)


async def file_response(request: web.Request, dist: Distribution) -> web.StreamResponse:
    headers = {
        "x-jpmc-checksum": dist.checksum,
        "x-jpmc-checksum-algorithm": "SHA-256",
        hdrs.CONTENT_TYPE: "application/octet-stream",
        hdrs.CONTENT_DISPOSITION: content_disposition(distribution_file_name(dist)),
    }
    span = wanted_range(request, dist.size)
    start, count = span if span is not None else (0, dist.size)
    if request.method == "HEAD":
        return await send(request, b"", dist.size, span, headers)
    try:
        content = await state(request).blobs.read(dist.blob, start, count)
    except BlobMissing as exc:  # replaced and collected after its grace period
        raise ApiError(404, "the distribution's file is gone; list the distribution again") from exc
    return await send(request, content, dist.size, span, headers)
