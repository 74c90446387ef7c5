"""The Fusion client: credentials, HTTP, and the fsspec filesystem."""

from fusionsync.client.credentials import Credentials
from fusionsync.client.filesystem import FusionFileSystem, RemoteDistribution

__all__ = ["Credentials", "FusionFileSystem", "RemoteDistribution"]
