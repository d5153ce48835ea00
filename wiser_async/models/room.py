"""Room: a part of a site that devices can be placed in.

Upstream: ``GET /sites/{siteId}/rooms``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["Room", "RoomType"]


class RoomType(enum.StrEnum):
    """Known room types. Other values arrive as plain strings."""

    KITCHEN = "kitchen"
    LIVING = "living"
    BEDROOM = "bedroom"
    BATHROOM = "bathroom"
    OFFICE = "office"
    TECHNICAL = "technical"


@attrs.define(kw_only=True)
class Room:
    """A room (unknown fields kept in `extra`; an unknown `type` kept as its string)."""

    id: str
    site_id: str | None = None
    name: str | None = None
    type: RoomType | str | None = None
    floor: int | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
