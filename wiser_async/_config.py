"""Where the API lives and how its JSON is spelled.

The public contract of the Wiser Energy Monitoring Cloud API is only partly
published, so every URL, path template, paging parameter, envelope key and
field name here is a default, not a fact: each can be changed without
touching the library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

import attrs

from .errors import PagingLoop
from .models import Device, Location, Page, Room, Site

__all__ = [
    "COLLECTIONS",
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "MAX_PAGES",
    "ApiConfig",
    "Collection",
    "CollectionName",
    "NodeKind",
    "PageFormat",
    "PagingGuard",
    "Paths",
    "usable_id",
]

NodeKind: TypeAlias = Literal["location", "site", "room", "device"]
CollectionName: TypeAlias = Literal["locations", "sites", "rooms", "site_devices", "room_devices"]

DEFAULT_BASE_URL = "https://api.exchange.se.com/wiser/energy-monitoring/v1"
DEFAULT_AUTHORIZE_URL = "https://api.exchange.se.com/ecostruxure/v1/oauth/authorize"
DEFAULT_TOKEN_URL = "https://api.exchange.se.com/ecostruxure/v1/oauth/token"  # noqa: S105 - a URL


@attrs.frozen(kw_only=True)
class Paths:
    """Path templates under the base URL; ``{...}`` fields are filled and URL-quoted."""

    locations: str = "/locations"
    location: str = "/locations/{location_id}"
    location_sites: str = "/locations/{location_id}/sites"
    site: str = "/sites/{site_id}"
    site_rooms: str = "/sites/{site_id}/rooms"
    site_devices: str = "/sites/{site_id}/devices"
    room_devices: str = "/rooms/{room_id}/devices"
    device: str = "/devices/{device_id}"


def _check_page_size(
    instance: PageFormat, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and not 1 <= value <= instance.max_page_size:
        raise ValueError(
            f"page_size must be between 1 and max_page_size ({instance.max_page_size})"
        )


@attrs.frozen(kw_only=True)
class PageFormat:
    """How collections are paged: query parameters and envelope keys.

    Attributes:
        offset_param: Query parameter of the first item's index.
        limit_param: Query parameter of the page size.
        page_size: Items asked per page wherever a call leaves it out (listings,
            walks, crawls alike); None: `max_page_size`, the fewest requests.
        max_page_size: The largest page the API serves (the contract says 500).
        data_key: Envelope key of the items.
        meta_key: Envelope key of the paging metadata.
        total_key: Key of the collection size inside the metadata (may be absent).
        limit_key: Key of the page size the server applied, inside the
            metadata; a page that fills it is not the last.
        max_items_without_total: The most items read of a collection whose
            first page gives no total: without one, a server that never sends
            a short page would be read for ever. The collection then ends
            with a `PagingLoop` failure, what was read kept. Raise it for
            longer listings of an API that leaves the total out.
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    max_page_size: int = 500
    page_size: int | None = attrs.field(default=None, validator=_check_page_size)
    data_key: str = "data"
    meta_key: str = "meta"
    total_key: str = "total"
    limit_key: str = "limit"
    max_items_without_total: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class ApiConfig:
    """Everything about the API's shape that a deployment may need to change.

    Attributes:
        base_url: The API root; paths are appended to it.
        paths: The path template of each endpoint.
        pages: Paging parameters and envelope keys.
        aliases: Wire names that differ from the default camelCase of a
            field, per model class: ``{Device: {"rated_current_a": "ratedCurrent"}}``.
    """

    base_url: str = DEFAULT_BASE_URL
    paths: Paths = Paths()
    pages: PageFormat = PageFormat()
    aliases: Mapping[type, Mapping[str, str]] = attrs.field(factory=dict)


def usable_id(value: object) -> bool:
    """True if `value` can be one segment of a URL path as it is.

    Not empty, not ``.`` or ``..`` (which walk the path even quoted), and no
    ``/``, ``\\`` or control character: servers that decode ``%2F`` before
    routing would read those as more segments, and ``a/../b`` as ``b``.
    """
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and _PATH_BREAKERS.search(value) is None
    )


_PATH_BREAKERS = re.compile(r"[/\\\x00-\x1f\x7f]")


