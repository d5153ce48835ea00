"""Portfolio crawls: a streaming, bounded, fair walk of location -> site -> room -> device.

- `results`: what a crawl gives (nodes, failures, stats, trees);
- `events`: what flows from the workers to the consumer;
- `queue`: the jobs and the fair queue;
- `engine`: the workers;
- `walk`: `Walk` and `open_walk`;
- `gather`: trees from a walk, for `crawl()`.
"""

from .engine import MAX_PAGES, RETRY_LATER_KINDS
from .events import Batch, Event, FailureEvent, UnitDone
from .gather import gather
from .results import (
    CrawlResult,
    CrawlStats,
    DevicesBy,
    Failure,
    LocationTree,
    Node,
    RoomTree,
    SiteTree,
    Unit,
)
from .walk import Events, Walk, open_walk

__all__ = [
    "MAX_PAGES",
    "RETRY_LATER_KINDS",
    "Batch",
    "CrawlResult",
    "CrawlStats",
    "DevicesBy",
    "Event",
    "Events",
    "Failure",
    "FailureEvent",
    "LocationTree",
    "Node",
    "RoomTree",
    "SiteTree",
    "Unit",
    "UnitDone",
    "Walk",
    "gather",
    "open_walk",
]
