"""Change events: a subscriber sees every distribution created, replaced and deleted, in order and within a
second; a reconnection resumes after the last event; the official SDK's listen_to_events reads them too."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusionsync.client import ChangeEvent, FusionFileSystem
from fusionsync.errors import NotFoundError
from tests.api_doc import watch_for_internal_errors
from tests.helpers import RunningServer, start_server

SUBSCRIBE = "/api/v1/catalogs/cat/notifications/subscribe"


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from watch_for_internal_errors(request)


async def collect(server: RunningServer, count: int, act: Any, last_event_id: str | None = None) -> list[ChangeEvent]:
    """Subscribe, run ``act`` (in a thread) once subscribed, and return the first ``count`` events."""
    async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as fs:
        subscribed = asyncio.Event()
        stream = fs.events("cat", last_event_id, on_connect=subscribed.set)
        got: list[ChangeEvent] = []

        async def read() -> None:
            async for event in stream:
                got.append(event)
                if len(got) == count:
                    return

        reader = asyncio.create_task(read())
        await asyncio.wait_for(subscribed.wait(), 10)  # not a fixed pause: a loaded machine may take longer
        await asyncio.to_thread(act)
        await asyncio.wait_for(reader, 10)
        return got


def test_a_subscriber_sees_each_change_in_order_within_a_second(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    server.create_dataset("other", "D")
    stamps: list[float] = []

    def act() -> None:
        server.upload("other", "D", "20240101", "csv", b"not this catalog")
        for data in (b"a,b\n1,2\n", b"a,b\n3,4\n"):
            assert server.upload("cat", "D", "20240101", "csv", data).status == 200
            stamps.append(time.monotonic())
        dist = "catalogs/cat/datasets/D/datasetseries/20240101/distributions/csv"
        assert server.api("DELETE", dist).status == 200
        stamps.append(time.monotonic())

    events = asyncio.run(collect(server, 3, act))
    arrived = time.monotonic()
    assert [e.kind for e in events] == ["created", "replaced", "deleted"]
    assert {(e.catalog, e.dataset, e.series, e.format) for e in events} == {("cat", "D", "20240101", "csv")}
    assert events[0].size == 8 and events[1].digest and events[2].size is None
    assert events[0].path == "cat/datasets/D/datasetseries/20240101/distributions/csv"
    assert arrived - stamps[-1] < 1.0
    assert len({e.id for e in events}) == 3


def test_a_reconnection_resumes_after_the_last_event(server: RunningServer) -> None:
    server.create_dataset("cat", "D")
    first = asyncio.run(collect(server, 1, lambda: server.upload("cat", "D", "s1", "csv", b"1")))
    for series in ("s2", "s3"):  # while nobody listens
        server.upload("cat", "D", series, "csv", b"2")
    missed = asyncio.run(collect(server, 2, lambda: None, last_event_id=first[0].id))
    assert [(e.kind, e.series) for e in missed] == [("created", "s2"), ("created", "s3")]
    unknown = asyncio.run(collect(server, 1, lambda: None, last_event_id="0123abcd-7"))
    assert unknown[0].kind == "reset" and unknown[0].path == ""


def test_a_restarted_server_is_reconnected_to_with_a_reset(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root")
    server.create_dataset("cat", "D")
    port = server.port
    restarted: list[RunningServer] = []

    def restart() -> None:
        server.stop()
        restarted.append(start_server(tmp_path / "root", port=port))
        restarted[0].upload("cat", "D", "s", "csv", b"after")

    try:
        events = asyncio.run(collect(server, 2, restart))
    finally:
        for srv in restarted:
            srv.stop()
    assert [(e.kind, e.series) for e in events] == [("reset", ""), ("created", "s")]


def test_subscribing_answers_like_every_operation(server: RunningServer) -> None:
    server.create_catalog("cat")
    assert server.request("GET", SUBSCRIBE, auth=False).status == 401
    assert server.request("GET", SUBSCRIBE.replace("/cat/", "/nope/")).status == 404
    assert server.request("GET", SUBSCRIBE.replace("/cat/", "/../")).status in (400, 404)
    head = server.request("HEAD", SUBSCRIBE)
    assert head.status == 200 and head.headers["Content-Type"] == "text/event-stream"

    async def missing() -> None:
        async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as fs:
            async for _ in fs.events("nope"):
                pass

    with pytest.raises(NotFoundError):
        asyncio.run(missing())


LISTENER = """
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
from fusion import Fusion
from fusion.credentials import FusionCredentials
fusion = Fusion(credentials=FusionCredentials.from_file(sys.argv[1]), root_url=sys.argv[2])
fusion.default_catalog = "cat"  # listen_to_events first reads the default catalog (Fusion's has "common")
fusion.listen_to_events(catalog="cat")
time.sleep(1)
print("listening", flush=True)
deadline = time.monotonic() + 15
seen = []
while time.monotonic() < deadline and len(seen) < 3:
    time.sleep(0.1)
    frame = fusion.events
    seen = [] if frame is None else [t for t in frame["type"] if t != "HeartBeatNotification"]
frame = fusion.get_events()
rows = [] if frame is None else frame[frame["type"] != "HeartBeatNotification"]
print(json.dumps({"types": seen, "datasets": list(rows["dataset"]), "series": list(rows["series"])}), flush=True)
os._exit(0)  # its listener thread never ends by itself
"""


def test_the_sdk_listen_to_events_sees_created_replaced_and_deleted(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "D")
    # In a process of its own: the SDK's listener is a thread that nothing can stop
    args = [sys.executable, "-c", LISTENER, str(server.credentials_file), server.root_url]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=tmp_path) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        server.upload("cat", "D", "20240101", "csv", b"a\n1\n")
        server.upload("cat", "D", "20240101", "csv", b"a\n2\n")
        server.api("DELETE", "catalogs/cat/datasets/D/datasetseries/20240101/distributions/csv")
        seen = json.loads(proc.stdout.readline())
    assert seen["types"] == ["DistributionCreated", "DistributionReplaced", "DistributionDeleted"]
    assert seen["datasets"] == ["D"] * 3 and seen["series"] == ["20240101"] * 3  # metaData's fields as columns
