"""The checkpoint of a JSONL crawl: its parameters, then a record per finished unit.

The first line records the crawl's parameters; each later line a finished
unit (``{"unit": [kind, account, id], "offset": ..., "items": {...},
"failures": [...]}``) with the output's size once its lines were written;
the last line of a finished crawl is ``{"complete": true}``. A resume reads
it back, cuts the output and the checkpoint to what it records, and skips
the units it names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from .._crawl import Failure, Unit
from .._json import dumps
from ..errors import CrawlOutputError
from .tally import KINDS, CrawlTally

__all__ = ["FINISHED", "Resume", "checkpoint_path", "line", "prepare"]

FINISHED = "complete"  # the mark's name on disk: nothing is left for a resume to read
_FORMAT = 2


def checkpoint_path(output: Path) -> Path:
    """Where the checkpoint of a JSONL output lives."""
    return output.with_name(output.name + ".checkpoint")


def line(record: dict[str, Any]) -> bytes:
    """A record as one JSON line."""
    return dumps(record) + b"\n"


@attrs.define
class Resume:
    """What the checkpoint says earlier runs did (nothing, for a fresh output)."""

    tally: CrawlTally
    done: set[Unit] = attrs.Factory(set)
    finished: bool = False
    failures: list[Failure] = attrs.Factory(list)
    items: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(KINDS, 0))


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


def _load(output: Path, checkpoint: Path, params: dict[str, Any]) -> Resume:
    """Read the checkpoint and cut the output and checkpoint back to what it records."""
    state = Resume(CrawlTally(len(params["accounts"])))
    offset = 0
    kept = 0
    with checkpoint.open("rb") as file:
        lines = file.readlines()
    for number, text in enumerate(lines, 1):
        if not text.endswith(b"\n"):
            break  # a record cut short by a crash: not committed
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            if number == len(lines):
                break  # the last record, torn
            raise _damaged(checkpoint, number, "not JSON") from None
        if not isinstance(record, dict):
            raise _damaged(checkpoint, number, "not a record")
        if number == 1:
            recorded = record.get("crawl")
            if not isinstance(recorded, dict) or recorded.get("format") != _FORMAT:
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
        elif record.get(FINISHED):
            state.finished = True
        else:
            try:
                kind, account, unit_id = record["unit"]
                unit = (str(kind), str(account), str(unit_id))
                offset = int(record["offset"])
                items = {str(name): int(count) for name, count in record.get("items", {}).items()}
                state.failures.extend(Failure(**failure) for failure in record.get("failures", []))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise _damaged(checkpoint, number, "not a unit record") from None
            for name, count in items.items():
                state.items[name] = state.items.get(name, 0) + count
            state.tally.add_earlier(unit, items)
            state.done.add(unit)
        kept += len(text)
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


def prepare(output: Path, checkpoint: Path, resume: bool, params: dict[str, Any]) -> Resume:
    """What earlier runs did (a resume), or a fresh output and checkpoint."""
    if resume and checkpoint.exists():
        return _load(output, checkpoint, params)
    if resume and output.exists() and output.stat().st_size:
        raise CrawlOutputError(f"{output} has no checkpoint to resume from")
    output.write_bytes(b"")
    checkpoint.write_bytes(line({"crawl": {"format": _FORMAT, **params}}))
    return Resume(CrawlTally(len(params["accounts"])))
