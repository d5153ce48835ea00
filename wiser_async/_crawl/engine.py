"""The engine of a walk: workers taking page fetches from a fair queue, and what they find.

The queue is fair between accounts (round-robin) and, within an account,
serves deeper levels first, so the frontier stays a few pages wide however
large the portfolio. Found items go to the consumer through a memory object
stream of one page per message with a small buffer: a slow consumer blocks
the workers (backpressure). Every request goes through a `Requester`, so the
client's in-flight limit, rate limit, 429 pause and retries apply across all
levels and accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from token_stores import TokenStoreError

from .._config import COLLECTIONS, MAX_PAGES, CollectionName, NodeKind, PagingGuard, usable_id
from .._decode import RawItem
from .._observe import ClientEvent
from .._stats import ClientStats
from .._transport import Requester
from ..errors import AuthorizationError, DecodeError, PagingLoop, TokenEndpointError, WiserError
from ..models import Page
from .events import Batch, Event, FailureEvent, UnitDone
from .queue import FairQueue, Job, Pages
from .results import DevicesBy, Failure, Item, Unit

__all__ = ["MAX_PAGES", "RETRY_LATER_KINDS", "Engine", "FailureRecorded"]

logger = logging.getLogger("wiser_async.crawl")

# Collections whose items lead to more collections (rooms only when devices are read by room).
_PARENTS = frozenset({"locations", "sites", "rooms"})

# Failures that say nothing about the resource itself (the API or the store
# could not answer in time): a resumed crawl reads those parts again. A 403,
# 404, 400, an undecodable body or a paging loop is the API's answer, and is kept.
RETRY_LATER_KINDS = frozenset(
    {
        "server_error",
        "timeout",
        "connection",
        "rate_limited",
        "rate_limiter",
        "store",
        "token_endpoint",
        "deadline",
    }
)
# Token-endpoint failures that pass: the account's grant may be fine.
_PASSING_TOKEN_ERRORS = frozenset(
    {
        "timeout",
        "unreachable",
        "connection_lost",
        "server_error",
        "invalid_response",
        "temporarily_unavailable",
    }
)


@attrs.frozen
class FailureRecorded(ClientEvent):
    """A walk or crawl recorded a failure (one per `Failure` of its results).

    Attributes:
        failure: What could not be read, and why (never a secret).
    """

    failure: Failure


class Engine:
    """Runs one walk: the workers, the queue, the units and the failures."""

    def __init__(
        self,
        requester: Requester,
        accounts: Sequence[str],
        *,
        devices_by: DevicesBy,
        page_size: int,
        done_units: Container[Unit],
        send: MemoryObjectSendStream[Event],
        sink: ClientStats,
        raw: bool = False,
    ) -> None:
        # This walk's requests are counted in its own sink too.
        counted = requester.counting(sink)
        self.requesters = {
            account: counted if account == counted.account else counted.for_account(account)
            for account in dict.fromkeys(accounts)
        }
        self.paths = requester.config.paths
        self.page_format = requester.config.pages
        self.events = requester.session.events
        self.devices_by = devices_by
        # Items kept as the API sent them, only their ids read (a crawl to a file).
        self.raw = raw
        self.page_size = page_size
        self.done_units = done_units
        self.send = send
        self.queue = FairQueue()
        self.open_jobs: dict[Unit, int] = {}
        self.failures: list[Failure] = []
        self.dead_accounts: set[str] = set()
        self.failed_jobs: set[int] = set()
        self.unfinished_units: set[Unit] = set()
        # A few more workers than request slots: one whose page is decoding
        # leaves its slot to another, waiting; many more only cost switching.
        slots = requester.session.max_in_flight
        self.workers = slots + max(4, slots // 4)
        self.cursors: list[Pages] = []
        self.counts: dict[NodeKind, int] = {"location": 0, "site": 0, "room": 0, "device": 0}
        # Items the API said its collections hold (page totals), for progress.
        self.expected: dict[NodeKind, int] = {"location": 0, "site": 0, "room": 0, "device": 0}

    # -- scheduling ---------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self.open_jobs[job.unit] = self.open_jobs.get(job.unit, 0) + 1
        self.queue.put(job)

    def _first_page(
        self,
        account: str,
        unit: Unit,
        collection: CollectionName,
        parent_id: str | None,
        location_id: str | None,
        site_id: str | None,
    ) -> None:
        self._enqueue(
            Job(
                account=account,
                unit=unit,
                collection=collection,
                parent_id=parent_id,
                location_id=location_id,
                site_id=site_id,
                limit=self.page_size,
            )
        )

    def start(self) -> None:
        for account in self.requesters:
            self._first_page(account, ("account", account, ""), "locations", None, None, None)

    def _children(self, job: Job, item: Item | RawItem) -> None:
        account = job.account
        if job.collection == "locations":
            self._first_page(
                account, ("location", account, item.id), "sites", item.id, item.id, None
            )
        elif job.collection == "sites":
            unit: Unit = ("site", account, item.id)
            if unit in self.done_units:
                return  # read before an interruption: a resumed walk skips it
            site_collections: tuple[CollectionName, ...] = ("rooms", "site_devices")
            for collection in site_collections:
                self._first_page(account, unit, collection, item.id, job.location_id, item.id)
        elif job.collection == "rooms" and self.devices_by == "room":
            self._first_page(
                account, job.unit, "room_devices", item.id, job.location_id, job.site_id
            )

    async def _more_pages(self, job: Job, page: Page[Any]) -> None:
        size = page.size
        # A site's listing, when devices are read by room, repeats the rooms' devices.
        counted = not (job.collection == "site_devices" and self.devices_by == "room")
        if job.first and page.total is not None and counted:
            self.expected[COLLECTIONS[job.collection].kind] += page.total
        if page.is_last:
            return
        guard = job.guard
        if guard is None:
            # A second page is coming: from now on the collection is watched for loops.
            try:
                guard = PagingGuard(page, self.page_format, self._path(job))
            except PagingLoop as exc:
                await self._fail(job, exc.kind, None, exc.message, offset=job.offset + size)
                return
        if page.total is None:
            # No total: page on until a short page.
            self._enqueue(attrs.evolve(job, offset=job.offset + size, guard=guard))
            return
        if job.first:
            # A server that serves fewer items than asked (a smaller maximum)
            # sets the step, or items would be skipped.
            step = size if size < page.limit else page.limit
            pages = Pages(attrs.evolve(job, guard=guard), job.offset + step, page.total, step)
            self.cursors.append(pages)
            for _ in range(self.workers):
                self._schedule(pages)
            return
        # A later page shorter than its share (the server served fewer this
        # time): read the rest of its share, and no further.
        expected = min(job.limit, page.total - job.offset)
        if 0 < size < expected:
            self._enqueue(
                attrs.evolve(job, offset=job.offset + size, limit=job.limit - size, pages=None)
            )

    def _schedule(self, pages: Pages | None) -> None:
        """Queue the next page of a collection being read from its total, if one is left."""
        if pages is not None and (job := pages.take()) is not None:
            self._enqueue(job)

    def _unusable_ids(self, job: Job, items: Sequence[Item | RawItem]) -> list[Item | RawItem]:
        """The items whose ids would go into paths of further requests and cannot."""
        descends = job.collection in ("locations", "sites") or (
            job.collection == "rooms" and self.devices_by == "room"
        )
        return [item for item in items if not usable_id(item.id)] if descends else []

    # -- running ------------------------------------------------------------------

    async def run(self, timeout: float | None) -> None:
        # Closing the stream ends the consumer's iteration, however the run ends.
        with self.send:
            self.start()
            with anyio.move_on_after(timeout) as scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.workers):
                        tg.start_soon(self._worker)
            if scope.cancelled_caught:
                reason = f"not read: the crawl's timeout of {timeout:g} s passed"
                for job in self.queue.pending():
                    if id(job) not in self.failed_jobs:
                        await self._fail(job, "deadline", None, reason)
                for pages in self.cursors:
                    # Pages of a collection not handed out yet: one failure for the rest.
                    if (
                        pages.next_offset < pages.end
                        and pages.job.account not in self.dead_accounts
                    ):
                        await self._fail(
                            pages.job,
                            "deadline",
                            None,
                            f"{reason} (from offset {pages.next_offset} of {pages.end})",
                            offset=pages.next_offset,
                        )

    async def _worker(self) -> None:
        while (job := await self.queue.get()) is not None:
            # A job counts as done only once all of it (its unit's end
            # included) has been sent: one cut short by the deadline stays in
            # the queue's active set and is reported as not read.
            await self._run(job)
            await self._job_finished(job)
            self.queue.done(job)

    def _path(self, job: Job) -> str:
        collection = COLLECTIONS[job.collection]
        template = collection.path_of(self.paths)
        requester = self.requesters[job.account]
        if collection.parent is None:
            return requester.path(template)
        return requester.path(template, **{collection.parent: job.parent_id or ""})

    async def _run(self, job: Job) -> None:
        if job.account in self.dead_accounts:
            return
        try:
            await self._read(job)
        finally:
            # Whatever became of this page, the next of its collection goes on.
            self._schedule(job.pages)

    async def _read(self, job: Job) -> None:
        requester = self.requesters[job.account]
        item_errors: list[DecodeError] = []
        try:
            fetch = requester.get_raw_page if self.raw else requester.get_page
            page: Page[Any] = await fetch(
                self._path(job),
                COLLECTIONS[job.collection].model,
                offset=job.offset,
                limit=self.page_size,
                on_item_error=item_errors.append,
            )
        except TokenEndpointError as exc:
            if exc.error in _PASSING_TOKEN_ERRORS:
                await self._fail(
                    job, "token_endpoint", exc.status_code, exc.message, resource=exc.path
                )
            else:
                await self._account_failed(job.account, exc)
            return
        except AuthorizationError as exc:
            await self._account_failed(job.account, exc)
            return
        except WiserError as exc:
            status = getattr(exc, "status_code", None)
            await self._fail(job, exc.kind, status, exc.message, resource=exc.path)
            return
        except TokenStoreError as exc:
            await self._fail(job, "store", None, str(exc))
            return
        for error in item_errors:
            await self._fail(job, "decode", None, error.message, resource=error.path)
        if job.guard is not None and not await self._passes(job, job.guard, page):
            return
        items: Sequence[Item | RawItem] = page.items
        unusable = self._unusable_ids(job, items)
        if unusable:
            await self._fail(
                job,
                "decode",
                None,
                f"{len(unusable)} item(s) with ids that cannot be put in a URL path "
                f"({', '.join(sorted({repr(item.id) for item in unusable}))}): left out",
            )
            left_out = {id(item) for item in unusable}
            items = [item for item in items if id(item) not in left_out]
        if job.collection == "site_devices" and self.devices_by == "room":
            # Devices in rooms come from the rooms; the site gives those in none.
            items = [device for device in items if device.room_id is None]  # type: ignore[union-attr] # site_devices holds devices
        kind = COLLECTIONS[job.collection].kind
        if items and job.unit not in self.done_units:
            # Items of units a resumed walk already wrote are neither sent nor counted.
            await self._emit(
                Batch(
                    kind,
                    job.account,
                    job.unit,
                    items,
                    job.location_id,
                    job.site_id,
                    job.parent_id if job.collection == "room_devices" else None,
                )
            )
            self.counts[kind] += len(items)
        if job.collection in _PARENTS:
            for item in items:
                self._children(job, item)
        await self._more_pages(job, page)

    async def _passes(self, job: Job, guard: PagingGuard, page: Page[Any]) -> bool:
        """False if `page` ends its collection (a loop, a bound), or came after that end."""
        if guard.ended:
            return False  # read while another page of the collection ended it
        try:
            guard.check(page, self._path(job))
        except PagingLoop as exc:
            await self._fail(job, exc.kind, None, exc.message)
            return False
        return True

    async def _emit(self, event: Event) -> None:
        # Straight into the buffer when it has room; wait (backpressure) when not.
        try:
            self.send.send_nowait(event)
        except anyio.WouldBlock:
            await self.send.send(event)

    async def _job_finished(self, job: Job) -> None:
        if job.account in self.dead_accounts:
            return
        left = self.open_jobs[job.unit] - 1
        if left:
            self.open_jobs[job.unit] = left
            return
        del self.open_jobs[job.unit]
        # A unit with a part left unread for a passing reason is not finished:
        # a resumed walk reads it again.
        if job.unit not in self.done_units and job.unit not in self.unfinished_units:
            await self._emit(UnitDone(job.unit))

    async def _fail(
        self,
        job: Job,
        kind: str,
        status: int | None,
        message: str,
        *,
        resource: str | None = None,
        offset: int | None = None,
    ) -> None:
        redact = self.requesters[job.account].redact
        offset = job.offset if offset is None else offset
        failure = Failure(
            account=job.account,
            resource=redact(resource or f"{self._path(job)}?offset={offset}"),
            kind=kind,
            status=status,
            message=redact(message),
            collection=job.collection,
            parent_id=job.parent_id,
            offset=offset,
            location_id=job.location_id,
            site_id=job.site_id,
        )
        self._record(failure)
        self.failed_jobs.add(id(job))
        if kind in RETRY_LATER_KINDS:
            self.unfinished_units.add(job.unit)
        await self._emit(FailureEvent(job.unit, failure))

    def _record(self, failure: Failure) -> None:
        self.failures.append(failure)
        logger.warning(
            "account %r: %s not read (%s%s): %s",
            failure.account,
            failure.resource,
            failure.kind,
            "" if failure.status is None else f", HTTP {failure.status}",
            failure.message,
            extra={
                "account": failure.account,
                "resource": failure.resource,
                "kind": failure.kind,
                "status": failure.status,
            },
        )
        if self.events is not None:
            self.events.emit(FailureRecorded(failure))

    async def _account_failed(self, account: str, error: AuthorizationError) -> None:
        # One failure for the account, not one per collection: nothing of it
        # can be read until the customer authorizes again.
        if account in self.dead_accounts:
            return
        self.dead_accounts.add(account)
        self.queue.drop_account(account)
        status = getattr(error, "status_code", None)
        message = self.requesters[account].redact(error.message)
        # The token endpoint refusing the client (RFC 6749 5.2) says nothing
        # about the customer's grant: the client id or secret needs fixing.
        refused_client = isinstance(error, TokenEndpointError) and error.error == "invalid_client"
        kind = "client" if refused_client else "authorization"
        failure = Failure(account=account, resource="*", kind=kind, status=status, message=message)
        self._record(failure)
        await self._emit(FailureEvent(("account", account, ""), failure))