class Collection(NamedTuple):
    """One listing of the API: where it lives, what it holds, what it belongs to.

    A named tuple, not an attrs class: five rows made once, at import, where an
    attrs class's generated methods would cost every process's start-up.

    Attributes:
        name: The collection's name in failure records (``site_devices``...).
        path: The `Paths` attribute of its path template.
        parent: The template's parameter naming the parent (None for ``locations``).
        model: The model of its items.
        kind: The node kind of its items.
        depth: How far below an account's locations it lies.
    """

    name: CollectionName
    path: str
    parent: str | None
    model: type[Any]
    kind: NodeKind
    depth: int

    def path_of(self, paths: Paths) -> str:
        """This collection's template in `paths`."""
        template: str = getattr(paths, self.path)
        return template


COLLECTIONS: Mapping[CollectionName, Collection] = {
    collection.name: collection
    for collection in (
        Collection("locations", "locations", None, Location, "location", 0),
        Collection("sites", "location_sites", "location_id", Site, "site", 1),
        Collection("rooms", "site_rooms", "site_id", Room, "room", 2),
        Collection("site_devices", "site_devices", "site_id", Device, "device", 2),
        Collection("room_devices", "room_devices", "room_id", Device, "device", 3),
    )
}
"""The one table of the API's listings: the controllers and the crawl read it."""


# Pages a collection may have (500 items each: 50 million items). A larger
# total is no portfolio but a broken or hostile server.
MAX_PAGES = 100_000


class PagingGuard:
    """Ends a collection's paging that goes round in circles or has no end.

    Made from the first page of a collection that has more pages; each later
    page goes through `check` before it is used. It holds the ids read so far
    in this collection only, while the collection is read: at most its item
    bound. A collection of one page needs no guard and costs nothing.

    Bounds: with a total, the pages it takes at the first page's size (plus
    a little slack for pages served short) and the total (plus one page);
    without one, `PageFormat.max_items_without_total` items and the pages
    they take.

    Args:
        first: The collection's first page (not its last).
        pages: The paging settings.
        where: The collection's path, for messages.

    Raises:
        PagingLoop: the first page's total asks for more than `MAX_PAGES` pages.
    """

    __slots__ = (
        "_items",
        "_max_items",
        "_max_pages",
        "_pages",
        "_previous",
        "_seen",
        "_what",
        "ended",
    )

    def __init__(self, first: Page[Any], pages: PageFormat, where: str) -> None:
        step = max(1, first.size)
        total = first.total
        if total is None:
            self._max_items = pages.max_items_without_total
            self._what = f"{self._max_items} items without a total (max_items_without_total)"
        else:
            self._max_items = total + pages.max_page_size
            self._what = f"its total of {total} items"
        expected = -(-(self._max_items if total is None else total) // step)
        if total is not None and expected - 1 > MAX_PAGES:
            raise PagingLoop(
                f"the collection claims {total} items: {expected - 1} more pages, beyond "
                f"the {MAX_PAGES} a collection may have; only its first page was read",
                method="GET",
                path=where,
            )
        # Pages served shorter than the first (a server's smaller maximum now and then).
        self._max_pages = expected + 10 + expected // 10
        self._pages = 1
        self._items = first.size
        self._previous = _ids(first.items)
        self._seen = set(self._previous)
        # Set once a page failed the check: later pages of the collection are dropped.
        self.ended = False

    def check(self, page: Page[Any], where: str) -> None:
        """Count `page` in; raise if it repeats what was read or passes a bound.

        Args:
            page: A page after the first, in the order they were read.
            where: Its request path, for the message.

        Raises:
            PagingLoop: every id of `page` was read already in this collection
                (the page before, again, or a circle), or the collection now
                has more pages or items than its bounds. `ended` is then set.
        """
        self._pages += 1
        self._items += page.size
        if page.items:
            ids = _ids(page.items)
            seen = self._seen
            # The first id decides almost every page at the cost of one look-up.
            if ids[0] in seen and seen.issuperset(ids):
                again = "the page before, again" if ids == self._previous else "a circle"
                raise self._end(
                    f"the page at offset {page.offset} holds only ids this collection gave "
                    f"already ({again})",
                    where,
                )
            seen.update(ids)
            self._previous = ids
        if self._items > self._max_items or self._pages > self._max_pages:
            raise self._end(
                f"the collection goes past {self._what} or {self._max_pages} pages "
                f"(page {self._pages}, {self._items} items)",
                where,
            )

    def _end(self, reason: str, where: str) -> PagingLoop:
        self.ended = True
        self._seen, self._previous = set(), []  # nothing more is checked: free the memory
        message = f"{reason}: its paging would not end; the pages before are kept"
        return PagingLoop(message, method="GET", path=where)


def _ids(items: Sequence[Any]) -> list[str]:
    return [item.id for item in items]
