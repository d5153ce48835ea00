"""The synthetic portfolio: every entity is a pure function of its id.

Ids encode the customer tag and the entity's indices, so nothing is stored:
``loc-<tag>-<i>``, ``site-<tag>-<i>-<j>``, ``room-<tag>-<i>-<j>-<k>`` and
``dev-<tag>-<i>-<j>-<d>``. A portfolio of a million devices costs nothing until
a page of it is read, and reading a page costs only that page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import attrs

from ._synthetic_data import (
    CATEGORIES,
    CITIES,
    CREATED_SPAN,
    DEVICE_WORDS,
    EPOCH_CREATED,
    EPOCH_SEEN,
    LOCATION_NOUNS,
    LOCATION_WORDS,
    MASK,
    RATED_CURRENTS,
    ROOM_CATEGORIES,
    ROOM_NAMES,
    ROOM_TYPES,
    SITE_NOUNS,
    SITE_TYPES,
    STATUSES,
    STREETS,
    USAGES,
    mix,
    timestamp,
)

__all__ = ["Portfolio", "PortfolioSpec", "customer_tag"]

_ARITY = {"loc": 1, "site": 2, "room": 3, "dev": 3}
_COUNT = attrs.validators.ge(0)


def customer_tag(seed: int, customer: str) -> str:
    """The short hex digest that ties ids to one (seed, customer) pair."""
    return hashlib.blake2b(f"{seed}\x00{customer}".encode(), digest_size=4).hexdigest()


@attrs.frozen
class PortfolioSpec:
    """The shape of a customer's synthetic portfolio.

    Args:
        seed: Mixed with the customer name into every id and value; the same
            seed and customer always give the same portfolio.
        locations: Locations of the customer.
        sites_per_location: Sites in each location.
        rooms_per_site: Rooms in each site.
        devices_per_site: Devices in each site, unassigned ones included.
        unassigned_devices_per_site: The first devices of each site (a gateway,
            then main meters) that sit in no room (``roomId: null``); the others
            go round-robin over the site's rooms. With no rooms, every device is
            unassigned.

    Raises:
        ValueError: A count is negative, or more devices are unassigned than exist.

    .. versionadded:: 0.1.0
    """

    seed: int = 0
    locations: int = attrs.field(default=3, validator=_COUNT)
    sites_per_location: int = attrs.field(default=4, validator=_COUNT)
    rooms_per_site: int = attrs.field(default=3, validator=_COUNT)
    devices_per_site: int = attrs.field(default=12, validator=_COUNT)
    unassigned_devices_per_site: int = attrs.field(default=2, validator=_COUNT)

    def __attrs_post_init__(self) -> None:
        if self.unassigned_devices_per_site > self.devices_per_site:
            raise ValueError(
                "unassigned_devices_per_site must be <= devices_per_site, got "
                f"{self.unassigned_devices_per_site} > {self.devices_per_site}"
            )


def _window(total: int, offset: int, limit: int | None) -> range:
    stop = total if limit is None else min(total, offset + limit)
    return range(max(offset, 0), max(stop, 0))


@attrs.frozen
class Portfolio:
    """The ground truth of one customer's portfolio, computed on demand.

    Iterators take ``offset`` and ``limit`` so a slice costs only its length.
    Entities are JSON-ready dicts in the API's wire form (camelCase). Listing
    the children of an id that does not exist raises :class:`KeyError`.

    Args:
        spec: The portfolio's shape and seed.
        customer: The customer it belongs to; mixed into every id.

    .. versionadded:: 0.1.0
    """

    spec: PortfolioSpec
    customer: str
    tag: str = attrs.field(init=False)
    _hash: int = attrs.field(init=False, repr=False, eq=False)
    _unassigned: int = attrs.field(init=False, repr=False, eq=False)

    @tag.default
    def _make_tag(self) -> str:
        return customer_tag(self.spec.seed, self.customer)

    @_hash.default
    def _make_hash(self) -> int:
        return mix(self.spec.seed & MASK, int(self.tag, 16))

    @_unassigned.default
    def _make_unassigned(self) -> int:
        # With no rooms every device is unassigned, whatever the spec says.
        spec = self.spec
        return spec.unassigned_devices_per_site if spec.rooms_per_site else spec.devices_per_site

    # -- counts ---------------------------------------------------------------

    @property
    def n_locations(self) -> int:
        """Number of locations."""
        return self.spec.locations

    @property
    def n_sites(self) -> int:
        """Number of sites, all locations together."""
        return self.spec.locations * self.spec.sites_per_location

    @property
    def n_rooms(self) -> int:
        """Number of rooms, all sites together."""
        return self.n_sites * self.spec.rooms_per_site

    @property
    def n_devices(self) -> int:
        """Number of devices, all sites together."""
        return self.n_sites * self.spec.devices_per_site

    def _room_device_count(self, k: int) -> int:
        """How many devices room ``k`` of a site holds (round-robin assignment)."""
        assigned_from_k = self.spec.devices_per_site - self._unassigned - k
        return max(0, -(-assigned_from_k // self.spec.rooms_per_site))

    # -- ids ------------------------------------------------------------------

    def _parse(self, kind: str, entity_id: str) -> tuple[int, ...] | None:
        """The indices in ``entity_id`` if it names an existing entity of ``kind``."""
        parts = entity_id.split("-")
        arity = _ARITY.get(kind)
        if arity is None or len(parts) != arity + 2 or parts[0] != kind or parts[1] != self.tag:
            return None
        numbers = parts[2:]
        # Canonical decimal only, so one entity has exactly one id.
        if not all(n.isascii() and n.isdigit() and (n == "0" or n[0] != "0") for n in numbers):
            return None
        indices = tuple(map(int, numbers))
        spec = self.spec
        last = spec.rooms_per_site if kind == "room" else spec.devices_per_site
        bounds = (spec.locations, spec.sites_per_location, last)
        if any(index >= bound for index, bound in zip(indices, bounds, strict=False)):
            return None
        return indices

    # -- entities -------------------------------------------------------------

    def _location(self, i: int) -> dict[str, Any]:
        h = mix(self._hash, i)
        city, country, tz, postal = CITIES[h % len(CITIES)]
        created = EPOCH_CREATED + (h >> 8) % CREATED_SPAN
        return {
            "id": f"loc-{self.tag}-{i}",
            "name": f"{LOCATION_WORDS[(h >> 12) % 8]} {LOCATION_NOUNS[(h >> 16) % 7]} {i + 1}",
            "address": {
                "street": f"{(h >> 20) % 200 + 1} {STREETS[(h >> 28) % len(STREETS)]}",
                "city": city,
                "postalCode": postal(h >> 32),
                "country": country,
            },
            "timezone": tz,
            "createdAt": timestamp(created, h >> 40),
            "updatedAt": timestamp(created + (h >> 44) % 40_000_000, h >> 50),
            # Not in the contract: clients must keep fields they do not know.
            "customerReference": f"CR-{(h >> 24) % 1_000_000:06d}",
        }

    def _site(self, i: int, j: int) -> dict[str, Any]:
        h = mix(mix(self._hash, i), j + 0x5173)
        city_tz = CITIES[mix(self._hash, i) % len(CITIES)][2]
        global_index = i * self.spec.sites_per_location + j
        created = EPOCH_CREATED + (h >> 8) % CREATED_SPAN
        return {
            "id": f"site-{self.tag}-{i}-{j}",
            "locationId": f"loc-{self.tag}-{i}",
            "name": f"{SITE_NOUNS[h % 7]} {chr(65 + j % 26)}{j // 26 or ''}",
            "type": "agricultural" if global_index % 4 == 3 else SITE_TYPES[(h >> 4) % 3],
            "timezone": city_tz,
            "createdAt": timestamp(created, h >> 40),
            "updatedAt": timestamp(created + (h >> 44) % 40_000_000, h >> 50),
        }

    def _room(self, i: int, j: int, k: int) -> dict[str, Any]:
        spec = self.spec
        h = mix(mix(mix(self._hash, i), j), k + 0x7007)
        global_index = (i * spec.sites_per_location + j) * spec.rooms_per_site + k
        room_type = "garage" if global_index % 5 == 4 else ROOM_TYPES[h % 6]
        return {
            "id": f"room-{self.tag}-{i}-{j}-{k}",
            "siteId": f"site-{self.tag}-{i}-{j}",
            "name": f"{ROOM_NAMES[room_type]} {k + 1}",
            "type": room_type,
            "floor": (h >> 8) % 7 - 1,
        }

    def _device(self, site_hash: int, prefix: str, site_id: str, d: int) -> dict[str, Any]:
        h = mix(site_hash, d)
        unassigned = self._unassigned
        if d % 7 == 6:
            category = "heat-pump"
        elif d == 0 and unassigned:
            category = "gateway"
        elif d < unassigned:
            category = "meter"
        else:
            category = ROOM_CATEGORIES[h % 5]
        noun, models = CATEGORIES[category]
        model, reference, phases = models[(h >> 4) % len(models)]
        rooms = self.spec.rooms_per_site
        room_id = None if d < unassigned else f"room-{prefix}-{(d - unassigned) % rooms}"
        status = STATUSES[(h >> 8) % 6]
        device: dict[str, Any] = {
            "id": f"dev-{prefix}-{d}",
            "siteId": site_id,
            "roomId": room_id,
            "name": (f"{'Main' if d < unassigned else DEVICE_WORDS[(h >> 12) % 8]} {noun} {d + 1}"),
            "category": category,
            "model": model,
            "commercialReference": reference,
            "serialNumber": f"{reference[:4]}{(h >> 16) & 0xFFFFFFFF:010d}",
            "status": status,
            "lastSeenAt": (
                None
                if status == "unknown"
                else timestamp(EPOCH_SEEN - (h >> 20) % 2_592_000, h >> 48)
            ),
        }
        if (h >> 40) % 5:
            device["firmwareVersion"] = f"{(h >> 42) % 4 + 1}.{(h >> 44) % 12}.{(h >> 46) % 30}"
        if category != "gateway":
            device["ratedCurrentA"] = RATED_CURRENTS[(h >> 52) % 8]
            device["phases"] = phases
            if category == "heat-pump":
                device["usage"] = "heating"
            elif d < unassigned:
                device["usage"] = "main"
            else:
                device["usage"] = USAGES[(h >> 56) % 6]
        if category == "heat-pump":
            # Not in the contract: clients must keep fields they do not know.
            device["vendorExtension"] = {"protocol": "zigbee", "channel": 15}
        return device

    # -- lookups --------------------------------------------------------------

    def entity(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        """The entity of ``kind`` (``loc``, ``site``, ``room`` or ``dev``), or ``None``."""
        ix = self._parse(kind, entity_id)
        if ix is None:
            return None
        if kind == "loc":
            return self._location(*ix)
        if kind == "site":
            return self._site(*ix)
        if kind == "room":
            return self._room(*ix)
        i, j, d = ix
        prefix = f"{self.tag}-{i}-{j}"
        return self._device(self._site_hash(i, j), prefix, f"site-{prefix}", d)

    def location(self, location_id: str) -> dict[str, Any] | None:
        """The location with this id, or ``None``."""
        return self.entity("loc", location_id)

    def site(self, site_id: str) -> dict[str, Any] | None:
        """The site with this id, or ``None``."""
        return self.entity("site", site_id)

    def room(self, room_id: str) -> dict[str, Any] | None:
        """The room with this id, or ``None``."""
        return self.entity("room", room_id)

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The device with this id, or ``None``."""
        return self.entity("dev", device_id)

    # -- collections ----------------------------------------------------------

    def _site_hash(self, i: int, j: int) -> int:
        return mix(mix(self._hash, i), j + 0xDE71CE)

    def _require(self, kind: str, entity_id: str) -> tuple[int, ...]:
        ix = self._parse(kind, entity_id)
        if ix is None:
            raise KeyError(entity_id)
        return ix

    def locations(self, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The locations, in order."""
        return (self._location(i) for i in _window(self.spec.locations, offset, limit))

    def sites(
        self, location_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The sites of a location, in order."""
        (i,) = self._require("loc", location_id)
        return (self._site(i, j) for j in _window(self.spec.sites_per_location, offset, limit))

    def rooms(
        self, site_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The rooms of a site, in order."""
        i, j = self._require("site", site_id)
        return (self._room(i, j, k) for k in _window(self.spec.rooms_per_site, offset, limit))

    def site_devices(
        self, site_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """All devices of a site, in order: unassigned ones first."""
        i, j = self._require("site", site_id)
        return self._site_devices(i, j, _window(self.spec.devices_per_site, offset, limit))

    def _site_devices(self, i: int, j: int, window: range) -> Iterator[dict[str, Any]]:
        site_hash, prefix = self._site_hash(i, j), f"{self.tag}-{i}-{j}"
        site_id = f"site-{prefix}"
        for d in window:
            yield self._device(site_hash, prefix, site_id, d)

    def room_devices(
        self, room_id: str, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The devices of a room, in order."""
        i, j, k = self._require("room", room_id)
        rooms, first = self.spec.rooms_per_site, self._unassigned + k
        window = _window(self._room_device_count(k), offset, limit)
        # The m-th device of room k is device (unassigned + k + m * rooms) of its site.
        return self._site_devices(
            i, j, range(first + window.start * rooms, first + window.stop * rooms, rooms)
        )

    def devices(self) -> Iterator[dict[str, Any]]:
        """Every device of the portfolio, site by site."""
        spec = self.spec
        for i in range(spec.locations):
            for j in range(spec.sites_per_location):
                yield from self._site_devices(i, j, range(spec.devices_per_site))

    def page(
        self, collection: str, parent_id: str | None, offset: int, limit: int
    ) -> Iterator[dict[str, Any]]:
        """A slice of a collection named as in :meth:`count`.

        Raises:
            KeyError: The parent does not exist, or the collection is unknown.
        """
        if collection == "locations" and parent_id is None:
            return self.locations(offset=offset, limit=limit)
        listers = {
            "sites": self.sites,
            "rooms": self.rooms,
            "site_devices": self.site_devices,
            "room_devices": self.room_devices,
        }
        if collection not in listers or parent_id is None:
            raise KeyError(collection)
        return listers[collection](parent_id, offset=offset, limit=limit)

    def count(self, collection: str, parent_id: str | None = None) -> int:
        """The length of a collection: ``count("room_devices", room_id)``.

        ``collection`` names one of the iterators above; ``parent_id`` is its
        argument (none for ``locations``).

        Raises:
            KeyError: The parent does not exist, or the collection is unknown.
        """
        spec = self.spec
        if collection == "locations" and parent_id is None:
            return spec.locations
        if collection == "sites" and parent_id is not None:
            self._require("loc", parent_id)
            return spec.sites_per_location
        if collection == "rooms" and parent_id is not None:
            self._require("site", parent_id)
            return spec.rooms_per_site
        if collection == "site_devices" and parent_id is not None:
            self._require("site", parent_id)
            return spec.devices_per_site
        if collection == "room_devices" and parent_id is not None:
            return self._room_device_count(self._require("room", parent_id)[2])
        raise KeyError(collection)
