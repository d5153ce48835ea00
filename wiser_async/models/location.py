"""Location: a customer's place, which holds sites.

Upstream: ``GET /locations`` and ``GET /locations/{locationId}`` of the Wiser
Energy Monitoring Cloud API (Schneider Electric Exchange). Field names here
are the project's reconstruction of the contract; each is renamed through
`ApiConfig.aliases` if the real API differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["Address", "Location"]


@attrs.define(kw_only=True)
class Address:
    """A postal address. `country` is an ISO 3166 alpha-2 code."""

    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class Location:
    """A location (wire: camelCase JSON; unknown fields kept in `extra`)."""

    id: str
    name: str | None = None
    address: Address | None = None
    timezone: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
