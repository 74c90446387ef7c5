"""fusionsync: fast, verified sync between fsspec filesystems and a Fusion data catalog.

The public names are imported when first used (PEP 562): ``fusionsync serve`` and ``fusionsync --help`` do not
pay for the client's and the sync engine's imports, nor a sync for the server's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fusionsync.client import FusionFileSystem
    from fusionsync.errors import (
        APIError,
        AuthError,
        ChecksumError,
        CredentialsError,
        DeleteRefused,
        FusionSyncError,
        LockedError,
        NotFoundError,
        TransferError,
        UsageError,
    )
    from fusionsync.sync.fsync import fsync
    from fusionsync.sync.remote import Remote
    from fusionsync.sync.report import SyncReport

__version__ = "0.1.0"

_HOMES = {
    "FusionFileSystem": "fusionsync.client",
    "fsync": "fusionsync.sync.fsync",
    "Remote": "fusionsync.sync.remote",
    "SyncReport": "fusionsync.sync.report",
    **dict.fromkeys(
        [
            "APIError",
            "AuthError",
            "ChecksumError",
            "CredentialsError",
            "DeleteRefused",
            "FusionSyncError",
            "LockedError",
            "NotFoundError",
            "TransferError",
            "UsageError",
        ],
        "fusionsync.errors",
    ),
}

__all__ = [
    "APIError",
    "AuthError",
    "ChecksumError",
    "CredentialsError",
    "DeleteRefused",
    "FusionFileSystem",
    "FusionSyncError",
    "LockedError",
    "NotFoundError",
    "Remote",
    "SyncReport",
    "TransferError",
    "UsageError",
    "__version__",
    "fsync",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fusionsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
