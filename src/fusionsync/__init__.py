"""fusionsync: fast, verified sync between fsspec filesystems and a Fusion data catalog."""

from fusionsync.client import FusionFileSystem
from fusionsync.errors import (
    APIError,
    AuthError,
    ChecksumError,
    CredentialsError,
    FusionSyncError,
    NotFoundError,
    TransferError,
    UsageError,
)
from fusionsync.sync.fsync import fsync
from fusionsync.sync.report import SyncReport

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthError",
    "ChecksumError",
    "CredentialsError",
    "FusionFileSystem",
    "FusionSyncError",
    "NotFoundError",
    "SyncReport",
    "TransferError",
    "UsageError",
    "__version__",
    "fsync",
]
