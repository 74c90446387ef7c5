"""The audit log: one JSON line per write, delete, sign-in and refusal, appended to ``ROOT/audit.log`` (0600).

A line says when, who (the client, or none), from where, what (method and path) and how it ended (status);
never a secret or a token. Each line is one ``write`` on a file opened for appending, so the lines of worker
processes sharing the file never mix.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from fusionsync.server.store import now_iso

log = logging.getLogger("fusionsync.server")
AUDIT_FILE = "audit.log"


class AuditLog:
    """Appends audit records to a file (opened lazily: a worker opens its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def record(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": now_iso(), "event": event, **fields}, separators=(",", ":")) + "\n"
        try:
            if self._fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                self._fd = os.open(self.path, flags, 0o600)
            os.write(self._fd, line.encode())
        except OSError as exc:  # a full disk must not stop the catalog; say so where an operator looks
            log.error("cannot write the audit log %s: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
