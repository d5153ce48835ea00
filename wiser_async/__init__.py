"""Async client for the Wiser Energy Monitoring Cloud API.

::

    async with WiserOAuth(client_id=..., client_secret=..., redirect_uri=...) as oauth:
        async with AsyncWiserClient(oauth, "customer-1") as client:
            async for location in client.locations.iter():
                ...
"""

import logging as _logging
from importlib import import_module as _import_module
from typing import TYPE_CHECKING
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
from ._oauth import WiserOAuth
from ._resources import Listing
from ._retry import RateLimiter, RetryPolicy
from ._stats import ClientStats
from ._transport import UNSET, Unset
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

if TYPE_CHECKING:
    from ._authorization import AuthorizationRequest
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
    from ._export import (
        AccountOutcome,
        ExportResult,
        TableCounts,
        UnreconciledPart,
        export_snapshot,
    )
    from ._observe import ClientEvent, RequestDone, RequestRetried, Throttled, TokenRefreshed
    from ._redis_rate import RedisRateLimiter
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
    from ._transport import Requester

__all__ = [
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "UNSET",
    "AccountOutcome",
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
    "ExportResult",
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
    "TableCounts",
    "Throttled",
    "TokenRefreshed",
    "UnitDone",
    "UnreconciledPart",
    "Unset",
    "Validation",
    "Walk",
    "WiserOAuth",
    "WorkerRun",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "enqueue",
    "export_snapshot",
    "merge",
    "read_snapshot",
    "run_worker",
]

# Names a worker or a one-call script does not use are imported when first
# asked for (PEP 562): the authorization flow (authlib), the crawl, the
# snapshots, the distributed queue and the Redis rate limiter would otherwise
# cost every process's start-up. The request path (`Requester`) and its events
# are imported by the first client, or by the first of these names asked for.
_LAZY_MODULES = {
    "._authorization": ("AuthorizationRequest",),
    "._crawl": (
        "Batch",
        "CrawlResult",
        "CrawlStats",
        "Event",
        "Events",
        "Failure",
        "FailureEvent",
        "LocationTree",
        "Node",
        "RoomTree",
        "SiteTree",
        "UnitDone",
        "Walk",
    ),
    "._crawl.engine": ("FailureRecorded",),
    "._distributed": ("MergedCrawl", "WorkerRun", "enqueue", "merge", "run_worker"),
    "._export": (
        "AccountOutcome",
        "ExportResult",
        "TableCounts",
        "UnreconciledPart",
        "export_snapshot",
    ),
    "._observe": ("ClientEvent", "RequestDone", "RequestRetried", "Throttled", "TokenRefreshed"),
    "._redis_rate": ("RedisRateLimiter",),
    "._snapshot": (
        "DeviceChange",
        "JsonlCrawl",
        "SnapshotDiff",
        "Validation",
        "crawl_to_json",
        "crawl_to_jsonl",
        "diff_snapshots",
        "read_snapshot",
    ),
    "._transport": ("Requester",),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def _publish(value: _Any) -> None:
    # Shown as the package's own, as httpx does: `wiser_async.Walk`, not
    # `wiser_async._crawl.walk.Walk`. An attrs class's annotations are resolved
    # first, in its own module's namespace.
    if isinstance(value, type) and _attrs.has(value):
        _attrs.resolve_types(value)
    if isinstance(value, type) or callable(value):
        value.__module__ = __name__


for __name in __all__:
    if __name not in _LAZY:
        _publish(globals()[__name])
del __name

# A library's records go where the application sends them; with no logging set up,
# nothing is printed (not Python's last-resort stderr handler).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
del _logging


def __getattr__(name: str) -> _Any:
    module_name = _LAZY.get(name)
    if module_name is not None:
        # Every public name of that module at once, so that they are all shown
        # as the package's own whichever is asked for first.
        module = _import_module(module_name, __name__)
        names = globals()
        for public in _LAZY_MODULES[module_name]:
            if public not in names:
                value = getattr(module, public)
                _publish(value)
                names[public] = value
        return names[name]
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


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
