"""Change events of a catalog, as typed values: a subscription to ``catalogs/{catalog}/notifications/subscribe``
(server-sent events) that reconnects by itself and resumes where it left off (``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from fusionsync.client.http import Http, Retryable
from fusionsync.errors import APIError, AuthError, NotFoundError, TransferError

log = logging.getLogger("fusionsync")
Kind = Literal["created", "replaced", "deleted", "reset"]
KINDS: dict[str, Kind] = {
    "DistributionCreated": "created",
    "DistributionReplaced": "replaced",
    "DistributionDeleted": "deleted",
    "ResetNotification": "reset",
}


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A distribution created, replaced or deleted; or ``reset``: events may have been missed (the server
    restarted, or the gap was too long), so whatever mirrors the catalog must list it again."""

    kind: Kind
    id: str
    timestamp: str
    catalog: str
    dataset: str = ""
    series: str = ""
    format: str = ""
    size: int | None = None
    digest: str | None = None

    @property
    def path(self) -> str:
        """The distribution's path in ``FusionFileSystem`` (empty for ``reset``)."""
        if self.kind == "reset":
            return ""
        return f"{self.catalog}/datasets/{self.dataset}/datasetseries/{self.series}/distributions/{self.format}"


def parse_event(data: str) -> ChangeEvent | None:
    """The event an SSE message's data holds; None for heartbeats and kinds this client does not know."""
    try:
        body = json.loads(data)
        kind = KINDS.get(body.get("type"))
        if kind is None:
            return None
        meta: dict[str, Any] = body.get("metaData") or {}
        size = meta.get("size")
        return ChangeEvent(
            kind,
            str(body.get("id", "")),
            str(body.get("timestamp", "")),
            str(meta.get("catalog", body.get("catalog", ""))),
            str(meta.get("dataset", "")),
            str(meta.get("series", "")),
            str(meta.get("format", "")),
            size if isinstance(size, int) else None,
            meta.get("digest"),
        )
    except (ValueError, AttributeError) as exc:
        log.warning("ignoring an event that cannot be read (%s): %.200s", exc, data)
        return None


async def messages(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """(id, data) of each server-sent message of a stream (the id is the last one given, as SSE says; a
    message with an id and no data, which only moves the stream's position, comes with empty data)."""
    last_id = ""
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data or last_id:
                yield last_id, "\n".join(data)
            data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value


async def subscribe(
    http: Http,
    catalog: str,
    last_event_id: str | None = None,
    retry: float = 1.0,
    on_connect: Callable[[], None] | None = None,
) -> AsyncIterator[ChangeEvent]:
    """Every change event of ``catalog`` from now on (or after ``last_event_id``), for as long as the
    caller iterates. A dropped connection is made again after ``retry`` seconds (doubling up to 30 s),
    resuming after the last event received; a missing catalog or a refused token ends it with an error,
    as does a server that answers with anything but an event stream. ``on_connect`` is called each
    time the stream is established (the server sends every change from then on)."""
    what = f"change events of catalog {catalog!r}"
    delay = retry
    while True:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            async with http.stream("GET", f"{catalog}/notifications/subscribe", what, headers=headers) as resp:
                if not resp.content_type.startswith("text/event-stream"):
                    raise APIError(f"{what}: the server does not stream events (Content-Type {resp.content_type})")
                delay = retry
                if on_connect is not None:
                    on_connect()
                async for event_id, data in messages(resp.content):
                    if event_id:
                        last_event_id = event_id
                    event = parse_event(data) if data else None
                    if event is not None:
                        yield event
        except (AuthError, NotFoundError):
            raise
        except (aiohttp.ClientError, ConnectionError, TimeoutError, Retryable, TransferError) as exc:
            log.info("%s: %s; connecting again in %.1f s", what, exc or type(exc).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
