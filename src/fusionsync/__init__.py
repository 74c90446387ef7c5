"""fusionsync: fast, verified sync between fsspec filesystems and a Fusion data catalog."""

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
