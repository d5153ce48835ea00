"""Where the API lives and how its JSON is spelled.

The public contract of the Wiser Energy Monitoring Cloud API is only partly
published, so every URL, path template, paging parameter, envelope key and
field name here is a default, not a fact: each can be changed without
touching the library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import attrs

from .models import Device, Location, Room, Site

__all__ = [
    "COLLECTIONS",
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "ApiConfig",
    "Collection",
    "CollectionName",
    "NodeKind",
    "PageFormat",
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
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    max_page_size: int = 500
    page_size: int | None = attrs.field(default=None, validator=_check_page_size)
    data_key: str = "data"
    meta_key: str = "meta"
    total_key: str = "total"
    limit_key: str = "limit"


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


@attrs.frozen
class Collection:
    """One listing of the API: where it lives, what it holds, what it belongs to.

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
