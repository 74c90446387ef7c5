"""Latency from an upload to its change event reaching a subscriber (``FusionFileSystem.events``).

Run: ``.venv/bin/python -m bench.events_latency [--uploads 200]``. Each upload is a small single-request
PUT from another thread; the time runs from just before the request is sent (and, second column, from
its answer) to the event's arrival. Prints p50/p90/max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.helpers import start_server

from fusionsync.client import FusionFileSystem


async def measure(uploads: int) -> tuple[list[float], list[float]]:
    root = Path(tempfile.mkdtemp(prefix="fusionsync-events-")) / "root"
    server = start_server(root)
    try:
        server.create_dataset("cat", "D")
        sent: dict[str, tuple[float, float]] = {}
        async with FusionFileSystem(credentials=str(server.credentials_file), asynchronous=True) as fs:
            events = fs.events("cat")
            first = asyncio.ensure_future(events.__anext__())
            await asyncio.sleep(0.3)

            def upload(i: int) -> None:
                before = time.perf_counter()
                server.upload("cat", "D", f"s{i}", "csv", b"a,b\n1,2\n")
                sent[f"s{i}"] = (before, time.perf_counter())

            from_send, from_answer = [], []
            for i in range(uploads):
                waiting = first if i == 0 else asyncio.ensure_future(events.__anext__())
                await asyncio.to_thread(upload, i)
                event = await waiting
                arrived = time.perf_counter()
                before, answered = sent[event.series]
                from_send.append((arrived - before) * 1e3)
                from_answer.append((arrived - answered) * 1e3)
        return from_send, from_answer
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=200)
    args = parser.parse_args()
    from_send, from_answer = asyncio.run(measure(args.uploads))
    for label, values in (("upload sent -> event", from_send), ("upload answered -> event", from_answer)):
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9)]
        print(f"{label:26} p50 {statistics.median(values):6.2f} ms  p90 {p90:6.2f} ms  max {max(values):6.2f} ms")


if __name__ == "__main__":
    main()
