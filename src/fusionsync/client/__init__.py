"""The Fusion client: credentials, HTTP, and the fsspec filesystem."""

from fusionsync.client.credentials import Credentials
from fusionsync.client.events import ChangeEvent
from fusionsync.client.filesystem import FusionFileSystem, RemoteDistribution

__all__ = ["ChangeEvent", "Credentials", "FusionFileSystem", "RemoteDistribution"]
