"""Async client for the Wiser Energy Monitoring Cloud API.

::

    async with WiserOAuth(client_id=..., client_secret=..., redirect_uri=...) as oauth:
        async with AsyncWiserClient(oauth, "customer-1") as client:
            async for location in client.locations.iter():
                ...
"""

from ._client import UNSET, AsyncWiserClient, ClientStats
from ._config import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    ApiConfig,
    PageFormat,
    Paths,
)
from ._crawl import (
    CrawlResult,
    CrawlStats,
    Failure,
    LocationTree,
    Node,
    RoomTree,
    SiteTree,
    Walk,
)
from ._oauth import AuthorizationRequest, WiserOAuth
from ._retry import RetryPolicy
from ._snapshot import (
    DeviceChange,
    JsonlCrawl,
    SnapshotDiff,
    crawl_to_json,
    crawl_to_jsonl,
    diff_snapshots,
    read_snapshot,
)
from .models import (
    Address,
    Device,
    DeviceCategory,
    DeviceStatus,
    DeviceUsage,
    Location,
    Page,
    Room,
    RoomType,
    Site,
    SiteType,
)

__all__ = [
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "UNSET",
    "Address",
    "ApiConfig",
    "AsyncWiserClient",
    "AuthorizationRequest",
    "ClientStats",
    "CrawlResult",
    "CrawlStats",
    "Device",
    "DeviceCategory",
    "DeviceChange",
    "DeviceStatus",
    "DeviceUsage",
    "Failure",
    "JsonlCrawl",
    "Location",
    "LocationTree",
    "Node",
    "Page",
    "PageFormat",
    "Paths",
    "RetryPolicy",
    "Room",
    "RoomTree",
    "RoomType",
    "Site",
    "SiteTree",
    "SiteType",
    "SnapshotDiff",
    "Walk",
    "WiserOAuth",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "read_snapshot",
]
