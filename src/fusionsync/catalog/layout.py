"""Where a distribution lives in a local mirror, and which distribution a local file is.

The naming is the official SDK's, so existing mirrors keep working:
file ``{dataset}__{catalog}__{series}.{format}`` (characters other than letters, digits,
``_`` and ``-`` in the stem replaced by ``_``), placed at
``{catalog}/{dataset}/{series}/{file}``, or ``{catalog}/{dataset}/{file}`` when flattened.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fusionsync.catalog.names import identifier_problem, plain_text

RECOGNIZED_FORMATS = frozenset(
    [
        "csv",
        "parquet",
        "psv",
        "json",
        "pdf",
        "txt",
        "doc",
        "docx",
        "htm",
        "html",
        "xls",
        "xlsx",
        "xlsm",
        "dot",
        "dotx",
        "docm",
        "dotm",
        "rtf",
        "odt",
        "xltx",
        "xlsb",
        "jpg",
        "jpeg",
        "bmp",
        "png",
        "tif",
        "gif",
        "mp3",
        "wav",
        "mp4",
        "mov",
        "mkv",
        "gz",
        "xml",
        "xltm",
        "pptx",
        "md",
        "ipynb",
        "css",
        "jsonl",
        "jsonld",
        "arrow",
        "m4a",
        "pdb",
        "sql",
        "sqlite",
        "tiff",
        "zip",
        "gtar",
        "tar",
    ]
)
"""File extensions that name a distribution format; others map to ``raw`` in raw datasets."""

_UNSAFE_STEM = re.compile(r"[^a-zA-Z0-9_\-]")
TEMP_MARK = ".fusionsync-tmp-"
"""Part of the name of every temporary file a transfer writes (always hidden: starts with a dot)."""
NAME_MAX = 255
"""The longest file name, in bytes, that common file systems (ext4, xfs, APFS, S3 keys' segments) take."""


def clean(text: str) -> str:
    """``text`` as it appears in a file name: what is not a letter, digit, ``_`` or ``-`` becomes ``_``
    (the SDK's ``_clean_filename``; folders keep the identifiers as they are)."""
    return _UNSAFE_STEM.sub("_", text)


def temp_name(name: str, token: str) -> str:
    """The hidden temporary name a transfer writes ``name`` under (``token`` makes it unique).

    Within :data:`NAME_MAX` bytes whatever the length of ``name``: a long name is cut (on a
    character boundary) to make room for the mark and the token.
    """
    suffix = f"{TEMP_MARK}{token}"
    room = NAME_MAX - 1 - len(suffix.encode())
    encoded = name.encode("utf-8", errors="surrogateescape")
    if len(encoded) > room:
        name = encoded[:room].decode("utf-8", errors="ignore")
    return f".{name}{suffix}"


PARTIAL = "partial"
"""The token of a download's resumable partial temporary (kept when a download is interrupted)."""
PARTIAL_RECORD = "partial.json"
"""The token of the record beside it: what the partial is of, and how much of it was written and read back."""


def partial_names(name: str) -> tuple[str, str]:
    """The names of the resumable partial of a download into ``name``, and of its record."""
    return temp_name(name, PARTIAL), temp_name(name, PARTIAL_RECORD)


def is_partial(name: str) -> bool:
    """Whether ``name`` is a download's resumable partial or its record (which a pass keeps for a while)."""
    return name.endswith((TEMP_MARK + PARTIAL, TEMP_MARK + PARTIAL_RECORD))


class DistKey(NamedTuple):
    """One distribution: catalog, dataset, series member and format.

    A named tuple: created and hashed in C, which counts when a pass compares 100,000 of them.
    """

    catalog: str
    dataset: str
    series: str
    format: str

    @property
    def remote_path(self) -> str:
        """The distribution's path on a FusionFileSystem."""
        return f"{self.catalog}/datasets/{self.dataset}/datasetseries/{self.series}/distributions/{self.format}"


def file_name(key: DistKey) -> str:
    """The local file name of a distribution."""
    return f"{clean(f'{key.dataset}__{key.catalog}__{key.series}')}.{key.format}"


def local_relative_path(key: DistKey, flatten: bool = False) -> str:
    """Where a downloaded distribution goes, relative to the local root."""
    if flatten:
        return f"{key.catalog}/{key.dataset}/{file_name(key)}"
    return f"{key.catalog}/{key.dataset}/{key.series}/{file_name(key)}"


class ParsedName(NamedTuple):
    """What a conforming local file name says: the distribution, with its raw extension."""

    key: DistKey
    extension: str


def parse_file_name(name: str, is_raw: bool = False) -> ParsedName | None:
    """The distribution a local file name stands for, or None when it does not conform.

    ``D__C__S.ext`` → catalog C, dataset D, series S, format ext (``raw`` for an extension that
    is not a known format when the dataset is raw). Hidden files (our temporaries among them)
    never conform.
    """
    if name.startswith("."):
        return None
    stem, dot, extension = name.partition(".")
    if not dot or not extension:
        return None
    parts = stem.split("__")
    if len(parts) != 3:
        return None
    dataset, catalog, series = parts
    fmt = extension.lower()
    if is_raw and fmt not in RECOGNIZED_FORMATS:
        fmt = "raw"
    values = (dataset, catalog, series, fmt)
    if plain_text(name):  # the common case: one scan of the whole name
        if "" in values or "." in values or ".." in values:
            return None
    elif any(identifier_problem(value) is not None for value in values):
        return None
    return ParsedName(DistKey(catalog, dataset, series, fmt), extension)


def naming_problem(name: str) -> str | None:
    """Why a file name is skipped on upload (a sentence for the user), None when it conforms."""
    if parse_file_name(name) is not None:
        return None
    return f"file name {name!r} does not follow dataset__catalog__series.format and is skipped"
