"""Resource controllers: ``client.locations``, ``.sites``, ``.rooms``, ``.devices``.

Each calls only the client's request path; none touches HTTP itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar

from .models import Device, Location, Page, Room, Site

if TYPE_CHECKING:
    from ._client import AsyncWiserClient

__all__ = ["Devices", "Locations", "Rooms", "Sites"]

T = TypeVar("T")


class _Controller:
    def __init__(self, client: AsyncWiserClient) -> None:
        self._client = client

    def _limit(self, limit: int | None) -> int:
        return self._client._page_size(limit)

    async def _items(self, path: str, cls: type[T], page_size: int | None) -> AsyncIterator[T]:
        async for page in self._client._iter_pages(path, cls, page_size):
            for item in page.items:
                yield item


class Locations(_Controller):
    """The customer's locations (``GET /locations``, ``GET /locations/{id}``)."""

    def _collection(self) -> str:
        return self._client._path(self._client.config.paths.locations)

    async def page(self, *, offset: int = 0, limit: int | None = None) -> Page[Location]:
        """One page of locations."""
        return await self._client._get_page(
            self._collection(), Location, offset=offset, limit=self._limit(limit)
        )

    def pages(self, *, page_size: int | None = None) -> AsyncIterator[Page[Location]]:
        """Every page of locations, in order."""
        return self._client._iter_pages(self._collection(), Location, page_size)

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[Location]:
        """Every location, fetched page by page as the iteration proceeds."""
        return self._items(self._collection(), Location, page_size)

    async def list(self, *, page_size: int | None = None) -> list[Location]:
        """Every location, in a list."""
        return [location async for location in self.iter(page_size=page_size)]

    async def get(self, location_id: str) -> Location:
        """One location by id."""
        path = self._client._path(self._client.config.paths.location, location_id=location_id)
        return await self._client._get_one(path, Location)


class Sites(_Controller):
    """Sites of a location (``GET /locations/{id}/sites``, ``GET /sites/{id}``)."""

    def _collection(self, location_id: str) -> str:
        paths = self._client.config.paths
        return self._client._path(paths.location_sites, location_id=location_id)

    async def page(
        self, location_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Page[Site]:
        """One page of a location's sites."""
        return await self._client._get_page(
            self._collection(location_id), Site, offset=offset, limit=self._limit(limit)
        )

    def pages(self, location_id: str, *, page_size: int | None = None) -> AsyncIterator[Page[Site]]:
        """Every page of a location's sites."""
        return self._client._iter_pages(self._collection(location_id), Site, page_size)

    def iter(self, location_id: str, *, page_size: int | None = None) -> AsyncIterator[Site]:
        """Every site of a location."""
        return self._items(self._collection(location_id), Site, page_size)

    async def list(self, location_id: str, *, page_size: int | None = None) -> list[Site]:
        """Every site of a location, in a list."""
        return [site async for site in self.iter(location_id, page_size=page_size)]

    async def get(self, site_id: str) -> Site:
        """One site by id."""
        path = self._client._path(self._client.config.paths.site, site_id=site_id)
        return await self._client._get_one(path, Site)


class Rooms(_Controller):
    """Rooms of a site (``GET /sites/{id}/rooms``)."""

    def _collection(self, site_id: str) -> str:
        return self._client._path(self._client.config.paths.site_rooms, site_id=site_id)

    async def page(self, site_id: str, *, offset: int = 0, limit: int | None = None) -> Page[Room]:
        """One page of a site's rooms."""
        return await self._client._get_page(
            self._collection(site_id), Room, offset=offset, limit=self._limit(limit)
        )

    def pages(self, site_id: str, *, page_size: int | None = None) -> AsyncIterator[Page[Room]]:
        """Every page of a site's rooms."""
        return self._client._iter_pages(self._collection(site_id), Room, page_size)

    def iter(self, site_id: str, *, page_size: int | None = None) -> AsyncIterator[Room]:
        """Every room of a site."""
        return self._items(self._collection(site_id), Room, page_size)

    async def list(self, site_id: str, *, page_size: int | None = None) -> list[Room]:
        """Every room of a site, in a list."""
        return [room async for room in self.iter(site_id, page_size=page_size)]


class Devices(_Controller):
    """Devices of a site or of a room, and single devices.

    ``site_id=`` lists every device of a site, those in no room included
    (``GET /sites/{id}/devices``); ``room_id=`` lists a room's devices
    (``GET /rooms/{id}/devices``). Give exactly one.
    """

    def _collection(self, site_id: str | None, room_id: str | None) -> str:
        paths = self._client.config.paths
        if site_id is not None and room_id is None:
            return self._client._path(paths.site_devices, site_id=site_id)
        if room_id is not None and site_id is None:
            return self._client._path(paths.room_devices, room_id=room_id)
        raise TypeError("give exactly one of site_id= and room_id=")

    async def page(
        self,
        *,
        site_id: str | None = None,
        room_id: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> Page[Device]:
        """One page of a site's or a room's devices."""
        return await self._client._get_page(
            self._collection(site_id, room_id), Device, offset=offset, limit=self._limit(limit)
        )

    def pages(
        self,
        *,
        site_id: str | None = None,
        room_id: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Page[Device]]:
        """Every page of a site's or a room's devices."""
        return self._client._iter_pages(self._collection(site_id, room_id), Device, page_size)

    def iter(
        self,
        *,
        site_id: str | None = None,
        room_id: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Device]:
        """Every device of a site or a room."""
        return self._items(self._collection(site_id, room_id), Device, page_size)

    async def list(
        self,
        *,
        site_id: str | None = None,
        room_id: str | None = None,
        page_size: int | None = None,
    ) -> list[Device]:
        """Every device of a site or a room, in a list."""
        return [
            device
            async for device in self.iter(site_id=site_id, room_id=room_id, page_size=page_size)
        ]

    async def get(self, device_id: str) -> Device:
        """One device by id."""
        path = self._client._path(self._client.config.paths.device, device_id=device_id)
        return await self._client._get_one(path, Device)
