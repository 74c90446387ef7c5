"""Change events: every distribution created, replaced or deleted, streamed to subscribers as server-sent
events at ``catalogs/{catalog}/notifications/subscribe`` (what the official SDK's ``listen_to_events`` reads).

Each event is one SSE message: ``id: <log>-<seq>`` and ``data: <JSON>`` with ``id``, ``type``, ``timestamp``
and ``metaData`` (catalog, dataset, series, format, size, digest). The log is in the metadata store, so a
subscriber sees the events of every worker process, and the ids go on across restarts. Heartbeats
(``HeartBeatNotification``, without an SSE ``id``) keep idle connections open. A subscriber that sends
``Last-Event-ID`` gets the events it missed first, from the last ``eventlog.KEEP`` events; when those cannot
cover the gap (an id of another log, or too old) it gets a ``ResetNotification`` first: it has to list again.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from fusionsync.server import models as m
from fusionsync.server.common import require_catalog, state
from fusionsync.server.eventlog import notice
from fusionsync.server.spec import Answer, Api, Param
from fusionsync.server.store import MetaStore

api = Api()
EVENT_STREAM = "text/event-stream"


@api.op(
    "GET",
    "/api/v1/catalogs/{catalog}/notifications/subscribe",
    "Server-sent events: every distribution created, replaced or deleted in the catalog from now on",
    {200: Answer("An endless text/event-stream; each message's data is an Event", m.Event, EVENT_STREAM)},
    params=(
        Param(
            "Last-Event-ID",
            "header",
            m.Printable,
            description="The id of the last event seen: the events "
            "after it come first (or a ResetNotification when they are no longer known).",
        ),
    ),
    errors=frozenset({404}),
)
async def subscribe(request: web.Request) -> web.StreamResponse:
    catalog = await require_catalog(request)
    st = state(request)
    log = st.meta
    news = log.news()  # before the log is read: nothing committed in between is missed
    seq, covered = await _resume_from(log, request.headers.get("Last-Event-ID"))
    answer = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"})
    answer.enable_chunked_encoding()
    await answer.prepare(request)
    if request.method == "HEAD":
        return answer
    backlog = await log.events_after(catalog, seq)
    seq = backlog[-1][0] if backlog else seq
    first = b"retry: 1000\n\n" + (b"" if covered else notice("ResetNotification", catalog))
    here = f"id: {log.log_id}-{seq}\n\n".encode()  # where this stream is: a reconnection resumes from it
    await answer.write(first + b"".join(msg for _, msg in backlog) + here)
    beat = st.config.heartbeat_seconds
    quiet_since = asyncio.get_running_loop().time()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                news.wait(), timeout=max(0.0, quiet_since + beat - asyncio.get_running_loop().time())
            )
        if log.closing:
            return answer
        news = log.news()
        messages = await log.events_after(catalog, seq)
        if messages:
            seq = messages[-1][0]
            await answer.write(b"".join(msg for _, msg in messages))
            quiet_since = asyncio.get_running_loop().time()
        elif asyncio.get_running_loop().time() >= quiet_since + beat:
            await answer.write(notice("HeartBeatNotification", catalog))
            quiet_since = asyncio.get_running_loop().time()


async def _resume_from(log: MetaStore, last_id: str | None) -> tuple[int, bool]:
    """Where a stream starts (the event number after which it sends), and whether that covers every event
    since ``last_id``: not when it names another log, or events no longer kept."""
    oldest, newest = await log.last_event()
    if not last_id:
        return newest, True
    log_id, _, seq = last_id.partition("-")
    if log_id != log.log_id or not (seq.isascii() and seq.isdigit()) or int(seq) > newest or int(seq) + 1 < oldest:
        return newest, False
    return int(seq), True
