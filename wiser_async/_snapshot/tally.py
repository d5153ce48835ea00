"""How far a crawl to a file has come, earlier runs included, and how far it has to go.

A walk finishes its work a unit at a time: an account's location list, a
location's site list, a site's rooms and devices. `CrawlTally` counts what
each unit holds, the units earlier runs recorded in the checkpoint
included, and estimates the whole portfolio level by level from the units
done so far: the accounts not listed yet hold as many locations as those
listed did on average, the locations not listed yet as many sites, the
sites not read yet as many rooms and devices. Before a unit of the level
above is done, the units begun stand in for them, each at the size its
first page announced (the walk's page totals, taken by `settle` when every page
the walk sent has been counted: no total then covers a page not counted).
A level has no estimate before one of its units is done or begun: nothing
is guessed from nothing.

Page totals are not enough on their own: they speak only of the
collections read so far, so a total summed from them grows as the walk
finds more collections (a bar from it is always nearly full).
"""

from __future__ import annotations

from collections.abc import Mapping

from .._config import NodeKind
from .._crawl import Batch, Event, Unit, UnitDone

__all__ = ["KINDS", "CrawlTally"]

KINDS: tuple[NodeKind, ...] = ("location", "site", "room", "device")
# The kind of unit whose items each kind is: the unit that lists them.
_LISTED_BY = {"location": "account", "site": "location", "room": "site", "device": "site"}
# Failures that say a whole account was lost (its grant, or the client, refused).
_WHOLE_ACCOUNT = "*"


class CrawlTally:
    """The items of a crawl's whole output so far, and estimated totals.

    Args:
        accounts: How many accounts the crawl reads.

    Attributes:
        found: Items found so far, by kind: those of units earlier runs
            wrote and those this run has read (finished units or not).
        earlier: Of `found`, what earlier runs wrote.
    """

    def __init__(self, accounts: int) -> None:
        self.accounts = accounts
        self.found: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.earlier: dict[str, int] = dict.fromkeys(KINDS, 0)
        # Units done, earlier runs included, by the kind of unit, and what they hold.
        self._done: dict[str, int] = {"account": 0, "location": 0, "site": 0}
        self._held: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._open: dict[Unit, dict[str, int]] = {}
        self._lost: set[str] = set()
        self._listed: set[str] = set()
        # By kind: (items the units begun announced, how many units) when last settled.
        self._announced: dict[str, tuple[int, int]] = {}

    def add_earlier(self, unit: Unit, items: Mapping[str, int]) -> None:
        """Count a unit an earlier run finished (a checkpoint record) and what it held."""
        self._finish(unit, items)
        for kind, count in items.items():
            if kind in self.found:
                self.found[kind] += count
                self.earlier[kind] += count

    def observe(self, event: Event) -> dict[str, int]:
        """Count what a walk's message says; for a finished unit, what the unit holds."""
        if isinstance(event, Batch):
            counts = self._open.setdefault(event.unit, {})
            counts[event.kind] = counts.get(event.kind, 0) + len(event.items)
            self.found[event.kind] += len(event.items)
            return counts
        if isinstance(event, UnitDone):
            counts = self._open.pop(event.unit, {})
            self._finish(event.unit, counts)
            return counts
        if event.failure.resource == _WHOLE_ACCOUNT:
            self._lost.add(event.failure.account)
        return {}

    def _finish(self, unit: Unit, items: Mapping[str, int]) -> None:
        kind = unit[0]
        if kind not in self._done:
            return
        self._done[kind] += 1
        if kind == "account":
            self._listed.add(unit[1])
        for name, count in items.items():
            if name in self._held:
                self._held[name] += count

    def _begun(self, kind: str) -> list[int]:
        """What was read so far of each unit begun (not done) that lists `kind`."""
        unit = _LISTED_BY[kind]
        return [
            items[kind] for key, items in self._open.items() if key[0] == unit and items.get(kind)
        ]

    def settle(self, expected: Mapping[NodeKind, int]) -> None:
        """Take the walk's page totals (`Walk.expected`), with every page it sent counted.

        Call it only when the walk's buffer is empty: a total taken with a page
        still waiting there would count a collection not begun here yet.
        """
        for kind in KINDS:
            # Units done say more than announcements (and a resumed walk's totals
            # count again the lists of the units earlier runs finished).
            if self._done[_LISTED_BY[kind]]:
                continue
            begun = self._begun(kind)
            if begun:
                self._announced[kind] = (expected.get(kind, 0), len(begun))

    def estimate(self) -> dict[str, int | None]:
        """The whole portfolio's items by kind, as far as they can be estimated yet (else None).

        Never less than what was found; exact for a portfolio of equal parts.
        """
        # Accounts lost before their locations were listed will list none.
        parents: dict[str, float | None] = {
            "account": float(self.accounts - len(self._lost - self._listed))
        }
        totals: dict[str, int | None] = {}
        for kind in KINDS:
            unit = _LISTED_BY[kind]
            count = parents[unit]
            per_unit: float | None = None
            listed = self._done[unit]
            if listed:
                per_unit = self._held[kind] / listed
            elif begun := self._begun(kind):
                per_unit = sum(begun) / len(begun)
                announced, units = self._announced.get(kind, (0, 0))
                if units:
                    per_unit = max(per_unit, announced / units)
            total: float | None = None
            if count is not None and per_unit is not None:
                left = max(0.0, count - listed)  # units not done (or not begun) yet
                total = self._held[kind] + left * per_unit
            if kind in ("location", "site"):
                parents[kind] = total
            totals[kind] = None if total is None else max(round(total), self.found[kind])
        return totals
