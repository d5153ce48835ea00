"""Crawl outputs on disk as JSONL: a resumable writer with its checkpoint (JSON: `document`).

JSONL records, one per line::

    {"type": "location", "account": "a", "data": {...}}
    {"type": "site", "account": "a", "locationId": "L", "data": {...}}
    {"type": "room", "account": "a", "locationId": "L", "siteId": "S", "data": {...}}
    {"type": "device", "account": "a", "locationId": "L", "siteId": "S", "roomId": null,
     "data": {...}}
    {"type": "failure", "account": "a", "resource": "/sites/S/rooms?offset=0", "kind": ..., ...}

``data`` is the item as the API sent it (camelCase, unknown fields kept).

A JSONL crawl is written a unit at a time (an account's locations, a
location's sites, a site's rooms and devices): a unit's lines are appended
only once all of it is read, then the unit is recorded in a checkpoint file
beside the output (``OUTPUT.checkpoint``) with the output's size. A crawl
killed at any point (Ctrl-C, SIGKILL) resumes from the checkpoint: the
output is cut back to the last recorded size and the recorded units are
skipped, so the resumed output holds each item exactly once. Writes are not
fsync'ed: this survives the process dying, not the machine losing power.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import anyio
import attrs

from .._crawl import (
    RETRY_LATER_KINDS,
    Batch,
    CrawlStats,
    DevicesBy,
    Failure,
    FailureEvent,
    Unit,
    UnitDone,
    Walk,
    open_walk,
)
from .._decode import RawItem
from .._json import dumps
from .appender import UnitAppender
from .checkpoint import FINISHED, checkpoint_path, line, prepare
from .tally import CrawlTally

if TYPE_CHECKING:
    from .._client import AsyncWiserClient

__all__ = [
    "JsonlCrawl",
    "TallyProgress",
    "Validation",
    "crawl_to_jsonl",
    "pages_only",
    "redacted",
    "write_jsonl",
]

# Parts left unread for these reasons belong to no finished unit: a resume reads them.
_INTERRUPTIONS = RETRY_LATER_KINDS | {"authorization", "client"}

TallyProgress: TypeAlias = Callable[[Walk, CrawlTally], None]
"""A progress callback given the walk and the whole output's `CrawlTally`.

