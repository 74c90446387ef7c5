"""One sentence for each thing that can go wrong with a local file or with the server as a whole."""

from __future__ import annotations

import errno

from fusionsync.catalog.layout import TEMP_MARK
from fusionsync.errors import FusionSyncError, TransferError

REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would be larger than this process may write (file size limit)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "a folder stands where the file should be",
    errno.ENOTDIR: "part of that path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "input/output error",
}
UNREACHABLE = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)


def is_local_error(exc: BaseException) -> bool:
    """An error of the local filesystem (not one of ours, not the network's)."""
    return (
        isinstance(exc, OSError)
        and not isinstance(exc, FusionSyncError | ConnectionError | TimeoutError)
        and exc.errno is not None
    )


def reason(exc: OSError) -> str:
    """What went wrong, in words (``permission denied``, ``the disk is full …``)."""
    if exc.errno in REASONS:
        return REASONS[exc.errno]
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def local_failure(exc: OSError, target: str, verb: str) -> str:
    """One sentence naming the file: ``cannot write /m/cat/A/…/A__cat__20240101.csv: permission denied``.

    ``verb`` is what was being done to ``target`` (read, write, delete). An error about a folder on
    the way names that folder; one about a transfer's temporary file names the file it stands for.
    """
    where = exc.filename if isinstance(exc.filename, str) else None
    if where and where != target and target.startswith(where.rstrip("/") + "/"):
        why = "a file of that name is in the way" if exc.errno == errno.EEXIST else reason(exc)
        return f"cannot create the folder {where} for {target}: {why}"
    sentence = f"cannot {verb} {target}: {reason(exc)}"
    if where and where != target and TEMP_MARK not in where:
        sentence += f" ({where})"
    return sentence


def server_unreachable(exc: BaseException) -> bool:
    """True when a transfer gave up because nothing answered at the server's address."""
    if not isinstance(exc, TransferError):
        return False
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in UNREACHABLE:
            return True
        cause = cause.__cause__
    return False
