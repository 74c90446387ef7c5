"""One exception hierarchy for fusionsync; every message is written for users.

Exit statuses of the ``fusionsync`` command (:data:`EXIT_CODES`, mapped by :func:`exit_code`)
tell causes apart, as rclone's do.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_LOCKED = 4
EXIT_DELETE_REFUSED = 5
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "everything is in sync",
    EXIT_FAILED: "items failed or were kept as conflicts (or a pass failed as a whole)",
    EXIT_USAGE: "bad usage: an option, a path or an identifier is wrong",
    EXIT_AUTH: "authentication failed: credentials malformed or refused",
    EXIT_LOCKED: "another sync holds the local folder",
    EXIT_DELETE_REFUSED: "a delete limit refused the pass (--max-delete, or every distribution of a dataset)",
    EXIT_SIGINT: "interrupted by Ctrl+C (SIGINT); the pass stopped cleanly",
    EXIT_SIGTERM: "stopped by SIGTERM; the pass stopped cleanly",
}
"""Every exit status of the command and what it means (shown by ``--help`` and in the README)."""


class FusionSyncError(Exception):
    """Base of every error fusionsync raises on purpose; its message is one sentence for users.

    Attributes:
        retryable: Whether trying again later may succeed (a lost connection), or not (a refusal).
        exit_code: The ``fusionsync`` command's exit status for this error (1 unless a subclass says).
    """

    retryable: bool = False
    exit_code: int = EXIT_FAILED


class UsageError(FusionSyncError):
    """The call itself is wrong (bad option, bad path, bad identifier); exit status 2."""

    exit_code = EXIT_USAGE


class CredentialsError(FusionSyncError):
    """Credentials are missing, malformed or refused by the token endpoint; exit status 3."""

    exit_code = EXIT_AUTH


class AuthError(FusionSyncError):
    """The server refused our token (HTTP 401/403); exit status 3."""

    exit_code = EXIT_AUTH


class LockedError(FusionSyncError):
    """Another sync is running on the same local folder; exit status 4."""

    exit_code = EXIT_LOCKED


class DeleteRefused(FusionSyncError):
    """A pass would delete more than it was allowed to (``max_delete``, ``allow_delete_all``); nothing was
    done; exit status 5."""

    exit_code = EXIT_DELETE_REFUSED


class NotFoundError(FusionSyncError, FileNotFoundError):
    """A catalog, dataset, series member or distribution does not exist (HTTP 404); exit status 1.

    Also a ``FileNotFoundError``, which is what fsspec (``isdir``, ``exists``, ``find``…) expects.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class APIError(FusionSyncError):
    """The server answered with an error, or with something that is not the API's shape; exit status 1."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        """An error of the server's answer.

        Args:
            message: What went wrong, one sentence naming the object asked for.
            status: The HTTP status of the answer (kept as ``self.status``). Default (``None``): the
                answer had the wrong shape, or there was none.
            retryable: Whether the same request may succeed later (a 429 or 5xx). Default: ``False``.
        """
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class TransferError(FusionSyncError):
    """A download or upload did not complete (connection lost, too many retries); retryable, exit status 1."""

    retryable = True


class ChecksumError(TransferError):
    """Bytes received do not match the checksum the other side announced."""


def exit_code(exc: BaseException) -> int:
    """The CLI exit status for an exception."""
    if isinstance(exc, FusionSyncError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    return EXIT_FAILED


def signal_exit_code(signum: int) -> int:
    """The exit status of a run stopped by signal ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum
