"""Crawl snapshots on disk: a resumable JSONL writer, a JSON writer, and diffs.

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

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._crawl import (
    RETRY_LATER_KINDS,
    DevicesBy,
    Failure,
    Unit,
    _Batch,
    _FailureEvent,
    _UnitDone,
    open_walk,
)

if TYPE_CHECKING:
    from ._client import AsyncWiserClient
    from ._crawl import CrawlResult, CrawlStats

__all__ = [
    "DeviceChange",
    "SnapshotDiff",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "read_snapshot",
]

_COMPLETE = "complete"
# Parts left unread for these reasons belong to no finished unit: a resume reads them.
_INTERRUPTIONS = RETRY_LATER_KINDS | {"authorization"}


def checkpoint_path(output: Path) -> Path:
    """Where the checkpoint of a JSONL output lives."""
    return output.with_name(output.name + ".checkpoint")


def _node_records(batch: _Batch, client: AsyncWiserClient) -> Iterator[dict[str, Any]]:
    parents: dict[str, str | None] = {}
    if batch.kind != "location":
        parents["locationId"] = batch.location_id
    if batch.kind in ("room", "device"):
        parents["siteId"] = batch.site_id
    for node in batch.nodes():
        record: dict[str, Any] = {"type": batch.kind, "account": batch.account, **parents}
        if batch.kind == "device":
            record["roomId"] = node.room_id
        record["data"] = client.to_wire(node.item)
        yield record


def _failure_record(failure: Failure) -> dict[str, Any]:
    return {"type": "failure", **failure.to_dict()}


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@attrs.define
class _Resume:
    done: set[Unit]
    complete: bool


def _load_checkpoint(output: Path, checkpoint: Path) -> _Resume:
    """Read the checkpoint and cut the output and checkpoint back to what it records."""
    done: set[Unit] = set()
    complete = False
    offset = 0
    kept = 0
    with checkpoint.open("rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break  # a record cut short by a crash: not committed
            try:
                record = json.loads(line)
            except ValueError:
                break
            if record.get(_COMPLETE):
                complete = True
            else:
                kind, account, unit_id = record["unit"]
                done.add((kind, account, unit_id))
                offset = int(record["offset"])
            kept += len(line)
    with checkpoint.open("r+b") as file:
        file.truncate(kept)
    size = output.stat().st_size if output.exists() else 0
    if size < offset:
        raise ValueError(
            f"{output} is shorter ({size} bytes) than its checkpoint says ({offset} bytes): "
            "it was changed since; start again without resume"
        )
    with output.open("r+b" if output.exists() else "wb") as file:
        file.truncate(offset)
    return _Resume(done, complete)


def _prepare(output: Path, checkpoint: Path, resume: bool) -> _Resume:
    if resume and checkpoint.exists():
        return _load_checkpoint(output, checkpoint)
    if resume and output.exists() and output.stat().st_size:
        raise ValueError(f"{output} has no checkpoint to resume from")
    output.write_bytes(b"")
    checkpoint.write_bytes(b"")
    return _Resume(set(), complete=False)


async def crawl_to_jsonl(
    client: AsyncWiserClient,
    output: Path,
    *,
    resume: bool = False,
    accounts: Sequence[str] | None = None,
    devices_by: DevicesBy = "site",
    page_size: int | None = None,
    deadline: float | None = None,
    on_progress: Any = None,
) -> tuple[list[Failure], CrawlStats]:
    """Crawl to a JSONL file, a unit at a time, resumable after an interruption.

    Args:
        client: The client (and default account) to crawl with.
        output: The JSONL file; its checkpoint is ``OUTPUT.checkpoint``.
        resume: Continue an interrupted crawl of the same output. Without it
            the output is started afresh.
        accounts, devices_by, page_size, deadline: As for `AsyncWiserClient.walk`.
        on_progress: Called with the `Walk` after each page of results.

    Returns:
        The failures and the stats of this run.
    """
    checkpoint = checkpoint_path(output)
    state = await anyio.to_thread.run_sync(_prepare, output, checkpoint, resume)
    if state.complete:
        return [], _empty_stats()
    pending: dict[Unit, list[bytes]] = {}
    async with (
        await anyio.open_file(output, "ab") as out,
        await anyio.open_file(checkpoint, "ab") as marks,
        open_walk(
            client,
            accounts=accounts,
            devices_by=devices_by,
            page_size=page_size,
            deadline=deadline,
            buffer=4,
            done_units=state.done,
        ) as walk,
    ):
        size = await out.tell()
        async for event in walk.events():
            if isinstance(event, _Batch):
                lines = pending.setdefault(event.unit, [])
                lines.extend(_line(record) for record in _node_records(event, client))
                if on_progress is not None:
                    on_progress(walk)
            elif isinstance(event, _FailureEvent):
                pending.setdefault(event.unit, []).append(_line(_failure_record(event.failure)))
            elif isinstance(event, _UnitDone):
                data = _redacted(b"".join(pending.pop(event.unit, [])), client, event.unit[1])
                if data:
                    await out.write(data)
                    await out.flush()
                    size += len(data)
                await marks.write(_line({"unit": list(event.unit), "offset": size}))
                await marks.flush()
        # Parts left unread by an interruption (the deadline, an account that
        # needs authorization, a store or API outage) belong to no finished
        # unit: a resume reads them. Otherwise the crawl is complete.
        if not any(failure.kind in _INTERRUPTIONS for failure in walk.failures):
            await marks.write(_line({_COMPLETE: True}))
    return walk.failures, walk.stats


def _redacted(data: bytes, client: AsyncWiserClient, account: str | None) -> bytes:
    """Output without a secret the client knows, even where the server echoed one in data."""
    secrets = client.oauth.secrets
    if not secrets.contains_secret(data, account):
        return data
    return secrets.mask(data.decode(), account).encode()


def _empty_stats() -> CrawlStats:
    from ._crawl import CrawlStats

    return CrawlStats()


async def crawl_to_json(
    client: AsyncWiserClient,
    output: Path,
    *,
    accounts: Sequence[str] | None = None,
    devices_by: DevicesBy = "site",
    page_size: int | None = None,
    deadline: float | None = None,
) -> CrawlResult:
    """Crawl and write the whole tree as one JSON document (not resumable)."""
    result = await client.crawl(
        accounts=accounts, devices_by=devices_by, page_size=page_size, deadline=deadline
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


# -- reading and diffing ------------------------------------------------------------


def read_snapshot(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL or JSON crawl output, as JSONL-style records.

    Raises:
        ValueError: a line or the document is not JSON, naming where.
    """
    with path.open("rb") as file:
        if not _is_jsonl(file.readline()):
            file.seek(0)
            try:
                document = json.load(file)
            except ValueError as exc:
                raise ValueError(f"{path}: not a crawl output ({exc})") from None
            yield from _records_of_document(document)
            return
        file.seek(0)
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON record ({exc})") from None


