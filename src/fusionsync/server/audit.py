"""The audit log: one JSON line per write, delete, sign-in and refusal, appended to ``ROOT/audit.log`` (0600).

A line says when, who (the client, or none), from where, what (method and path) and how it ended (status);
never a secret or a token. Each line is one ``write`` on a file opened for appending, so the lines of worker
processes sharing the file never mix.

A flood of refused requests or sign-ins must not fill the disk: the first refusal of a source (what was
refused, to which client, from which address, with which status) is written in full; its repeats in the
next minute are counted and written as one line (``"repeated"``: the count, ``"since"``: when the first
was) once that minute is over, or when the server stops.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionsync.server.store import now_iso

log = logging.getLogger("fusionsync.server")
AUDIT_FILE = "audit.log"
REPEAT_WINDOW = 60.0
"""Seconds during which a source's repeated refusals are counted rather than written."""
MAX_SOURCES = 10_000
"""Sources counted at once; past that, every count is written out and counting starts afresh."""

Source = tuple[str, str | None, str | None, int]  # event, client, address, status


@dataclass
class _Repeats:
    since: float  # monotonic time of the refusal written in full
    first: str  # its time, as written
    count: int = 0


class AuditLog:
    """Appends audit records to a file (opened lazily: a worker opens its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._repeats: dict[Source, _Repeats] = {}

    def record(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": now_iso(), "event": event, **fields}, separators=(",", ":")) + "\n"
        try:
            if self._fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                self._fd = os.open(self.path, flags, 0o600)
            os.write(self._fd, line.encode())
        except OSError as exc:  # a full disk must not stop the catalog; say so where an operator looks
            log.error("cannot write the audit log %s: %s", self.path, exc)

    def refused(self, event: str, client: str | None, address: str | None, status: int, **detail: Any) -> None:
        """A refusal (``event``: what was refused): in full the first time in a window, else counted."""
        source = (event, client, address, status)
        now = time.monotonic()
        seen = self._repeats.get(source)
        if seen is not None and now - seen.since < REPEAT_WINDOW:
            seen.count += 1
            return
        if seen is not None:
            self._write_repeats(source, self._repeats.pop(source))
        if len(self._repeats) >= MAX_SOURCES:
            self.flush()
        self._repeats[source] = _Repeats(now, now_iso())
        self.record(event, client=client, address=address, status=status, **detail)

    def flush(self, window: float = 0.0) -> None:
        """Write the counts of the sources whose window (``window`` seconds, 0: any) is over."""
        now = time.monotonic()
        for source, seen in list(self._repeats.items()):
            if now - seen.since >= window:
                del self._repeats[source]
                self._write_repeats(source, seen)

    def _write_repeats(self, source: Source, seen: _Repeats) -> None:
        if seen.count:
            event, client, address, status = source
            self.record(event, client=client, address=address, status=status, repeated=seen.count, since=seen.first)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