`write_jsonl` and `write_json` call it once when the walk begins (a resumed
crawl's earlier runs are counted by then) and after each page.
"""


Validation = Literal["ids", "models"]
"""What `crawl_to_jsonl` checks of each item before writing it."""


def _raw_of(validate: Validation) -> bool:
    if validate not in ("ids", "models"):
        raise ValueError(f"validate must be 'ids' or 'models', not {validate!r}")
    return validate == "ids"


def _batch_lines(batch: Batch, client: AsyncWiserClient) -> Iterator[bytes]:
    """A page's items as JSONL lines: ``data`` as the API sent it, or as models write it."""
    head: dict[str, Any] = {"type": batch.kind, "account": batch.account}
    if batch.kind != "location":
        head["locationId"] = batch.location_id
    if batch.kind in ("room", "device"):
        head["siteId"] = batch.site_id
    items = batch.items
    if items and type(items[0]) is RawItem:
        # Spliced as bytes: each item's JSON was written once, when its page came.
        start = dumps(head)[:-1]
        join = b"".join
        for raw in cast(Sequence[RawItem], items):
            room = b""
            if batch.kind == "device":
                room_id = batch.room_of(raw)
                room = b',"roomId":' + (b"null" if room_id is None else dumps(room_id))
            yield join((start, room, b',"data":{', raw.members, b"}}\n"))
        return
    for node in batch.nodes():
        record = dict(head)
        if batch.kind == "device":
            record["roomId"] = node.room_id
        record["data"] = client.to_wire(node.item)
        yield line(record)


def _failure_record(failure: Failure) -> dict[str, Any]:
    return {"type": "failure", **failure.to_dict()}


@attrs.frozen(kw_only=True)
class JsonlCrawl:
    """What a crawl to JSONL did in this run, and what its whole output holds.

    A resumed crawl's output holds what earlier runs wrote as well: `failures`,
    `items` and `complete` speak of all of it, `run` and `run_failures` of
    this run only.

    Attributes:
        output: The JSONL file.
        run: What this run did (requests, items read, duration).
        run_failures: Every failure this run met, those a resume reads again included.
        failures: What the whole output is missing: the failure records of
            every run, and the parts this run left for a resume to read.
        items: Items in the whole output, by kind (``location``, ``site``,
            ``room``, ``device``).
        finished: Nothing is left for a resume to read (no interruption,
            outage or account needing authorization).
    """

    output: Path
    run: CrawlStats
    run_failures: list[Failure]
    failures: list[Failure]
    items: dict[str, int]
    finished: bool

    @property
    def complete(self) -> bool:
        """True only when every part of every portfolio is in the output."""
        return self.finished and not self.failures


def pages_only(on_progress: Callable[[Walk], None] | None) -> TallyProgress | None:
    """The public callback's contract: the walk after each page (not when it begins)."""
    if on_progress is None:
        return None
    begun = False

    def call(walk: Walk, _tally: CrawlTally) -> None:
        nonlocal begun
        if begun:
            on_progress(walk)
        begun = True

    return call


async def crawl_to_jsonl(
    client: AsyncWiserClient,
    output: str | os.PathLike[str],
    *,
    resume: bool = False,
    accounts: Sequence[str] | None = None,
    devices_by: DevicesBy = "site",
    page_size: int | None = None,
    timeout: float | None = None,
    on_progress: Callable[[Walk], None] | None = None,
    source: str | None = None,
    validate: Validation = "ids",
) -> JsonlCrawl:
    """Crawl to a JSONL file, a unit at a time, resumable after an interruption.

    A resume must use the parameters the output was started with (accounts,
    ``devices_by``, page size, and what it reads from): the checkpoint records
    them, and a resume with others is refused (`CrawlOutputError` says what
    differs).

    Args:
        client: The client (and default account) to crawl with.
        output: The JSONL file; its checkpoint is ``OUTPUT.checkpoint``.
        resume: Continue an interrupted crawl of the same output. Without it
            the output is started afresh.
        accounts: As for `AsyncWiserClient.walk`.
        devices_by: As for `AsyncWiserClient.walk`.
        page_size: As for `AsyncWiserClient.walk`.
        timeout: As for `AsyncWiserClient.walk`.
        on_progress: Called with the `Walk` after each page of results.
        source: What the crawl reads from, as the checkpoint records it; by
            default the API base URL. Name the deployment yourself when its
            URL changes between runs (a sandbox on a new port, another proxy).
        validate: ``"ids"`` (the default) reads of each item only the ids
            the crawl needs and writes ``data`` as the API sent it: an item
            without a usable ``id`` (or a device with an unusable
            ``roomId``) is a failure, other fields are not checked.
            ``"models"`` decodes every item into its typed model first, as
            `AsyncWiserClient.walk` does, so a field of the wrong type is a
            failure too, and writes ``data`` as the model writes it
            (every field, timestamps normalised, integer ids as strings).
            Either holds the same records for data of the documented types.

    Returns:
        This run and the whole output (`JsonlCrawl`).

    Raises:
        CrawlOutputError: resume asked for an output without a usable
            checkpoint, or with other parameters.
    """
    return await write_jsonl(
        client,
        Path(output),
        resume=resume,
        accounts=accounts,
        devices_by=devices_by,
        page_size=page_size,
        timeout=timeout,
        on_progress=pages_only(on_progress),
        source=source,
        validate=validate,
    )


async def write_jsonl(
    client: AsyncWiserClient,
    output: Path,
    *,
    resume: bool,
    accounts: Sequence[str] | None,
    devices_by: DevicesBy,
    page_size: int | None,
    timeout: float | None,
    on_progress: TallyProgress | None,
    source: str | None,
    validate: Validation,
) -> JsonlCrawl:
    """`crawl_to_jsonl`, with `on_progress` a `TallyProgress`: given the whole output's tally."""
    checkpoint = checkpoint_path(output)
    chosen = list(dict.fromkeys(accounts if accounts is not None else [client.account]))
    params = {
        "accounts": chosen,
        "devices_by": devices_by,
        "page_size": client.requester.page_size(page_size),
        "source": client.config.base_url if source is None else source,
    }
    state = await anyio.to_thread.run_sync(prepare, output, checkpoint, resume, params)
    tally = state.tally
    if state.finished:
        return JsonlCrawl(
            output=output,
            run=CrawlStats(),
            run_failures=[],
            failures=state.failures,
            items=state.items,
            finished=True,
        )
    pending: dict[Unit, list[bytes]] = {}
    unit_failures: dict[Unit, list[Failure]] = {}
    async with (
        UnitAppender(output, checkpoint) as appender,
        open_walk(
            client.requester,
            accounts=chosen,
            devices_by=devices_by,
            page_size=page_size,
            timeout=timeout,
            # Room for what the workers send while this loop drains without
            # yielding: a full buffer holds them, with their slots idle.
            buffer=2 * client.max_in_flight,
            done_units=state.done,
            raw=_raw_of(validate),
        ) as walk,
    ):
        if on_progress is not None:
            on_progress(walk, tally)
        while True:
            try:
                event = walk.next_event_nowait()
            except anyio.WouldBlock:
                if on_progress is not None:
                    tally.settle(walk.expected)  # every page sent is counted now
                # Nothing buffered: write what finished, when due, then wait.
                try:
                    event = await appender.next_event(walk)
                except StopAsyncIteration:
                    break
            except StopAsyncIteration:
                break
            if isinstance(event, Batch):
                lines = pending.setdefault(event.unit, [])
                lines.extend(_batch_lines(event, client))
                tally.observe(event)
                if on_progress is not None:
                    on_progress(walk, tally)
            elif isinstance(event, FailureEvent):
                pending.setdefault(event.unit, []).append(line(_failure_record(event.failure)))
                unit_failures.setdefault(event.unit, []).append(event.failure)
                tally.observe(event)
            elif isinstance(event, UnitDone):
                account = event.unit[1]
                data = redacted(b"".join(pending.pop(event.unit, [])), client, account)
                failures = unit_failures.pop(event.unit, [])
                counts = tally.observe(event)  # what the unit holds
                mark = {
                    "unit": list(event.unit),
                    "offset": appender.size + len(data),
                    "items": counts,
                    "failures": [failure.to_dict() for failure in failures],
                }
                appender.add(data, redacted(line(mark), client, account))
                state.failures.extend(failures)
                for name, count in counts.items():
                    state.items[name] = state.items.get(name, 0) + count
        # Parts left unread by an interruption (the timeout, an account that
        # needs authorization, a store or API outage) belong to no finished
        # unit: a resume reads them. Otherwise nothing is left to read.
        finished = not any(failure.kind in _INTERRUPTIONS for failure in walk.failures)
        if finished:
            appender.add(b"", line({FINISHED: True}))
    # What is still missing: the written records, and what this run left unread.
    left_unread = [failure for failures in unit_failures.values() for failure in failures]
    return JsonlCrawl(
        output=output,
        run=walk.stats,
        run_failures=list(walk.failures),
        failures=state.failures + left_unread,
        items=state.items,
        finished=finished,
    )


def redacted(data: bytes, client: AsyncWiserClient, account: str | None) -> bytes:
    """Output without a secret the client knows, even where the server echoed one in data."""
    secrets = client.oauth.secrets
    if not secrets.contains_secret(data, account):
        return data
    return secrets.mask(data.decode(), account).encode()
