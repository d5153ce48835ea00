"""Async client for the Wiser Energy Monitoring Cloud API.

::

    async with WiserOAuth(client_id=..., client_secret=..., redirect_uri=...) as oauth:
        async with AsyncWiserClient(oauth, "customer-1") as client:
            async for location in client.locations.iter():
                ...
"""

from ._client import UNSET, AsyncWiserClient, ClientStats
from ._config import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    ApiConfig,
    PageFormat,
    Paths,
)
from ._oauth import AuthorizationRequest, WiserOAuth
from ._retry import RetryPolicy
from .models import (
    Address,
    Device,
    DeviceCategory,
    DeviceStatus,
    DeviceUsage,
    Location,
    Page,
    Room,
    RoomType,
    Site,
    SiteType,
)

__all__ = [
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "UNSET",
    "Address",
    "ApiConfig",
    "AsyncWiserClient",
    "AuthorizationRequest",
    "ClientStats",
    "Device",
    "DeviceCategory",
    "DeviceStatus",
    "DeviceUsage",
    "Location",
    "Page",
    "PageFormat",
    "Paths",
    "RetryPolicy",
    "Room",
    "RoomType",
    "Site",
    "SiteType",
    "WiserOAuth",
]
