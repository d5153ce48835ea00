"""Device: a metering or control device of a site, possibly in a room.

Upstream: ``GET /sites/{siteId}/devices``, ``GET /rooms/{roomId}/devices`` and
``GET /devices/{deviceId}``. A device in no room (a main meter, a gateway)
has ``room_id=None``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["Device", "DeviceCategory", "DeviceStatus", "DeviceUsage"]


class DeviceCategory(enum.StrEnum):
    """Known device categories. Other values arrive as plain strings."""

    GATEWAY = "gateway"
    METER = "meter"
    ENERGY_SENSOR = "energy-sensor"
    SMART_PLUG = "smart-plug"
    THERMOSTAT = "thermostat"


class DeviceStatus(enum.StrEnum):
    """Known connectivity states. Other values arrive as plain strings."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class DeviceUsage(enum.StrEnum):
    """Known uses of the metered circuit. Other values arrive as plain strings."""

    HEATING = "heating"
    COOLING = "cooling"
    EV_CHARGING = "ev-charging"
    WATER_HEATING = "water-heating"
    LIGHTING = "lighting"
    PLUGS = "plugs"
    MAIN = "main"


@attrs.define(kw_only=True)
class Device:
    """A device (unknown fields kept in `extra`; unknown enum values kept as strings)."""

    id: str
    site_id: str | None = None
    room_id: str | None = None
    name: str | None = None
    category: DeviceCategory | str | None = None
    model: str | None = None
    commercial_reference: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    status: DeviceStatus | str | None = None
    last_seen_at: datetime | None = None
    rated_current_a: float | None = None
    phases: int | None = None
    usage: DeviceUsage | str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
