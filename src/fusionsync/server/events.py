"""Change events: every distribution created, replaced or deleted, streamed to subscribers as server-sent
events at ``catalogs/{catalog}/notifications/subscribe`` (what the official SDK's ``listen_to_events`` reads).

Each event is one SSE message: ``id: <boot>-<seq>`` and ``data: <JSON>`` with ``id``, ``type``, ``timestamp``
and ``metaData`` (catalog, dataset, series, format, size, digest). Heartbeats (``HeartBeatNotification``,
without an SSE ``id``) keep idle connections open. A subscriber that sends ``Last-Event-ID`` gets the events
it missed first, from the last ``KEEP`` events this process has seen; when those cannot cover the gap (an id
of an earlier process, or too old) it gets a ``ResetNotification`` first: it has to list again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from fusionsync.server import models as m
from fusionsync.server.common import require_catalog, state
from fusionsync.server.eventlog import notice
from fusionsync.server.spec import Answer, Api, Param

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
    catalog = require_catalog(request)
    hub = state(request).events
    queue = hub.waiter()  # before the backlog is read: nothing published in between is missed
    try:
        backlog, covered, seq = hub.since(catalog, request.headers.get("Last-Event-ID"))
        answer = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"})
        answer.enable_chunked_encoding()
        await answer.prepare(request)
        if request.method == "HEAD":
            return answer
        first = b"retry: 1000\n\n" + (b"" if covered else notice("ResetNotification", catalog))
        here = f"id: {hub.boot}-{seq}\n\n".encode()  # where this stream starts: a reconnection resumes from it
        await answer.write(first + b"".join(backlog) + here)
        beat = state(request).config.heartbeat_seconds
        while True:
            try:
                going_on = await asyncio.wait_for(queue.get(), timeout=beat)
            except TimeoutError:
                await answer.write(notice("HeartBeatNotification", catalog))
                continue
            while going_on and not queue.empty():
                going_on = queue.get_nowait()
            if not going_on:
                return answer
            messages, seq = hub.after(catalog, seq)
            if messages:
                await answer.write(b"".join(messages))
    finally:
        hub.forget(queue)
