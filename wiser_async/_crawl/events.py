"""What flows from a walk's workers to its consumer: pages of items, failures, finished units."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeAlias, cast

import attrs

from .._config import NodeKind
from .._decode import RawItem
from ..models import Device
from .results import Failure, Item, Node, Unit

__all__ = ["Batch", "Event", "FailureEvent", "UnitDone"]


@attrs.frozen
class Batch:
    """The items of one page, with the parents they share.

    Attributes:
        kind: The items' node kind.
        account: Whose portfolio they belong to.
        unit: The unit of work (checkpoint record) they belong to.
        items: The decoded items (as `RawItem` in a walk that keeps them as sent).
        location_id: Their location (None for locations).
        site_id: Their site (None for locations and sites).
        room_id: The room whose listing held them (devices read by room).
    """

    kind: NodeKind
    account: str
    unit: Unit
    items: Sequence[Item | RawItem]
    location_id: str | None
    site_id: str | None
    room_id: str | None

    def room_of(self, device: Device | RawItem) -> str | None:
        """A room's listing places its devices; a site's mixes rooms: each its own roomId."""
        return self.room_id if self.room_id is not None else device.room_id

    def nodes(self) -> Iterator[Node]:
        """The items as `Node` objects (of a walk that decodes them into models)."""
        if self.items and type(self.items[0]) is RawItem:
            raise TypeError("a walk keeping items as sent is read through its events()")
        items = cast(Sequence[Item], self.items)
        if self.kind == "device":
            for item in items:
                room_id = self.room_of(item)  # type: ignore[arg-type]
                yield Node("device", self.account, item, self.location_id, self.site_id, room_id)
        else:
            for item in items:
                yield Node(self.kind, self.account, item, self.location_id, self.site_id)


@attrs.frozen
class FailureEvent:
    """A part that could not be read, in the unit it belongs to."""

    unit: Unit
    failure: Failure


@attrs.frozen
class UnitDone:
    """Every page of a unit was read and sent: what it found is complete."""

    unit: Unit


Event: TypeAlias = Batch | FailureEvent | UnitDone
"""A message of `Walk.events()`."""
