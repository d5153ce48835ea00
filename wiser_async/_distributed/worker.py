"""`run_worker`: take accounts off a crawl queue and crawl each to its own resumable JSONL.

A worker reads entries of the queue's stream through the consumer group
(XREADGROUP): an entry it reads is *pending* under its name until it
acknowledges it (XACK). It first takes back what it held before a restart
(its own pending entries), then entries another worker held without a sign
of life for longer than ``claim_idle`` (XAUTOCLAIM: a dead worker's accounts
are redone by the others), then new entries.

While it crawls an account it resets the entry's idle time every
``claim_idle / 3`` seconds (XCLAIM ... JUSTID, only while the entry is still
its own), so a slow worker that is alive is never robbed. If the entry was
claimed by another worker meanwhile (this one stalled longer than
``claim_idle``), it stops that account and leaves it to the new holder.

Finishing an account is one transaction: HSETNX ``done`` (the first finisher
wins) and XACK. The worker returns when no entry is pending or new and every
enqueued account is done.

Redis going away for a while (a restart, a failover) is waited out: every
Redis call is tried again until Redis answers, for up to ``patience``
seconds per outage (`Patience`); the crawls go on meanwhile. Once back, the
worker lets a ``claim_idle`` pass before it takes over another worker's
account: the outage aged every claim, and their live holders renew them first.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._crawl import DevicesBy
from .._snapshot import JsonlCrawl, Validation, crawl_to_jsonl
from .outage import Patience, QueueUnavailable
from .queue import GROUP, QueueKeys, done_record, ensure_group, file_name, milliseconds, text

if TYPE_CHECKING:
    from .._client import AsyncWiserClient

__all__ = ["WorkerRun", "default_worker_name", "run_worker"]

# KEYS[1]: the stream. ARGV: group, consumer, entry id. Resets the entry's
# idle time only while `consumer` still holds it: never takes it back from
# a worker that claimed it meanwhile. Returns 1 if held, 0 if not.
_KEEP = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #entry == 0 or entry[1][2] ~= ARGV[2] then
    return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""


def default_worker_name() -> str:
    """``HOST-PID``: unique among live workers, new after a restart."""
    return f"{socket.gethostname()}-{os.getpid()}"


@attrs.define(kw_only=True)
class WorkerRun:
    """What one worker did.

    Attributes:
        worker: Its name (the consumer name, and its output directory's).
        finished: Accounts this worker finished and recorded first, with their crawls.
        redone: Accounts it took over from a worker that stopped answering.
        lost: Accounts another worker claimed while this one crawled them
            (it stalled longer than ``claim_idle``); left to that worker.
        skipped: Entries for accounts already done by another worker.
    """

    worker: str
    finished: dict[str, JsonlCrawl] = attrs.Factory(dict)
    redone: list[str] = attrs.Factory(list)
    lost: list[str] = attrs.Factory(list)
    skipped: list[str] = attrs.Factory(list)


@attrs.define
class _Entry:
    id: str
    account: str | None
    claimed: bool  # taken over from another worker


def _entries(messages: Any, *, claimed: bool) -> list[_Entry]:
    found = []
    for message in messages or []:
        if message is None:
            continue
        entry_id, fields = message
        account = None
        for name, value in (fields or {}).items():
            if text(name) == "account":
                account = text(value)
        found.append(_Entry(text(entry_id), account, claimed))
    return found


@attrs.define
class _Worker:
    client: AsyncWiserClient
    redis: Any
    keys: QueueKeys
    name: str
    directory: Path
    claim_idle: float
    poll: float
    crawl_options: dict[str, Any]
    on_account: Callable[[str, JsonlCrawl | None], None] | None
    run: WorkerRun
    patience: Patience
    keep: Any = None
    # Entries this worker's slots are crawling: XAUTOCLAIM may hand one back to
    # this same consumer (its idle time ran out between two renewals); not a new job.
    working: set[str] = attrs.field(factory=set)

    async def next_entry(self, own: list[_Entry], *, wait: bool) -> _Entry | None:
        if own:
            return own.pop(0)
        stale = await self.claim_stale()
        if stale is not None:
            return stale
        # A new entry whose answer is lost in an outage stays pending under this
        # name: XAUTOCLAIM hands it out again after claim_idle.
        reply = await self.patience.call(
            lambda: self.redis.xreadgroup(
                GROUP,
                self.name,
                {self.keys.stream: ">"},
                count=1,
                block=milliseconds(self.poll) if wait else None,
            )
        )
        for _, messages in reply or []:
            for entry in _entries(messages, claimed=False):
                return entry
        return None

    async def own_pending(self) -> list[_Entry]:
        """The entries this worker's name held before (a restart with the same name)."""
        reply = await self.patience.call(
            lambda: self.redis.xreadgroup(GROUP, self.name, {self.keys.stream: "0"}, count=10_000)
        )
        # Entries trimmed from the stream meanwhile come without an account: acknowledged.
        return [entry for _, messages in reply or [] for entry in _entries(messages, claimed=False)]

    def _just_recovered(self) -> bool:
        recovered = self.patience.recovered_at
        return recovered is not None and anyio.current_time() - recovered < self.claim_idle

    async def claim_stale(self) -> _Entry | None:
        """An entry another worker held without a sign of life for `claim_idle` seconds."""
        if self._just_recovered():
            # An outage aged every claim: their holders renew them first.
            return None
        cursor = "0-0"
        while True:
            reply = await self.patience.call(
                partial(
                    self.redis.xautoclaim,
                    self.keys.stream,
                    GROUP,
                    self.name,
                    milliseconds(self.claim_idle),
                    start_id=cursor,
                    count=1,
                )
            )
            cursor, messages = text(reply[0]), reply[1]
            deleted = [text(entry) for entry in (reply[2] if len(reply) > 2 else [])]
            if deleted:  # trimmed from the stream meanwhile: nothing left to read
                acknowledge = partial(self.redis.xack, self.keys.stream, GROUP, *deleted)
                await self.patience.call(acknowledge)
            for entry in _entries(messages, claimed=True):
                if entry.id not in self.working:
                    return entry
            if cursor == "0-0":
                return None

    async def drained(self) -> bool:
        async def read() -> list[Any]:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xpending(self.keys.stream, GROUP)
                pipe.scard(self.keys.accounts)
                pipe.hlen(self.keys.done)
                answers: list[Any] = await pipe.execute()
                return answers

        pending, enqueued, done = await self.patience.call(read)
        return int(pending["pending"]) == 0 and int(done) >= int(enqueued)

    async def keep_claimed(self, entry: _Entry, lost: anyio.CancelScope) -> None:
        """Reset the entry's idle time until cancelled; cancel `lost` if it is taken away."""
        while True:
            await anyio.sleep(self.claim_idle / 3)
            held = await self.patience.call(
                lambda: self.keep(keys=[self.keys.stream], args=[GROUP, self.name, entry.id])
            )
            if not int(held):
                lost.cancel()
                return

    async def work(self, entry: _Entry) -> None:
        self.working.add(entry.id)
        try:
            await self._work(entry)
        finally:
            self.working.discard(entry.id)

    async def _work(self, entry: _Entry) -> None:
        account = entry.account
        if account is None or await self.patience.call(
            lambda: self.redis.hexists(self.keys.done, account)
        ):
            await self.patience.call(lambda: self.redis.xack(self.keys.stream, GROUP, entry.id))
            if account is not None:
                self.run.skipped.append(account)
            return
        if entry.claimed:
            self.run.redone.append(account)
        relative = Path(file_name(self.name), file_name(account) + ".jsonl")
        path = self.directory / relative
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        crawled: JsonlCrawl | None = None
        with anyio.CancelScope() as lost:
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(self.keep_claimed, entry, lost)
                    crawled = await crawl_to_jsonl(
                        self.client, path, resume=True, accounts=[account], **self.crawl_options
                    )
                    group.cancel_scope.cancel()
            except BaseExceptionGroup as errors:
                if len(errors.exceptions) == 1:  # the crawl's or Redis's own error, unwrapped
                    raise errors.exceptions[0] from None
                raise
        if crawled is None:  # another worker holds it now
            self.run.lost.append(account)
            if self.on_account is not None:
                self.on_account(account, None)
            return
        first = await self._record(entry, account, relative.as_posix(), crawled)
        if first:
            self.run.finished[account] = crawled
        else:
            self.run.skipped.append(account)
        if self.on_account is not None:
            self.on_account(account, crawled if first else None)

    async def _record(self, entry: _Entry, account: str, file: str, crawled: JsonlCrawl) -> bool:
        """Record the account done and acknowledge its entry; True if this worker was first."""
        record = done_record(
            worker=self.name,
            file=file,
            finished=crawled.finished,
            failures=[failure.to_dict() for failure in crawled.failures],
            run_failures=[failure.to_dict() for failure in crawled.run_failures],
            items=dict(crawled.items),
            stats=crawled.run.to_dict(),
        )

        async def finish() -> Any:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(self.keys.done, account, record)
                pipe.xack(self.keys.stream, GROUP, entry.id)
                first, _ = await pipe.execute()
                return first

        if int(await self.patience.call(finish)):
            return True
        # Tried again after an outage, the transaction may have been carried out
        # the first time, its answer lost: then the record is this worker's own.
        raw = await self.patience.call(lambda: self.redis.hget(self.keys.done, account))
        done = read_done(raw) if raw is not None else {}
        return done.get("worker") == self.name and done.get("file") == file


async def run_worker(
    client: AsyncWiserClient,
    redis: Any,
    *,
    queue: str,
    output_dir: Path,
    worker: str | None = None,
    claim_idle: float = 30.0,
    poll: float = 0.2,
    parallel: int = 8,
    devices_by: DevicesBy = "site",
    page_size: int | None = None,
    timeout: float | None = None,
    source: str | None = None,
    validate: Validation = "ids",
    on_account: Callable[[str, JsonlCrawl | None], None] | None = None,
    patience: float = 30.0,
) -> WorkerRun:
    """Crawl accounts off `queue` until every enqueued account is done.

    Each account goes to ``output_dir/WORKER/ACCOUNT.jsonl`` with
    `crawl_to_jsonl` (``resume=True``: a worker restarted under the same name
    continues its files). Use a fresh `output_dir` for each queue: a finished
    file from an earlier queue would be taken as this crawl's.

    Args:
        client: The client to crawl with (its rate limit: a `RedisRateLimiter`
            shares one rate among all workers).
        redis: A redis-py asyncio client (``redis.asyncio.Redis``).
        queue: The queue's name, as given to `enqueue`.
        output_dir: Where this worker writes (a directory of its own is made in it).
        worker: This worker's name (default ``HOST-PID``); unique among live workers.
        claim_idle: Seconds without a sign of life after which another
            worker's account is taken over. Crawling workers renew their
            claim every third of it.
        poll: Seconds to wait for a new entry before checking whether the queue is done
            (the most a worker outlives the last account by).
        parallel: Accounts this worker crawls at once, sharing its client (and so
            its in-flight limit and rate): one account is a few round trips in
            a row, too few to keep a worker's requests in flight by itself.
        devices_by: As for `crawl_to_jsonl`.
        page_size: As for `crawl_to_jsonl`.
        timeout: As for `crawl_to_jsonl`, per account.
        source: As for `crawl_to_jsonl`.
        validate: As for `crawl_to_jsonl`.
        on_account: Called with each account this worker stops working on,
            and its crawl (None when another worker recorded it first or took it over).
        patience: Seconds an outage of `redis` (a restart) is waited out: its
            calls are tried again until it answers, the crawls going on
            meanwhile. Longer, the worker stops with `QueueUnavailable`; started
            again (under the same `worker` name) it resumes what it held.
            0: the first failed call stops the worker.

    Returns:
        What this worker did (`WorkerRun`). The whole crawl's result is `merge`'s.

    Raises:
        QueueUnavailable: `redis` did not answer for `patience` seconds.
    """
    if not claim_idle > 0 or not poll > 0:
        raise ValueError("claim_idle and poll must be positive (seconds)")
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    keys = QueueKeys(queue)
    waits = Patience(patience)
    name = worker or default_worker_name()
    state = _Worker(
        client=client,
        redis=redis,
        keys=keys,
        name=name,
        directory=output_dir,
        claim_idle=claim_idle,
        poll=poll,
        crawl_options={
            "devices_by": devices_by,
            "page_size": page_size,
            "timeout": timeout,
            "source": source,
            "validate": validate,
        },
        on_account=on_account,
        run=WorkerRun(worker=name),
        patience=waits,
    )
    state.keep = redis.register_script(_KEEP)
    await waits.call(lambda: ensure_group(redis, keys))
    own = await state.own_pending()

    async def slot() -> None:
        while True:
            entry = await state.next_entry(own, wait=False)
            if entry is None:
                # Each slot sees the end itself (within `poll`): cancelling the others
                # could cut one short between its account's record and its report.
                if await state.drained():
                    return
                entry = await state.next_entry(own, wait=True)
            if entry is not None:
                await state.work(entry)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(parallel):
                group.start_soon(slot)
    except BaseExceptionGroup as errors:
        if len(errors.exceptions) == 1:  # one slot's error, unwrapped
            raise errors.exceptions[0] from None
        if all(isinstance(error, QueueUnavailable) for error in errors.exceptions):
            # Every slot waited out the same outage: one error says it.
            raise errors.exceptions[0] from None
        raise
    return state.run


def read_done(raw: Any) -> dict[str, Any]:
    """A ``done`` hash value, decoded."""
    record: dict[str, Any] = json.loads(text(raw))
    return record
