"""Site: a metered building or installation of a location.

Upstream: ``GET /locations/{locationId}/sites`` and ``GET /sites/{siteId}``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["Site", "SiteType"]


class SiteType(enum.StrEnum):
    """Known site types. Other values arrive as plain strings."""

    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    INDUSTRIAL = "industrial"


@attrs.define(kw_only=True)
class Site:
    """A site (unknown fields kept in `extra`; an unknown `type` kept as its string)."""

    id: str
    location_id: str | None = None
    name: str | None = None
    type: SiteType | str | None = None
    timezone: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
