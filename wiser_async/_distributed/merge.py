"""`merge`: the workers' files of a crawl queue as one JSONL, each item exactly once.

For each enqueued account only the file of the worker recorded in ``done``
is read (another worker's partial or duplicate file of the same account is
ignored), its items copied as they are; its failure records are the ones the
finisher recorded (those in the file and those its crawl left unread). An
enqueued account no worker finished gets one ``unfinished`` failure record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import attrs

from .._crawl import CrawlStats, Failure
from ..errors import CrawlOutputError
from .queue import QueueKeys, text
from .worker import read_done

__all__ = ["MergedCrawl", "merge"]

_KINDS = ("location", "site", "room", "device")


@attrs.frozen(kw_only=True)
class MergedCrawl:
    """What the merged output of a crawl queue holds, with the fields of `JsonlCrawl`.

    Attributes:
        output: The merged JSONL file.
        queue: The queue's name.
        accounts: Accounts enqueued.
        run: The finishing crawls' counters, summed over accounts
            (``duration``: seconds of crawling, summed).
        run_failures: What those crawls met in their last run.
        failures: What the whole output is missing: every failure the
            finishers recorded, and one ``unfinished`` failure per enqueued
            account that no worker finished.
        items: Items in the output, by kind.
        finished: Every enqueued account was finished, nothing left to read.
        finishers: Account -> the worker whose file was used.
        unfinished: Enqueued accounts no worker finished.
    """

    output: Path
    queue: str
    accounts: int
    run: CrawlStats
    run_failures: list[Failure]
    failures: list[Failure]
    items: dict[str, int]
    finished: bool
    finishers: dict[str, str]
    unfinished: list[str]

    @property
    def complete(self) -> bool:
        """True only when every part of every enqueued account is in the output."""
        return self.finished and not self.failures


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _locate(relative: str, directories: Sequence[Path]) -> Path:
    for directory in directories:
        path = directory / relative
        if path.is_file():
            return path
    searched = ", ".join(str(directory) for directory in directories)
    raise CrawlOutputError(
        f"{relative}, the finisher's file, is in none of the output directories ({searched})"
    )


def _copy(source: Path, account: str, out: Any, items: dict[str, int]) -> dict[str, int]:
    """Copy `source`'s item records to `out`; their count by kind."""
    counts = dict.fromkeys(_KINDS, 0)
    with source.open("rb") as file:
        for number, line in enumerate(file, 1):
            try:
                record = json.loads(line)
                kind, owner = record["type"], record.get("account")
            except (ValueError, TypeError, KeyError, RecursionError):
                raise CrawlOutputError(f"{source} line {number}: not a crawl record") from None
            if not line.endswith(b"\n") or owner != account:
                raise CrawlOutputError(f"{source} line {number}: not a record of {account!r}")
            if kind == "failure":
                continue  # written from the finisher's record, with those left unread
            out.write(line)
            counts[kind] = counts.get(kind, 0) + 1
    if any(counts.get(kind, 0) != items.get(kind, 0) for kind in {*counts, *items}):
        raise CrawlOutputError(
            f"{source} holds {counts} items, its finisher recorded {items}: "
            "it was changed since; crawl it again in a new queue"
        )
    return counts


@contextmanager
def _replacing(partial: Path, target: Path) -> Iterator[BinaryIO]:
    """A file written beside `target` that replaces it once whole (removed if not)."""
    try:
        with partial.open("wb") as out:
            yield out
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _write(
    out_path: Path,
    queue: str,
    enqueued: list[str],
    done: dict[str, dict[str, Any]],
    directories: list[Path],
) -> MergedCrawl:
    files = {
        account: _locate(str(done[account]["file"]), directories)
        for account in enqueued
        if account in done
    }
    items = dict.fromkeys(_KINDS, 0)
    failures: list[Failure] = []
    run_failures: list[Failure] = []
    run = CrawlStats()
    totals = attrs.asdict(run)
    unfinished = []
    finished = True
    partial = out_path.with_name(out_path.name + ".partial")
    with _replacing(partial, out_path) as out:
        for account in enqueued:
            record = done.get(account)
            if record is None:
                unfinished.append(account)
                failure = Failure(
                    account=account,
                    resource="*",
                    kind="unfinished",
                    status=None,
                    message=f"no worker finished this account in queue {queue!r}",
                )
                out.write(_line({"type": "failure", **failure.to_dict()}))
                failures.append(failure)
                finished = False
                continue
            counts = _copy(files[account], account, out, record.get("items") or {})
            for kind, count in counts.items():
                items[kind] = items.get(kind, 0) + count
            for data in record.get("failures") or []:
                out.write(_line({"type": "failure", **data}))
                failures.append(Failure(**data))
            run_failures.extend(Failure(**data) for data in record.get("run_failures") or [])
            for name, value in (record.get("stats") or {}).items():
                if name in totals:
                    totals[name] += value
            finished = finished and bool(record.get("finished"))
    return MergedCrawl(
        output=out_path,
        queue=queue,
        accounts=len(enqueued),
        run=CrawlStats(**totals),
        run_failures=run_failures,
        failures=failures,
        items=items,
        finished=finished,
        finishers={
            account: str(done[account]["worker"]) for account in enqueued if account in done
        },
        unfinished=unfinished,
    )


async def merge(
    redis: Any,
    *,
    queue: str,
    output_dirs: Path | Sequence[Path],
    out_path: Path,
) -> MergedCrawl:
    """Write the crawl of `queue` as one JSONL file; what it holds and misses.

    Run it once the workers are done (an account still being crawled is
    reported ``unfinished``). The output is written beside `out_path` and
    renamed into place: a merge that fails leaves no half file.

    Args:
        redis: A redis-py asyncio client (``redis.asyncio.Redis``).
        queue: The queue's name.
        output_dirs: The workers' output directory, or several (each machine's,
            gathered): a finisher's file is looked for in each in turn.
        out_path: The merged JSONL file.

    Returns:
        The merged output (`MergedCrawl`): ``complete`` only if nothing is missing.

    Raises:
        CrawlOutputError: A finisher's file is missing or not what it recorded.
    """
    keys = QueueKeys(queue)
    directories = [output_dirs] if isinstance(output_dirs, Path) else list(output_dirs)
    enqueued = sorted(text(account) for account in await redis.smembers(keys.accounts))
    done = {
        text(account): read_done(raw) for account, raw in (await redis.hgetall(keys.done)).items()
    }
    return await anyio.to_thread.run_sync(_write, out_path, queue, enqueued, done, directories)
