"""HTTP answers turned into our errors: which statuses are retried, and the server's message."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

from fusionsync.errors import APIError, AuthError, NotFoundError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """A failure worth another try (connection lost, 408, 429, 5xx), with the server's Retry-After."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def message(body: bytes) -> str:
    """The server's explanation: ``{"message": ...}`` (or OAuth's ``error_description``), else the text."""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error_description") or data.get("error") or data)
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip() or "no message"


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, what: str, body: bytes, headers: Any = None) -> Exception:
    """The error for an HTTP status: Retryable for 408/429/5xx, else one of ours, naming ``what``."""
    text = message(body)
    if status in RETRY_STATUSES:
        return Retryable(
            f"{what}: {text} (HTTP {status})", retry_after(headers.get("Retry-After") if headers else None)
        )
    if status == 404:
        return NotFoundError(f"{what} not found: {text}")
    if status in (401, 403):
        return AuthError(f"{what}: access refused ({text}, HTTP {status})")
    return APIError(f"{what}: {text} (HTTP {status})", status)
