"""Crawl outputs on disk: a resumable JSONL writer with its checkpoint, and a JSON writer.

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

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import attrs

from .._crawl import (
    RETRY_LATER_KINDS,
    Batch,
    CrawlResult,
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
from ..errors import CrawlOutputError
from .appender import UnitAppender

if TYPE_CHECKING:
    from .._client import AsyncWiserClient

__all__ = [
    "JsonlCrawl",
    "Validation",
    "checkpoint_path",
    "crawl_to_json",
    "crawl_to_jsonl",
    "result_to_json",
]

_FINISHED = "complete"  # the mark's name on disk: nothing is left for a resume to read
_CHECKPOINT_FORMAT = 2
# Parts left unread for these reasons belong to no finished unit: a resume reads them.
_INTERRUPTIONS = RETRY_LATER_KINDS | {"authorization", "client"}
_KINDS = ("location", "site", "room", "device")


Validation = Literal["ids", "models"]
"""What `crawl_to_jsonl` checks of each item before writing it."""


def _raw_of(validate: Validation) -> bool:
    if validate not in ("ids", "models"):
        raise ValueError(f"validate must be 'ids' or 'models', not {validate!r}")
    return validate == "ids"


def checkpoint_path(output: Path) -> Path:
    """Where the checkpoint of a JSONL output lives."""
    return output.with_name(output.name + ".checkpoint")


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
        yield _line(record)


def _failure_record(failure: Failure) -> dict[str, Any]:
    return {"type": "failure", **failure.to_dict()}


def _line(record: dict[str, Any]) -> bytes:
    return dumps(record) + b"\n"


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


@attrs.define
class _Resume:
    done: set[Unit] = attrs.Factory(set)
    finished: bool = False
    failures: list[Failure] = attrs.Factory(list)
    items: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(_KINDS, 0))


def _describe_mismatch(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    differences = [
        f"{name} {recorded.get(name)!r} (now {value!r})"
        for name, value in wanted.items()
        if recorded.get(name) != value
    ]
    return "; ".join(differences)


def _damaged(checkpoint: Path, line_number: int, what: str) -> CrawlOutputError:
    return CrawlOutputError(
        f"{checkpoint} is damaged at line {line_number} ({what}); "
        "start the crawl again without resume"
    )


def _load_checkpoint(output: Path, checkpoint: Path, params: dict[str, Any]) -> _Resume:
    """Read the checkpoint and cut the output and checkpoint back to what it records."""
    state = _Resume()
    offset = 0
    kept = 0
    with checkpoint.open("rb") as file:
        lines = file.readlines()
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            break  # a record cut short by a crash: not committed
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines):
                break  # the last record, torn
            raise _damaged(checkpoint, number, "not JSON") from None
        if not isinstance(record, dict):
            raise _damaged(checkpoint, number, "not a record")
        if number == 1:
            recorded = record.get("crawl")
            if not isinstance(recorded, dict) or recorded.get("format") != _CHECKPOINT_FORMAT:
                raise CrawlOutputError(
                    f"{checkpoint} was not written by this version's crawl (no crawl "
                    "parameters in it); start the crawl again without resume"
                )
            mismatch = _describe_mismatch(recorded, params)
            if mismatch:
                raise CrawlOutputError(
                    f"{output} was crawled with other parameters: {mismatch}; resume it with "
                    "the same ones, or start again without resume"
                )
        elif record.get(_FINISHED):
            state.finished = True
        else:
            try:
                kind, account, unit_id = record["unit"]
                offset = int(record["offset"])
                for name, count in record.get("items", {}).items():
                    state.items[name] = state.items.get(name, 0) + int(count)
                state.failures.extend(Failure(**failure) for failure in record.get("failures", []))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise _damaged(checkpoint, number, "not a unit record") from None
            state.done.add((str(kind), str(account), str(unit_id)))
        kept += len(line)
    if kept == 0:
        raise CrawlOutputError(f"{checkpoint} is empty; start the crawl again without resume")
    with checkpoint.open("r+b") as file:
        file.truncate(kept)
    size = output.stat().st_size if output.exists() else 0
    if size < offset:
        raise CrawlOutputError(
            f"{output} is shorter ({size} bytes) than its checkpoint says ({offset} bytes): "
            "it was changed since; start again without resume"
        )
    with output.open("r+b" if output.exists() else "wb") as file:
        file.truncate(offset)
    return state


def _prepare(output: Path, checkpoint: Path, resume: bool, params: dict[str, Any]) -> _Resume:
    if resume and checkpoint.exists():
        return _load_checkpoint(output, checkpoint, params)
    if resume and output.exists() and output.stat().st_size:
        raise CrawlOutputError(f"{output} has no checkpoint to resume from")
    output.write_bytes(b"")
    checkpoint.write_bytes(_line({"crawl": {"format": _CHECKPOINT_FORMAT, **params}}))
    return _Resume()


async def crawl_to_jsonl(
    client: AsyncWiserClient,
    output: Path,
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
        accounts, devices_by, page_size, timeout: As for `AsyncWiserClient.walk`.
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
    checkpoint = checkpoint_path(output)
    chosen = list(dict.fromkeys(accounts if accounts is not None else [client.account]))
    params = {
        "accounts": chosen,
        "devices_by": devices_by,
        "page_size": client.requester.page_size(page_size),
        "source": client.config.base_url if source is None else source,
    }
    state = await anyio.to_thread.run_sync(_prepare, output, checkpoint, resume, params)
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
    unit_items: dict[Unit, dict[str, int]] = {}
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
        while True:
            try:
                event = walk.next_event_nowait()
            except anyio.WouldBlock:
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
                counts = unit_items.setdefault(event.unit, {})
                counts[event.kind] = counts.get(event.kind, 0) + len(event.items)
                if on_progress is not None:
                    on_progress(walk)
            elif isinstance(event, FailureEvent):
                pending.setdefault(event.unit, []).append(_line(_failure_record(event.failure)))
                unit_failures.setdefault(event.unit, []).append(event.failure)
            elif isinstance(event, UnitDone):
                account = event.unit[1]
                data = _redacted(b"".join(pending.pop(event.unit, [])), client, account)
                failures = unit_failures.pop(event.unit, [])
                counts = unit_items.pop(event.unit, {})
                mark = {
                    "unit": list(event.unit),
                    "offset": appender.size + len(data),
                    "items": counts,
                    "failures": [failure.to_dict() for failure in failures],
                }
                appender.add(data, _redacted(_line(mark), client, account))
                state.failures.extend(failures)
                for name, count in counts.items():
                    state.items[name] = state.items.get(name, 0) + count
        # Parts left unread by an interruption (the timeout, an account that
        # needs authorization, a store or API outage) belong to no finished
        # unit: a resume reads them. Otherwise nothing is left to read.
        finished = not any(failure.kind in _INTERRUPTIONS for failure in walk.failures)
        if finished:
            appender.add(b"", _line({_FINISHED: True}))
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


def _redacted(data: bytes, client: AsyncWiserClient, account: str | None) -> bytes:
    """Output without a secret the client knows, even where the server echoed one in data."""
    secrets = client.oauth.secrets
    if not secrets.contains_secret(data, account):
        return data
    return secrets.mask(data.decode(), account).encode()


async def crawl_to_json(
    client: AsyncWiserClient,
    output: Path,
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
    result = await client.crawl(
        accounts=accounts,
        devices_by=devices_by,
        page_size=page_size,
        timeout=timeout,
        on_progress=on_progress,
    )
    document = json.dumps(result_to_json(result, client), ensure_ascii=False, indent=1).encode()
    await anyio.Path(output).write_bytes(_redacted(document, client, None))
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
