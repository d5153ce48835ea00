"""What a crawl gives: nodes, failures, stats, and the trees of a gathered crawl."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

import attrs

from .._config import CollectionName, NodeKind
from ..models import Device, Location, Room, Site

__all__ = [
    "CrawlResult",
    "CrawlStats",
    "DevicesBy",
    "Failure",
    "Item",
    "LocationTree",
    "Node",
    "RoomTree",
    "SiteTree",
    "Unit",
]

DevicesBy: TypeAlias = Literal["site", "room"]
Item: TypeAlias = Location | Site | Room | Device
# A unit is what a checkpoint records as done: the nodes found by the jobs
# of one account's location list, one location's site list, or one site's
# rooms and devices. ("account", account, "") | ("location", account, id) | ("site", account, id)
Unit: TypeAlias = tuple[str, str, str]


@attrs.frozen
class Node:
    """One item found by a walk, with the ids of its parents.

    Attributes:
        kind: ``"location"``, ``"site"``, ``"room"`` or ``"device"``.
        account: The account key whose portfolio it belongs to.
        item: The model (`Location`, `Site`, `Room` or `Device`).
        location_id: Its location (None for a location).
        site_id: Its site (None for a location or a site).
        room_id: Its room: a device's room, None for a device in no room.
    """

    kind: NodeKind
    account: str
    item: Item
    location_id: str | None = None
    site_id: str | None = None
    room_id: str | None = None

    @property
    def id(self) -> str:
        """The item's id."""
        return self.item.id


@attrs.frozen
class Failure:
    """A part of the portfolio the crawl could not read, and why.

    Attributes:
        account: The account key.
        resource: The request path (with query) that failed, or ``"*"`` when
            the whole account failed.
        kind: What went wrong: ``forbidden``, ``not_found``, ``bad_request``,
            ``rate_limited``, ``server_error``, ``timeout``, ``connection``,
            ``decode``, ``paging_loop`` (the collection's pages repeated what
            it gave, or went past its bound: what came before is kept),
            ``redirect``, ``authorization`` (the account's grant is gone: a
            login authorizes it again), ``client`` (the token endpoint refused
            the client id or secret, ``invalid_client``: the grant is
            untouched), ``store``,
            ``token_endpoint``, ``api_error``, ``rate_limiter`` (the shared rate
            limit's Redis did not answer), ``deadline`` (not read before the
            crawl's timeout ran out), or ``unfinished`` (in a merged distributed
            crawl: an account no worker finished).
        status: The HTTP status, when there was one.
        message: The error's message (never a secret).
        collection: The collection being read (``locations``, ``sites``,
            ``rooms``, ``site_devices``, ``room_devices``); None for the account.
        parent_id: The id the collection belongs to (a location for sites, ...).
        offset: The first index of the page that failed.
        location_id: The location above the failed part, if any.
        site_id: The site above the failed part, if any.
    """

    account: str
    resource: str
    kind: str
    status: int | None
    message: str
    collection: CollectionName | None = None
    parent_id: str | None = None
    offset: int | None = None
    location_id: str | None = None
    site_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The failure as JSON-ready data."""
        return attrs.asdict(self)


@attrs.define
class CrawlStats:
    """What a crawl did.

    Attributes:
        requests: HTTP requests sent (retries included).
        retries: Requests repeated after a transient failure or a 429.
        throttled: 429 answers received.
        failures: Parts of the portfolio not read.
        duration: Seconds from start to end.
        locations, sites, rooms, devices: Items found.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0
    duration: float = 0.0
    locations: int = 0
    sites: int = 0
    rooms: int = 0
    devices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        return attrs.asdict(self)


@attrs.define
class RoomTree:
    """A room and the devices in it."""

    room: Room
    devices: list[Device] = attrs.Factory(list)


@attrs.define
class SiteTree:
    """A site, its rooms, and its devices that are in none of those rooms.

    `devices` holds the devices with no ``roomId`` (a main meter, a gateway),
    and any whose room the crawl could not read.
    """

    site: Site
    rooms: list[RoomTree] = attrs.Factory(list)
    devices: list[Device] = attrs.Factory(list)


@attrs.define
class LocationTree:
    """A location and its sites."""

    location: Location
    sites: list[SiteTree] = attrs.Factory(list)


@attrs.define
class CrawlResult:
    """A whole crawl: the tree of each account, every failure, and stats.

    ``result.complete`` is True when nothing is missing.
    """

    portfolios: dict[str, list[LocationTree]]
    failures: list[Failure]
    stats: CrawlStats

    @property
    def complete(self) -> bool:
        """True if every part of every portfolio was read."""
        return not self.failures

    @property
    def locations(self) -> list[LocationTree]:
        """The tree of the only account crawled.

        Raises:
            ValueError: if the crawl covered several accounts (use `portfolios`).
        """
        if len(self.portfolios) != 1:
            raise ValueError("several accounts were crawled: use .portfolios[account]")
        return next(iter(self.portfolios.values()))

    def nodes(self) -> Iterator[Node]:
        """Every item of every account, parents before children."""
        for account, locations in self.portfolios.items():
            for location_tree in locations:
                location_id = location_tree.location.id
                yield Node("location", account, location_tree.location)
                for site_tree in location_tree.sites:
                    site_id = site_tree.site.id
                    yield Node("site", account, site_tree.site, location_id)
                    for room_tree in site_tree.rooms:
                        room_id = room_tree.room.id
                        yield Node("room", account, room_tree.room, location_id, site_id)
                        for device in room_tree.devices:
                            yield Node("device", account, device, location_id, site_id, room_id)
                    for device in site_tree.devices:
                        yield Node("device", account, device, location_id, site_id, device.room_id)

    def devices(self) -> Iterator[Device]:
        """Every device found."""
        for node in self.nodes():
            if node.kind == "device":
                yield node.item  # type: ignore[misc]
