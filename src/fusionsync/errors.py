"""One exception hierarchy for fusionsync; every message is written for users."""

from __future__ import annotations


class FusionSyncError(Exception):
    """Base of every error fusionsync raises on purpose."""

    retryable: bool = False
    exit_code: int = 1


class UsageError(FusionSyncError):
    """The call itself is wrong (bad option, bad path, bad identifier)."""

    exit_code = 2


class CredentialsError(FusionSyncError):
    """Credentials are missing, malformed or refused."""


class AuthError(FusionSyncError):
    """The server refused our token (HTTP 401/403)."""


class NotFoundError(FusionSyncError, FileNotFoundError):
    """A catalog, dataset, series member or distribution does not exist (HTTP 404).

    Also a ``FileNotFoundError``, which is what fsspec (``isdir``, ``exists``, ``find``…) expects.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class APIError(FusionSyncError):
    """The server answered with an error, or with something that is not the API's shape."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class TransferError(FusionSyncError):
    """A download or upload did not complete (connection lost, too many retries)."""

    retryable = True


class ChecksumError(TransferError):
    """Bytes received do not match the checksum the other side announced."""


def exit_code(exc: BaseException) -> int:
    """The CLI exit status for an exception."""
    if isinstance(exc, FusionSyncError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
