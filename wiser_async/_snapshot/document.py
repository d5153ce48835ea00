"""Crawl outputs on disk as one JSON document: the trees of a whole crawl, failures, stats."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._crawl import Batch, CrawlResult, DevicesBy, Walk, open_walk

# Not in the _crawl package's doors: gather() consumes a walk's events, and a
# crawl to JSON reads them itself to tally them too.
from .._crawl.gather import TreeBuilder
from .export import TallyProgress, pages_only, redacted
from .tally import CrawlTally

if TYPE_CHECKING:
    from .._client import AsyncWiserClient

__all__ = ["crawl_to_json", "result_to_json", "write_json"]


async def crawl_to_json(
    client: AsyncWiserClient,
    output: str | os.PathLike[str],
    *,
    accounts: Sequence[str] | None = None,
    devices_by: DevicesBy = "site",
    page_size: int | None = None,
    timeout: float | None = None,
    on_progress: Callable[[Walk], None] | None = None,
) -> CrawlResult:
    """Crawl and write the whole tree as one JSON document (not resumable).

    Takes the options of `crawl_to_jsonl` but `resume` and `source`.
    """
    return await write_json(
        client,
        Path(output),
        accounts=accounts,
        devices_by=devices_by,
        page_size=page_size,
        timeout=timeout,
        on_progress=pages_only(on_progress),
    )


async def write_json(
    client: AsyncWiserClient,
    output: Path,
    *,
    accounts: Sequence[str] | None,
    devices_by: DevicesBy,
    page_size: int | None,
    timeout: float | None,
    on_progress: TallyProgress | None,
) -> CrawlResult:
    """`crawl_to_json`, with `on_progress` a `TallyProgress`: given the crawl's tally too.

    Gathers the trees as `AsyncWiserClient.crawl` does.
    """
    chosen = list(accounts) if accounts else [client.account]
    tally = CrawlTally(len(dict.fromkeys(chosen)))
    builder = TreeBuilder()
    async with open_walk(
        client.requester,
        accounts=accounts,
        devices_by=devices_by,
        page_size=page_size,
        timeout=timeout,
        # The tree is kept whole anyway: room for what the workers send.
        buffer=2 * client.max_in_flight,
    ) as walk:
        if on_progress is not None:
            on_progress(walk, tally)
        while True:
            try:
                event = walk.next_event_nowait()
            except anyio.WouldBlock:
                if on_progress is not None:
                    tally.settle(walk.expected)  # every page sent is counted now
                try:
                    event = await walk.next_event()
                except StopAsyncIteration:
                    break
            except StopAsyncIteration:
                break
            tally.observe(event)
            if isinstance(event, Batch):
                builder.add(event)
                if on_progress is not None:
                    on_progress(walk, tally)
        result = builder.result(chosen, walk.failures, walk.stats)
    document = json.dumps(result_to_json(result, client), ensure_ascii=False, indent=1).encode()
    await anyio.Path(output).write_bytes(redacted(document, client, None))
    return result


def result_to_json(result: CrawlResult, client: AsyncWiserClient) -> dict[str, Any]:
    """A crawl result as a JSON document: trees in wire form, failures, stats."""
    wire = client.to_wire
    accounts = {
        account: [
            {
                **wire(location_tree.location),
                "sites": [
                    {
                        **wire(site_tree.site),
                        "rooms": [
                            {
                                **wire(room_tree.room),
                                "devices": [wire(device) for device in room_tree.devices],
                            }
                            for room_tree in site_tree.rooms
                        ],
                        "devices": [wire(device) for device in site_tree.devices],
                    }
                    for site_tree in location_tree.sites
                ],
            }
            for location_tree in locations
        ]
        for account, locations in result.portfolios.items()
    }
    return {
        "accounts": accounts,
        "failures": [failure.to_dict() for failure in result.failures],
        "stats": result.stats.to_dict(),
    }
