"""Resource controllers: ``client.locations``, ``.sites``, ``.rooms``, ``.devices``.

Each calls only the public methods of a `Requester` (the one request path);
none touches HTTP itself. Paths come from the one table of collections,
`COLLECTIONS`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Generic, TypeVar

from ._config import COLLECTIONS, CollectionName, PagingGuard
from .models import Device, Location, Page, Room, Site

if TYPE_CHECKING:
    from ._transport import Requester

__all__ = ["Devices", "Listing", "Locations", "Rooms", "Sites"]

T = TypeVar("T")


class Listing(Generic[T]):
    """One collection of the API: a location's sites, a site's devices...

    Args:
        requester: The request path.
        name: The collection (a key of `COLLECTIONS`).
        parent_id: The id it belongs to (None for the account's locations).
    """

    def __init__(self, requester: Requester, name: CollectionName, parent_id: str | None) -> None:
        collection = COLLECTIONS[name]
        self._requester = requester
        self._model: type[T] = collection.model
        template = collection.path_of(requester.config.paths)
        params = {} if collection.parent is None else {collection.parent: parent_id or ""}
        # Checked now: an id that cannot be a path segment fails before any request.
        self.path = requester.path(template, **params)

    def __repr__(self) -> str:
        return f"Listing({self.path!r})"

    async def page(self, *, offset: int = 0, limit: int | None = None) -> Page[T]:
        """One page; `limit` None: the configured page size."""
        return await self._requester.get_page(
            self.path, self._model, offset=offset, limit=self._requester.page_size(limit)
        )

    async def pages(self, *, page_size: int | None = None) -> AsyncIterator[Page[T]]:
        """Every page, in order, each fetched as the iteration reaches it.

        Raises:
            PagingLoop: a page holds only items this listing gave already (the
                server goes round in circles), or the listing has more pages
                or items than its first page's total, or without one
                ``ApiConfig.pages.max_items_without_total``, allows. The pages
                before it were given.
        """
        requester = self._requester
        settings = requester.config.pages
        limit = requester.page_size(page_size)
        offset = 0
        guard: PagingGuard | None = None
        while True:
            page = await requester.get_page(self.path, self._model, offset=offset, limit=limit)
            if guard is not None:
                where = f"{settings.offset_param}={offset}&{settings.limit_param}={limit}"
                guard.check(page, f"{self.path}?{where}")
            yield page
            if page.is_last:
                return
            if guard is None:
                # A second page is coming: from now on the listing is watched for loops.
                guard = PagingGuard(page, settings, self.path)
            offset += page.size

    async def iter(self, *, page_size: int | None = None) -> AsyncIterator[T]:
        """Every item, fetched page by page as the iteration proceeds (see `pages`)."""
        async for page in self.pages(page_size=page_size):
            for item in page.items:
                yield item

    async def list(self, *, page_size: int | None = None) -> list[T]:
        """Every item, in a list."""
        return [item async for item in self.iter(page_size=page_size)]


class _Controller:
    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def _get(self, template: str, cls: type[T], **ids: str) -> T:
        return await self._requester.get_one(self._requester.path(template, **ids), cls)


class Locations(_Controller):
    """The customer's locations (``GET /locations``, ``GET /locations/{id}``)."""

    def _listing(self) -> Listing[Location]:
        return Listing(self._requester, "locations", None)

    async def page(self, *, offset: int = 0, limit: int | None = None) -> Page[Location]:
        """One page of locations."""
        return await self._listing().page(offset=offset, limit=limit)

    def pages(self, *, page_size: int | None = None) -> AsyncIterator[Page[Location]]:
        """Every page of locations, in order."""
        return self._listing().pages(page_size=page_size)

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[Location]:
        """Every location, fetched page by page as the iteration proceeds."""
        return self._listing().iter(page_size=page_size)

    async def list(self, *, page_size: int | None = None) -> list[Location]:
        """Every location, in a list."""
        return await self._listing().list(page_size=page_size)

    async def get(self, location_id: str) -> Location:
        """One location by id."""
        paths = self._requester.config.paths
        return await self._get(paths.location, Location, location_id=location_id)


class Sites(_Controller):
    """Sites of a location (``GET /locations/{id}/sites``, ``GET /sites/{id}``)."""

    def of(self, location_id: str) -> Listing[Site]:
        """The sites of a location (``page``, ``pages``, ``iter``, ``list``)."""
        return Listing(self._requester, "sites", location_id)

    async def page(
        self, location_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Page[Site]:
        """One page of a location's sites."""
        return await self.of(location_id).page(offset=offset, limit=limit)

    def pages(self, location_id: str, *, page_size: int | None = None) -> AsyncIterator[Page[Site]]:
        """Every page of a location's sites."""
        return self.of(location_id).pages(page_size=page_size)

    def iter(self, location_id: str, *, page_size: int | None = None) -> AsyncIterator[Site]:
        """Every site of a location."""
        return self.of(location_id).iter(page_size=page_size)

    async def list(self, location_id: str, *, page_size: int | None = None) -> list[Site]:
        """Every site of a location, in a list."""
        return await self.of(location_id).list(page_size=page_size)

    async def get(self, site_id: str) -> Site:
        """One site by id."""
        return await self._get(self._requester.config.paths.site, Site, site_id=site_id)


class Rooms(_Controller):
    """Rooms of a site (``GET /sites/{id}/rooms``)."""

    def of(self, site_id: str) -> Listing[Room]:
        """The rooms of a site (``page``, ``pages``, ``iter``, ``list``)."""
        return Listing(self._requester, "rooms", site_id)

    async def page(self, site_id: str, *, offset: int = 0, limit: int | None = None) -> Page[Room]:
        """One page of a site's rooms."""
        return await self.of(site_id).page(offset=offset, limit=limit)

    def pages(self, site_id: str, *, page_size: int | None = None) -> AsyncIterator[Page[Room]]:
        """Every page of a site's rooms."""
        return self.of(site_id).pages(page_size=page_size)

    def iter(self, site_id: str, *, page_size: int | None = None) -> AsyncIterator[Room]:
        """Every room of a site."""
        return self.of(site_id).iter(page_size=page_size)

    async def list(self, site_id: str, *, page_size: int | None = None) -> list[Room]:
        """Every room of a site, in a list."""
        return await self.of(site_id).list(page_size=page_size)


class Devices(_Controller):
    """Devices of a site or of a room, and single devices.

    ``devices.of_site(site_id)`` lists every device of a site, those in no
    room included (``GET /sites/{id}/devices``); ``devices.of_room(room_id)``
    a room's devices (``GET /rooms/{id}/devices``). Each has ``page``,
    ``pages``, ``iter`` and ``list``.
    """

    def of_site(self, site_id: str) -> Listing[Device]:
        """Every device of a site, those in no room (a main meter, a gateway) included."""
        return Listing(self._requester, "site_devices", site_id)

    def of_room(self, room_id: str) -> Listing[Device]:
        """The devices of a room."""
        return Listing(self._requester, "room_devices", room_id)

    async def get(self, device_id: str) -> Device:
        """One device by id."""
        return await self._get(self._requester.config.paths.device, Device, device_id=device_id)
