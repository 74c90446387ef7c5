"""The error a request is answered with: a status and one sentence (free of aiohttp, so the upload protocol
can raise it too)."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client as JSON with a readable message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
