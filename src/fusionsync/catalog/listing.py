"""The change listing of a dataset, read: every distribution with its size, digest and modification time.

``GET {catalog}/datasets/changes?datasets={dataset}`` answers
``{"datasets": [{"key": D, "distributions": [{"key": "D/S/distribution.F", "values": [modified,
size, "SHA-256=digest", ...]}]}]}``; the SDK's filesystem hands the same object out as
``info(f"{catalog}/datasets/{dataset}")["changes"]``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple


class RemoteDistribution(NamedTuple):
    """One row of a dataset's change listing."""

    series: str
    format: str
    size: int
    digest: str
    modified: str


def parse_changes(data: Any, dataset: str) -> list[RemoteDistribution]:
    """The rows of a change listing answer; ValueError (one sentence) when it is not of that shape."""
    try:
        listing = data["datasets"]
        rows = listing[0]["distributions"] if listing else []
        out = []
        for row in rows:
            series, fmt = _key_parts(row["key"], dataset)
            values = row["values"]
            out.append(
                RemoteDistribution(series, fmt, int(values[1]), str(values[2]).split("SHA-256=")[-1], str(values[0]))
            )
        return out
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"unexpected answer ({type(exc).__name__}: {exc})") from exc


def _key_parts(key: str, dataset: str) -> tuple[str, str]:
    """``D/20240101/distribution.csv`` → (``20240101``, ``csv``).

    A key of another shape comes back whole as the series, which the sync then refuses as an
    unsafe name (with a warning) instead of failing the whole listing.
    """
    if not isinstance(key, str):
        raise TypeError(f"distribution key {key!r} is not a string")
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != dataset or not parts[2].startswith("distribution."):
        return key, ""
    return parts[1], parts[2].split(".", 1)[1]


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time such as ``2024-11-20T09:04:28Z`` (None: not one).

    A time without a zone is taken as UTC, as the change listing writes it.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def format_time(seconds: float) -> str:
    """``2024-11-20T09:04:28Z`` (UTC, to the second): how times are written in sentences and listings."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
