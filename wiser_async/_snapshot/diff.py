"""Reading crawl outputs back (JSONL or JSON) and comparing two of them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["DeviceChange", "SnapshotDiff", "diff_snapshots", "read_snapshot"]


def read_snapshot(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a JSONL or JSON crawl output, as JSONL-style records.

    Raises:
        ValueError: a line or the document is not JSON, naming where.
    """
    path = Path(path)
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
            from one side shows as None there (absent and null compare equal).
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
    # A field the API left out and one it sent as null say the same: nothing known;
    # 16 and 16.0 are one JSON number (a model writes its float fields as floats).
    return {
        key: int(value) if type(value) is float and value.is_integer() else value
        for key, value in data.items()
        if key not in ignore and value is not None
    }


def _digest(data: dict[str, Any]) -> bytes:
    return hashlib.blake2b(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), digest_size=16
    ).digest()


def _devices(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.get("type") == "device":
            yield record


def diff_snapshots(
    old: str | os.PathLike[str], new: str | os.PathLike[str], *, ignore: Iterable[str] = ()
) -> SnapshotDiff:
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