def _is_jsonl(first_line: bytes) -> bool:
    if not first_line.strip():
        return True  # an empty crawl
    try:
        record = json.loads(first_line)
    except ValueError:
        return False  # the first line of a multi-line document
    return isinstance(record, dict) and "type" in record


def _records_of_document(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for account, locations in document.get("accounts", {}).items():
        for location in locations:
            sites = location.pop("sites", [])
            yield {"type": "location", "account": account, "data": location}
            for site in sites:
                rooms = site.pop("rooms", [])
                parents = {"account": account, "locationId": location["id"]}
                yield {"type": "site", **parents, "data": site}
                parents["siteId"] = site["id"]
                placed = [(room["id"], room.pop("devices", [])) for room in rooms]
                for room in rooms:
                    yield {"type": "room", **parents, "data": room}
                # Devices in no room sit under the site; their roomId says so.
                placed.append((None, site.pop("devices", [])))
                for room_id, devices in placed:
                    for device in devices:
                        room = room_id if room_id is not None else device.get("roomId")
                        yield {"type": "device", **parents, "roomId": room, "data": device}
    for failure in document.get("failures", []):
        yield {"type": "failure", **failure}


@attrs.frozen
class DeviceChange:
    """A device in both snapshots whose data differs.

    Attributes:
        account: The account key.
        id: The device id.
        fields: Wire field name -> (old value, new value); a field absent
            from one side shows as None there.
    """

    account: str
    id: str
    fields: dict[str, tuple[Any, Any]]


@attrs.frozen
class SnapshotDiff:
    """Devices added, removed and changed between two crawls.

    ``added`` and ``removed`` hold the devices' records (``account``,
    ``siteId``, ``roomId``, ``data``...).
    """

    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[DeviceChange]

    @property
    def empty(self) -> bool:
        """True if the snapshots hold the same devices with the same data."""
        return not (self.added or self.removed or self.changed)


def _device_key(record: dict[str, Any]) -> tuple[str, str]:
    return (str(record.get("account", "")), str(record["data"]["id"]))


def _comparable(data: dict[str, Any], ignore: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in ignore}


def _digest(data: dict[str, Any]) -> bytes:
    return hashlib.blake2b(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), digest_size=16
    ).digest()


def _devices(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.get("type") == "device":
            yield record


def diff_snapshots(old: Path, new: Path, *, ignore: Iterable[str] = ()) -> SnapshotDiff:
    """Compare the devices of two crawl outputs (JSONL or JSON).

    Devices are matched by account and id. Memory holds a 16-byte digest
    per device of the old snapshot plus the devices that differ, not both
    snapshots.

    Args:
        old: The earlier crawl's output.
        new: The later crawl's output.
        ignore: Wire field names left out of the comparison (``lastSeenAt``, say).
    """
    ignored = frozenset(ignore)
    digests: dict[tuple[str, str], bytes] = {}
    for record in _devices(read_snapshot(old)):
        digests[_device_key(record)] = _digest(_comparable(record["data"], ignored))
    added: list[dict[str, Any]] = []
    suspects: dict[tuple[str, str], dict[str, Any]] = {}
    for record in _devices(read_snapshot(new)):
        key = _device_key(record)
        digest = digests.pop(key, None)
        if digest is None:
            added.append(record)
        elif digest != _digest(_comparable(record["data"], ignored)):
            suspects[key] = record
    removed: list[dict[str, Any]] = []
    changed: list[DeviceChange] = []
    if digests or suspects:
        # A second pass over the old snapshot fetches what the first only hashed.
        for record in _devices(read_snapshot(old)):
            key = _device_key(record)
            if key in digests:
                removed.append(record)
            elif key in suspects:
                before = _comparable(record["data"], ignored)
                after = _comparable(suspects[key]["data"], ignored)
                fields = {
                    name: (before.get(name), after.get(name))
                    for name in sorted(before.keys() | after.keys())
                    if before.get(name) != after.get(name)
                }
                changed.append(DeviceChange(account=key[0], id=key[1], fields=fields))
    return SnapshotDiff(added=added, removed=removed, changed=changed)
