"""Typed models of the API's resources, one module per resource."""

from .device import Device, DeviceCategory, DeviceStatus, DeviceUsage
from .location import Address, Location
from .page import Page
from .room import Room, RoomType
from .site import Site, SiteType

__all__ = [
    "Address",
    "Device",
    "DeviceCategory",
    "DeviceStatus",
    "DeviceUsage",
    "Location",
    "Page",
    "Room",
    "RoomType",
    "Site",
    "SiteType",
]
