"""Gathering a walk into trees: what `AsyncWiserClient.crawl()` returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .events import Batch
from .results import CrawlResult, CrawlStats, Failure, LocationTree, RoomTree, SiteTree
from .walk import Walk

__all__ = ["TreeBuilder", "gather"]


async def gather(
    walk: Walk, accounts: Sequence[str], on_progress: Callable[[Walk], None] | None = None
) -> CrawlResult:
    """Consume `walk` and assemble what it found into per-account trees."""
    builder = TreeBuilder()
    async for event in walk.events():
        if isinstance(event, Batch):
            builder.add(event)
            if on_progress is not None:
                on_progress(walk)
    return builder.result(accounts, walk.failures, walk.stats)


class TreeBuilder:
    """Assembles pages of items into per-account trees."""

    def __init__(self) -> None:
        self.locations: dict[str, dict[str, LocationTree]] = {}
        self.sites: dict[tuple[str, str], SiteTree] = {}
        self.site_location: dict[tuple[str, str], str] = {}
        self.rooms: dict[tuple[str, str], dict[str, RoomTree]] = {}
        # Per site: the pages of its devices.
        self.devices: dict[tuple[str, str], list[Batch]] = {}

    def add(self, batch: Batch) -> None:
        account = batch.account
        if batch.kind == "location":
            trees = self.locations.setdefault(account, {})
            for item in batch.items:
                trees[item.id] = LocationTree(item)  # type: ignore[arg-type]
        elif batch.kind == "site":
            for item in batch.items:
                key = (account, item.id)
                self.sites[key] = SiteTree(item)  # type: ignore[arg-type]
                self.site_location[key] = batch.location_id or ""
        elif batch.kind == "room":
            rooms = self.rooms.setdefault((account, batch.site_id or ""), {})
            for item in batch.items:
                rooms[item.id] = RoomTree(item)  # type: ignore[arg-type]
        else:
            self.devices.setdefault((account, batch.site_id or ""), []).append(batch)

    def result(
        self, accounts: Sequence[str], failures: list[Failure], stats: CrawlStats
    ) -> CrawlResult:
        for key, site_tree in self.sites.items():
            rooms = self.rooms.get(key, {})
            site_tree.rooms = list(rooms.values())
            for batch in self.devices.get(key, []):
                for device in batch.items:
                    room_id = batch.room_of(device)  # type: ignore[arg-type]
                    room = rooms.get(room_id) if room_id is not None else None
                    (room.devices if room is not None else site_tree.devices).append(device)  # type: ignore[arg-type]
            location = self.locations.get(key[0], {}).get(self.site_location[key])
            if location is not None:
                location.sites.append(site_tree)
        portfolios = {
            account: list(self.locations.get(account, {}).values()) for account in accounts
        }
        return CrawlResult(portfolios=portfolios, failures=list(failures), stats=stats)
