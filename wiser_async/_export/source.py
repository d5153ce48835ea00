"""Reading a crawl output for an export: its records, streamed, and what its checkpoint says.

A JSONL output is read line by line, and only as far as its checkpoint
vouches for (the lines of finished units; a crawl killed mid-unit leaves
lines no unit record covers, which a resume cuts off). The checkpoint's unit
records say which collections the crawl read to the end: an unfinished
output's unread parts have no failure record, only a missing unit record.
A JSON document, or a JSONL output without its checkpoint (a merged
distributed crawl), is taken at its word: its failure records name every
part it is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from .._json import loads
from .._snapshot import checkpoint_path, read_snapshot
from .schema import ExportError

__all__ = ["Source", "format_time", "open_source"]


def format_time(moment: datetime) -> str:
    """A time as both databases take it: UTC, ``YYYY-MM-DD HH:MM:SS[.ffffff]``.

    SQLite compares times as text: this is the form its ``datetime()`` writes,
    so ``removed_at >= datetime('now', '-7 days')`` compares as times do.
    """
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


@attrs.frozen(kw_only=True)
class Source:
    """A crawl output as an export reads it.

    Attributes:
        path: The output.
        crawled_at: When the crawl ran (`format_time` form).
        jsonl: A JSONL output (else a JSON document).
        checkpoint: Its checkpoint, when it has one (JSONL only).
        accounts: The accounts the checkpoint says were crawled (empty without one).
        devices_by: How devices were listed (``site``, ``room``; None when unknown).
        limit: Bytes of the output the checkpoint vouches for (None: all of it).
    """

    path: Path
    crawled_at: str
    jsonl: bool
    checkpoint: Path | None = None
    accounts: tuple[str, ...] = ()
    devices_by: str | None = None
    limit: int | None = None

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, record) of every record, streamed (a JSON document: numbered from 1)."""
        if not self.jsonl:
            yield from enumerate(_documented(read_snapshot(self.path), self.path), 1)
            return
        with self.path.open("rb") as file:
            lines: Iterator[bytes] = file
            if self.limit is not None and self.limit < self.path.stat().st_size:
                lines = _within(file, self.limit)
            for number, line in enumerate(lines, 1):
                if line == b"\n" or not line.strip():
                    continue
                try:
                    record = loads(line)
                except (ValueError, RecursionError):
                    raise ExportError(f"{self.path}:{number}: not a JSON record") from None
                if not isinstance(record, dict):
                    raise ExportError(f"{self.path}:{number}: not a crawl record")
                yield number, record

    def units(self) -> Iterator[tuple[str, str, str]]:
        """The units the checkpoint records as finished: (kind, account, id)."""
        if self.checkpoint is None:
            return
        for number, record in _checkpoint_records(self.checkpoint):
            if number > 1 and "unit" in record:
                kind, account, unit_id = record["unit"]
                yield str(kind), str(account), str(unit_id)


def _within(lines: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The lines that end within the first `limit` bytes."""
    for line in lines:
        limit -= len(line)
        if limit < 0:
            return
        yield line


# The lists a JSON document nests items in: not fields of the item.
_NESTED = {"location": ("sites",), "site": ("rooms", "devices"), "room": ("devices",)}


def _documented(records: Iterator[Any], path: Path) -> Iterator[dict[str, Any]]:
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise ExportError(f"{path}: record {number} is not a crawl record")
        nested = _NESTED.get(record.get("type"))  # type: ignore[arg-type]
        data = record.get("data")
        if nested and isinstance(data, dict):
            # read_snapshot yields a site before it takes its rooms and devices out.
            record = {**record, "data": {k: v for k, v in data.items() if k not in nested}}
        yield record


def _checkpoint_records(checkpoint: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with checkpoint.open("rb") as file:
        for number, line in enumerate(file, 1):
            if not line.endswith(b"\n"):
                return  # a record cut short by a crash: not committed
            try:
                record = json.loads(line)
                if number > 1 and "unit" in record:
                    _kind, _account, _id = record["unit"]
                    int(record["offset"])
            except (ValueError, TypeError, KeyError, RecursionError):
                raise ExportError(f"{checkpoint}:{number}: not a checkpoint record") from None
            if not isinstance(record, dict):
                raise ExportError(f"{checkpoint}:{number}: not a checkpoint record")
            yield number, record


def _is_jsonl(path: Path) -> bool:
    with path.open("rb") as file:
        first = file.readline()
    if not first.strip():
        return True
    try:
        record = json.loads(first)
    except ValueError:
        return False  # the first line of a multi-line document
    return isinstance(record, dict) and "type" in record


def open_source(path: str | os.PathLike[str], crawled_at: datetime | None) -> Source:
    """The output at `path`, its checkpoint read (not changed).

    Args:
        path: A crawl output (JSONL or JSON).
        crawled_at: When the crawl ran; by default when it last wrote the
            output (the file's modification time).

    Raises:
        ExportError: a damaged checkpoint, or an output shorter than it says.
        OSError: the output cannot be read.
    """
    path = Path(path)
    stat = path.stat()
    if crawled_at is None:
        crawled_at = datetime.fromtimestamp(stat.st_mtime_ns // 1000 / 1e6, UTC)
    elif crawled_at.tzinfo is None:
        raise ExportError("crawled_at must be an aware datetime (with its UTC offset)")
    moment = format_time(crawled_at)
    jsonl = _is_jsonl(path)
    checkpoint = checkpoint_path(path)
    if not jsonl or not checkpoint.exists():
        return Source(path=path, crawled_at=moment, jsonl=jsonl)
    params: dict[str, Any] = {}
    limit = 0
    for number, record in _checkpoint_records(checkpoint):
        if number == 1:
            crawl = record.get("crawl")
            params = crawl if isinstance(crawl, dict) else {}
            if not params:
                raise ExportError(f"{checkpoint}: not the checkpoint of a crawl of this version")
        elif "unit" in record:
            limit = max(limit, int(record["offset"]))
    if stat.st_size < limit:
        raise ExportError(
            f"{path} is shorter ({stat.st_size} bytes) than its checkpoint says ({limit} bytes):"
            " it was changed since"
        )
    accounts = params.get("accounts")
    devices_by = params.get("devices_by")
    return Source(
        path=path,
        crawled_at=moment,
        jsonl=True,
        checkpoint=checkpoint,
        accounts=tuple(str(a) for a in accounts) if isinstance(accounts, list) else (),
        devices_by=devices_by if isinstance(devices_by, str) else None,
        limit=limit,
    )
