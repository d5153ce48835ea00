"""Where the API lives and how its JSON is spelled.

The public contract of the Wiser Energy Monitoring Cloud API is only partly
published, so every URL, path template, paging parameter, envelope key and
field name here is a default, not a fact: each can be changed without
touching the library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

__all__ = [
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "ApiConfig",
    "PageFormat",
    "Paths",
]

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


def _check_page_size(instance: PageFormat, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= instance.max_page_size:
        raise ValueError(
            f"page_size must be between 1 and max_page_size ({instance.max_page_size})"
        )


@attrs.frozen(kw_only=True)
class PageFormat:
    """How collections are paged: query parameters and envelope keys.

    Attributes:
        offset_param: Query parameter of the first item's index.
        limit_param: Query parameter of the page size.
        page_size: Items asked per page by default (the contract's default is 100).
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
    page_size: int = attrs.field(default=100, validator=_check_page_size)
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
