"""Async client for the Wiser Energy Monitoring Cloud API.

::

    async with WiserOAuth(client_id=..., client_secret=..., redirect_uri=...) as oauth:
        async with AsyncWiserClient(oauth, "customer-1") as client:
            async for location in client.locations.iter():
                ...
"""

import logging as _logging
from typing import Any as _Any

import attrs as _attrs

from ._client import AsyncWiserClient
from ._config import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    ApiConfig,
    PageFormat,
    Paths,
)
from ._crawl import (
    Batch,
    CrawlResult,
    CrawlStats,
    Event,
    Events,
    Failure,
    FailureEvent,
    LocationTree,
    Node,
    RoomTree,
    SiteTree,
    UnitDone,
    Walk,
)
from ._crawl.engine import FailureRecorded
from ._distributed import MergedCrawl, WorkerRun, enqueue, merge, run_worker
from ._oauth import AuthorizationRequest, WiserOAuth
from ._observe import ClientEvent, RequestDone, RequestRetried, Throttled, TokenRefreshed
from ._redis_rate import RedisRateLimiter
from ._resources import Listing
from ._retry import RateLimiter, RetryPolicy
from ._snapshot import (
    DeviceChange,
    JsonlCrawl,
    SnapshotDiff,
    Validation,
    crawl_to_json,
    crawl_to_jsonl,
    diff_snapshots,
    read_snapshot,
)
from ._stats import ClientStats
from ._transport import UNSET, Requester, Unset
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
    "Batch",
    "ClientEvent",
    "ClientStats",
    "CrawlResult",
    "CrawlStats",
    "Device",
    "DeviceCategory",
    "DeviceChange",
    "DeviceStatus",
    "DeviceUsage",
    "Event",
    "Events",
    "Failure",
    "FailureEvent",
    "FailureRecorded",
    "JsonlCrawl",
    "Listing",
    "Location",
    "LocationTree",
    "MergedCrawl",
    "Node",
    "Page",
    "PageFormat",
    "Paths",
    "RateLimiter",
    "RedisRateLimiter",
    "RequestDone",
    "RequestRetried",
    "Requester",
    "RetryPolicy",
    "Room",
    "RoomTree",
    "RoomType",
    "Site",
    "SiteTree",
    "SiteType",
    "SnapshotDiff",
    "Throttled",
    "TokenRefreshed",
    "UnitDone",
    "Unset",
    "Validation",
    "Walk",
    "WiserOAuth",
    "WorkerRun",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "enqueue",
    "merge",
    "read_snapshot",
    "run_worker",
]

# Shown as the package's own, as httpx does: `wiser_async.Walk`, not `wiser_async._crawl.walk.Walk`.
# An attrs class's annotations are resolved first, in its own module's namespace.
__locals = locals()
for __name in __all__:
    __value = __locals[__name]
    if isinstance(__value, type) and _attrs.has(__value):
        _attrs.resolve_types(__value)
    if isinstance(__value, type) or callable(__value):
        __value.__module__ = __name__
del __locals, __name, __value, _attrs

# A library's records go where the application sends them; with no logging set up,
# nothing is printed (not Python's last-resort stderr handler).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
del _logging


def __getattr__(name: str) -> _Any:
    # ``__version__`` is read from the distribution's metadata when first asked
    # for: importlib.metadata costs a worker's start-up about 25 ms otherwise.
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("wiser-async")
        except metadata.PackageNotFoundError:  # a source tree that is not installed
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
