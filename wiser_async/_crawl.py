"""Portfolio crawls: a streaming, bounded, fair walk of location -> site -> room -> device.

The walk is a pool of workers taking page fetches from a queue. The queue is
fair between accounts (round-robin) and, within an account, serves deeper
levels first, so the frontier stays a few pages wide however large the
portfolio. Found items go to the consumer through a memory object stream
of one page per message with a small buffer: a slow consumer blocks the
workers (backpressure) instead of letting results pile up. Every request
goes through the client's request path, so the client's in-flight limit,
rate limit, 429 pause and retries apply across all levels and accounts.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Container, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from token_stores import TokenStoreError

from ._config import usable_id
from .errors import (
    ApiError,
    AuthorizationError,
    BadRequest,
    ConnectionFailed,
    DecodeError,
    Forbidden,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
    TokenEndpointError,
    UnexpectedRedirect,
    WiserError,
)
from .models import Device, Location, Page, Room, Site

if TYPE_CHECKING:
    from ._client import AsyncWiserClient

__all__ = [
    "CrawlResult",
    "CrawlStats",
    "Failure",
    "LocationTree",
    "Node",
    "RoomTree",
    "SiteTree",
    "Walk",
]

NodeKind: TypeAlias = Literal["location", "site", "room", "device"]
DevicesBy: TypeAlias = Literal["site", "room"]
Collection: TypeAlias = Literal["locations", "sites", "rooms", "site_devices", "room_devices"]
Item: TypeAlias = Location | Site | Room | Device
# A unit is what a checkpoint records as done: the nodes found by the jobs
# of one account's location list, one location's site list, or one site's
# rooms and devices. ("account", account, "") | ("location", account, id) | ("site", account, id)
Unit: TypeAlias = tuple[str, str, str]

_KIND_OF: dict[Collection, NodeKind] = {
    "locations": "location",
    "sites": "site",
    "rooms": "room",
    "site_devices": "device",
    "room_devices": "device",
}
_MODEL_OF: dict[Collection, type[Any]] = {
    "locations": Location,
    "sites": Site,
    "rooms": Room,
    "site_devices": Device,
    "room_devices": Device,
}
# Deeper levels first keeps the frontier (pages known but not fetched) small.
# Collections whose items lead to more collections (rooms only when devices are read by room).
_PARENTS = frozenset({"locations", "sites", "rooms"})
_DEPTH: dict[Collection, int] = {
    "locations": 0,
    "sites": 1,
    "rooms": 2,
    "site_devices": 2,
    "room_devices": 3,
}


@attrs.frozen
class Node:
    """One item found by a walk, with the ids of its parents.

    Attributes:
        kind: ``"location"``, ``"site"``, ``"room"`` or ``"device"``.
        account: The account key whose portfolio it belongs to.
        item: The model (`Location`, `Site`, `Room` or `Device`).
        location_id: Its location (None for a location).
        site_id: Its site (None for a location or a site).
        room_id: Its room: a device's room, None for a device in no room.
    """

    kind: NodeKind
    account: str
    item: Item
    location_id: str | None = None
    site_id: str | None = None
    room_id: str | None = None

    @property
    def id(self) -> str:
        """The item's id."""
        return self.item.id


@attrs.frozen
class Failure:
    """A part of the portfolio the crawl could not read, and why.

    Attributes:
        account: The account key.
        resource: The request path (with query) that failed, or ``"*"`` when
            the whole account failed.
        kind: What went wrong: ``forbidden``, ``not_found``, ``bad_request``,
            ``rate_limited``, ``server_error``, ``timeout``, ``connection``,
            ``decode``, ``redirect``, ``authorization``, ``store``,
            ``token_endpoint``, ``api_error`` or ``deadline`` (not read before
            the crawl's deadline).
        status: The HTTP status, when there was one.
        message: The error's message (never a secret).
        collection: The collection being read (``locations``, ``sites``,
            ``rooms``, ``site_devices``, ``room_devices``); None for the account.
        parent_id: The id the collection belongs to (a location for sites, ...).
        offset: The first index of the page that failed.
        location_id: The location above the failed part, if any.
        site_id: The site above the failed part, if any.
    """

    account: str
    resource: str
    kind: str
    status: int | None
    message: str
    collection: Collection | None = None
    parent_id: str | None = None
    offset: int | None = None
    location_id: str | None = None
    site_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The failure as JSON-ready data."""
        return attrs.asdict(self)


@attrs.define
class CrawlStats:
    """What a crawl did.

    Attributes:
        requests: HTTP requests sent (retries included).
        retries: Requests repeated after a transient failure or a 429.
        throttled: 429 answers received.
        failures: Parts of the portfolio not read.
        duration: Seconds from start to end.
        locations, sites, rooms, devices: Items found.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0
    duration: float = 0.0
    locations: int = 0
    sites: int = 0
    rooms: int = 0
    devices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        return attrs.asdict(self)


@attrs.define
class RoomTree:
    """A room and the devices in it."""

    room: Room
    devices: list[Device] = attrs.Factory(list)


@attrs.define
class SiteTree:
    """A site, its rooms, and its devices that are in none of those rooms.

    `devices` holds the devices with no ``roomId`` (a main meter, a gateway),
    and any whose room the crawl could not read.
    """

    site: Site
    rooms: list[RoomTree] = attrs.Factory(list)
    devices: list[Device] = attrs.Factory(list)


@attrs.define
class LocationTree:
    """A location and its sites."""

    location: Location
    sites: list[SiteTree] = attrs.Factory(list)


@attrs.define
class CrawlResult:
    """A whole crawl: the tree of each account, every failure, and stats.

    ``result.complete`` is True when nothing is missing.
    """

    portfolios: dict[str, list[LocationTree]]
    failures: list[Failure]
    stats: CrawlStats

    @property
    def complete(self) -> bool:
        """True if every part of every portfolio was read."""
        return not self.failures

    @property
    def locations(self) -> list[LocationTree]:
        """The tree of the only account crawled.

        Raises:
            ValueError: if the crawl covered several accounts (use `portfolios`).
        """
        if len(self.portfolios) != 1:
            raise ValueError("several accounts were crawled: use .portfolios[account]")
        return next(iter(self.portfolios.values()))

    def nodes(self) -> Iterator[Node]:
        """Every item of every account, parents before children."""
        for account, locations in self.portfolios.items():
            for location_tree in locations:
                location_id = location_tree.location.id
                yield Node("location", account, location_tree.location)
                for site_tree in location_tree.sites:
                    site_id = site_tree.site.id
                    yield Node("site", account, site_tree.site, location_id)
                    for room_tree in site_tree.rooms:
                        room_id = room_tree.room.id
                        yield Node("room", account, room_tree.room, location_id, site_id)
                        for device in room_tree.devices:
                            yield Node("device", account, device, location_id, site_id, room_id)
                    for device in site_tree.devices:
                        yield Node("device", account, device, location_id, site_id, device.room_id)

    def devices(self) -> Iterator[Device]:
        """Every device found."""
        for node in self.nodes():
            if node.kind == "device":
                yield node.item  # type: ignore[misc]


# -- what flows from the workers to the consumer ----------------------------------


@attrs.frozen
class _Batch:
    """The items of one page, with the parents they share."""

    kind: NodeKind
    account: str
    unit: Unit
    items: Sequence[Item]
    location_id: str | None
    site_id: str | None
    room_id: str | None

    def room_of(self, device: Device) -> str | None:
        """A room's listing places its devices; a site's mixes rooms: each its own roomId."""
        return self.room_id if self.room_id is not None else device.room_id

    def nodes(self) -> Iterator[Node]:
        if self.kind == "device":
            for item in self.items:
                room_id = self.room_of(item)  # type: ignore[arg-type]
                yield Node("device", self.account, item, self.location_id, self.site_id, room_id)
        else:
            for item in self.items:
                yield Node(self.kind, self.account, item, self.location_id, self.site_id)


@attrs.frozen
class _FailureEvent:
    unit: Unit
    failure: Failure


@attrs.frozen
class _UnitDone:
    unit: Unit


Event: TypeAlias = _Batch | _FailureEvent | _UnitDone


@attrs.frozen(eq=False, kw_only=True)
class _Job:
    account: str
    unit: Unit
    collection: Collection
    parent_id: str | None
    location_id: str | None
    site_id: str | None
    offset: int = 0
    limit: int
    # The first page of a collection schedules the others: from a total, a
    # few at a time as workers free (`pages`); without one, the next each time.
    first: bool = True
    pages: _Pages | None = None


@attrs.define(eq=False)
class _Pages:
    """The pages of one collection still to read, handed out as workers free.

    However large a total the API gives, only a window of its pages is queued
    at a time: a total of 10**15 costs no memory and no loop.
    """

    job: _Job  # the collection's first page, as a template
    next_offset: int
    end: int
    step: int

    def take(self) -> _Job | None:
        """The job of the next page, or None when every page is handed out."""
        if self.next_offset >= self.end:
            return None
        job = attrs.evolve(
            self.job, offset=self.next_offset, limit=self.step, first=False, pages=self
        )
        self.next_offset += self.step
        return job


class _FairQueue:
    """Pending jobs, served round-robin between accounts, deepest level first within one.

    A job put wakes one idle worker, not all of them: with dozens of workers
    and thousands of jobs, waking every worker for every job would cost more
    CPU than the requests themselves.
    """

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, int, _Job]]] = {}
        self._ring: deque[str] = deque()
        self._sequence = itertools.count()
        self._idle: deque[anyio.Event] = deque()
        self.active: dict[int, _Job] = {}

    def put(self, job: _Job) -> None:
        heap = self._heaps.get(job.account)
        if heap is None:
            heap = self._heaps[job.account] = []
        if not heap:
            self._ring.append(job.account)
        heapq.heappush(heap, (-_DEPTH[job.collection], next(self._sequence), job))
        if self._idle:
            self._idle.popleft().set()

    def _wake_all(self) -> None:
        while self._idle:
            self._idle.popleft().set()

    async def get(self) -> _Job | None:
        """The next job, or None when no job is queued or running: the walk is over."""
        while True:
            if self._ring:
                account = self._ring.popleft()
                heap = self._heaps[account]
                job = heapq.heappop(heap)[2]
                if heap:
                    self._ring.append(account)
                self.active[id(job)] = job
                return job
            if not self.active:
                self._wake_all()  # the other idle workers see the end too
                return None
            event = anyio.Event()
            self._idle.append(event)
            await event.wait()

    def done(self, job: _Job) -> None:
        del self.active[id(job)]
        if not self.active and not self._ring:
            self._wake_all()

    def drop_account(self, account: str) -> None:
        """Forget the queued jobs of an account."""
        self._heaps.pop(account, None)
        if account in self._ring:
            self._ring.remove(account)

    def pending(self) -> list[_Job]:
        """Queued and running jobs."""
        queued = [entry[2] for heap in self._heaps.values() for entry in heap]
        return queued + list(self.active.values())


# Pages a collection may have (500 items each: 50 million items). A larger
# total is no portfolio but a broken or hostile server: the collection fails.
MAX_PAGES = 100_000

# Failures that say nothing about the resource itself (the API or the store
# could not answer in time): a resumed crawl reads those parts again. A 403,
# 404, 400 or an undecodable body is the API's answer, and is kept.
RETRY_LATER_KINDS = frozenset(
    {"server_error", "timeout", "connection", "rate_limited", "store", "token_endpoint", "deadline"}
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


def _failure_kind(error: BaseException) -> tuple[str, int | None]:
    status = getattr(error, "status_code", None)
    kinds: list[tuple[type[BaseException], str]] = [
        (AuthorizationError, "authorization"),
        (Forbidden, "forbidden"),
        (NotFound, "not_found"),
        (BadRequest, "bad_request"),
        (RateLimited, "rate_limited"),
        (ServerError, "server_error"),
        (RequestTimeout, "timeout"),
        (ConnectionFailed, "connection"),
        (DecodeError, "decode"),
        (UnexpectedRedirect, "redirect"),
        (ApiError, "api_error"),
        (TokenStoreError, "store"),
    ]
    for cls, kind in kinds:
        if isinstance(error, cls):
            return kind, status
    return "error", status


class _Engine:
    """Runs one walk: the workers, the queue, the units and the failures."""

    def __init__(
        self,
        client: AsyncWiserClient,
        accounts: Sequence[str],
        *,
        devices_by: DevicesBy,
        page_size: int,
        done_units: Container[Unit],
        send: MemoryObjectSendStream[Event],
    ) -> None:
        self.clients = {
            account: client if account == client.account else client.for_account(account)
            for account in dict.fromkeys(accounts)
        }
        self.paths = client.config.paths
        self.devices_by = devices_by
        self.page_size = page_size
        self.done_units = done_units
        self.send = send
        self.queue = _FairQueue()
        self.open_jobs: dict[Unit, int] = {}
        self.failures: list[Failure] = []
        self.dead_accounts: set[str] = set()
        self.failed_jobs: set[int] = set()
        self.unfinished_units: set[Unit] = set()
        # A few more workers than request slots: one whose page is decoding
        # leaves its slot to another, waiting; many more only cost switching.
        self.workers = client.max_in_flight + max(4, client.max_in_flight // 4)
        self.cursors: list[_Pages] = []
        self.counts: dict[NodeKind, int] = {"location": 0, "site": 0, "room": 0, "device": 0}
        # Items the API said its collections hold (page totals), for progress.
        self.expected: dict[NodeKind, int] = {"location": 0, "site": 0, "room": 0, "device": 0}

    # -- scheduling ---------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        self.open_jobs[job.unit] = self.open_jobs.get(job.unit, 0) + 1
        self.queue.put(job)

    def _first_page(
        self,
        account: str,
        unit: Unit,
        collection: Collection,
        parent_id: str | None,
        location_id: str | None,
        site_id: str | None,
    ) -> None:
        self._enqueue(
            _Job(
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
        for account in self.clients:
            self._first_page(account, ("account", account, ""), "locations", None, None, None)

    def _children(self, job: _Job, item: Item) -> None:
        account = job.account
        if job.collection == "locations":
            self._first_page(
                account, ("location", account, item.id), "sites", item.id, item.id, None
            )
        elif job.collection == "sites":
            unit: Unit = ("site", account, item.id)
            if unit in self.done_units:
                return  # read before an interruption: a resumed walk skips it
            site_collections: tuple[Collection, ...] = ("rooms", "site_devices")
            for collection in site_collections:
                self._first_page(account, unit, collection, item.id, job.location_id, item.id)
        elif job.collection == "rooms" and self.devices_by == "room":
            self._first_page(
                account, job.unit, "room_devices", item.id, job.location_id, job.site_id
            )

    async def _more_pages(self, job: _Job, page: Page[Any]) -> None:
        size = page.size
        # A site's listing, when devices are read by room, repeats the rooms' devices.
        counted = not (job.collection == "site_devices" and self.devices_by == "room")
        if job.first and page.total is not None and counted:
            self.expected[_KIND_OF[job.collection]] += page.total
        if page.total is None:
            # No total: page on until a short page.
            if not page.is_last:
                self._enqueue(attrs.evolve(job, offset=job.offset + size))
            return
        if job.first:
            if page.is_last:
                return
            # A server that serves fewer items than asked (a smaller maximum)
            # sets the step, or items would be skipped.
            step = size if size < page.limit else page.limit
            left = -(-(page.total - job.offset - step) // step)
            if left > MAX_PAGES:
                await self._fail(
                    job,
                    "decode",
                    None,
                    f"the collection claims {page.total} items: {left} more pages, beyond "
                    f"the {MAX_PAGES} a collection may have; only its first page was read",
                    offset=job.offset + step,
                )
                return
            pages = _Pages(job, job.offset + step, page.total, step)
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

    def _schedule(self, pages: _Pages | None) -> None:
        """Queue the next page of a collection being read from its total, if one is left."""
        if pages is not None and (job := pages.take()) is not None:
            self._enqueue(job)

    def _unusable_ids(self, job: _Job, items: Sequence[Item]) -> list[Item]:
        """The items whose ids would go into paths of further requests and cannot."""
        descends = job.collection in ("locations", "sites") or (
            job.collection == "rooms" and self.devices_by == "room"
        )
        return [item for item in items if not usable_id(item.id)] if descends else []

    # -- running ------------------------------------------------------------------

    async def run(self, deadline: float | None) -> None:
        # Closing the stream ends the consumer's iteration, however the run ends.
        with self.send:
            self.start()
            with anyio.move_on_after(deadline) as scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.workers):
                        tg.start_soon(self._worker)
            if scope.cancelled_caught:
                reason = f"not read: the crawl's deadline of {deadline:g} s passed"
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

    def _path(self, job: _Job) -> str:
        paths = self.paths
        client = self.clients[job.account]
        parent = job.parent_id or ""
        match job.collection:
            case "locations":
                return client._path(paths.locations)
            case "sites":
                return client._path(paths.location_sites, location_id=parent)
            case "rooms":
                return client._path(paths.site_rooms, site_id=parent)
            case "site_devices":
                return client._path(paths.site_devices, site_id=parent)
            case "room_devices":
                return client._path(paths.room_devices, room_id=parent)

    async def _run(self, job: _Job) -> None:
        if job.account in self.dead_accounts:
            return
        try:
            await self._read(job)
        finally:
            # Whatever became of this page, the next of its collection goes on.
            self._schedule(job.pages)

    async def _read(self, job: _Job) -> None:
        client = self.clients[job.account]
        item_errors: list[DecodeError] = []
        try:
            page = await client._get_page(
                self._path(job),
                _MODEL_OF[job.collection],
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
            kind, status = _failure_kind(exc)
            await self._fail(job, kind, status, exc.message, resource=exc.path)
            return
        except TokenStoreError as exc:
            await self._fail(job, "store", None, str(exc))
            return
        for error in item_errors:
            await self._fail(job, "decode", None, error.message, resource=error.path)
        items: Sequence[Item] = page.items
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
            items = [device for device in page.items if device.room_id is None]
        kind = _KIND_OF[job.collection]
        if items and job.unit not in self.done_units:
            # Items of units a resumed walk already wrote are neither sent nor counted.
            await self._emit(
                _Batch(
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

    async def _emit(self, event: Event) -> None:
        # Straight into the buffer when it has room; wait (backpressure) when not.
        try:
            self.send.send_nowait(event)
        except anyio.WouldBlock:
            await self.send.send(event)

    async def _job_finished(self, job: _Job) -> None:
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
            await self._emit(_UnitDone(job.unit))

    async def _fail(
        self,
        job: _Job,
        kind: str,
        status: int | None,
        message: str,
        *,
        resource: str | None = None,
        offset: int | None = None,
    ) -> None:
        redact = self.clients[job.account].oauth.redact
        offset = job.offset if offset is None else offset
        failure = Failure(
            account=job.account,
            resource=redact(resource or f"{self._path(job)}?offset={offset}", job.account),
            kind=kind,
            status=status,
            message=redact(message, job.account),
            collection=job.collection,
            parent_id=job.parent_id,
            offset=offset,
            location_id=job.location_id,
            site_id=job.site_id,
        )
        self.failures.append(failure)
        self.failed_jobs.add(id(job))
        if kind in RETRY_LATER_KINDS:
            self.unfinished_units.add(job.unit)
        await self._emit(_FailureEvent(job.unit, failure))

    async def _account_failed(self, account: str, error: AuthorizationError) -> None:
        # One failure for the account, not one per collection: nothing of it
        # can be read until the customer authorizes again.
        if account in self.dead_accounts:
            return
        self.dead_accounts.add(account)
        self.queue.drop_account(account)
        kind, status = _failure_kind(error)
        message = self.clients[account].oauth.redact(error.message, account)
        failure = Failure(account=account, resource="*", kind=kind, status=status, message=message)
        self.failures.append(failure)
        await self._emit(_FailureEvent(("account", account, ""), failure))


class Walk:
    """A running walk: iterate it for `Node` objects, in the order they are found.

    `failures` lists what could not be read so far; `stats` is final once
    the iteration has ended.
    """

    def __init__(
        self, receive: MemoryObjectReceiveStream[Event], engine: _Engine, client: AsyncWiserClient
    ) -> None:
        self._receive = receive
        self._engine = engine
        self._client = client
        self._nodes: Iterator[Node] | None = None
        self._started = time.perf_counter()
        self._ended: float | None = None
        before = client.stats
        self._baseline = (before.requests, before.retries, before.throttled)

    @property
    def failures(self) -> list[Failure]:
        """What could not be read so far."""
        return self._engine.failures

    @property
    def expected(self) -> dict[NodeKind, int]:
        """Items the collections read so far hold, by kind, as their page totals say.

        Grows as the walk finds more collections; a collection without a
        total adds nothing. With `stats`, what a progress bar needs.
        """
        return dict(self._engine.expected)

    # Plain iterator classes rather than async generators: a consumer that
    # stops early leaves nothing to finalize.

    def __aiter__(self) -> Walk:
        return self

    async def __anext__(self) -> Node:
        while True:
            if self._nodes is not None:
                node = next(self._nodes, None)
                if node is not None:
                    return node
                self._nodes = None
            event = await self.next_event()
            if isinstance(event, _Batch):
                self._nodes = event.nodes()

    async def next_event(self) -> Event:
        """The next message from the workers: a page of items, a failure, a finished unit.

        Raises:
            StopAsyncIteration: the walk is over.
        """
        try:
            # Drain what is buffered without a trip through the event loop per
            # message: a consumer that yields on every page would fall behind
            # the workers and hold them all on a full buffer.
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._ended is None:
                self._ended = time.perf_counter()
            raise StopAsyncIteration from None
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._ended is None:
                self._ended = time.perf_counter()
            raise StopAsyncIteration from None

    def events(self) -> _Events:
        """Iterate every message from the workers (see `next_event`)."""
        return _Events(self)

    @property
    def stats(self) -> CrawlStats:
        """Counters so far; final once the iteration has ended."""
        stats = self._client.stats
        requests, retries, throttled = self._baseline
        counts = self._engine.counts
        ended = self._ended if self._ended is not None else time.perf_counter()
        return CrawlStats(
            requests=stats.requests - requests,
            retries=stats.retries - retries,
            throttled=stats.throttled - throttled,
            failures=len(self._engine.failures),
            duration=ended - self._started,
            locations=counts["location"],
            sites=counts["site"],
            rooms=counts["room"],
            devices=counts["device"],
        )


class _Events:
    def __init__(self, walk: Walk) -> None:
        self._walk = walk

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Event:
        return await self._walk.next_event()


@contextmanager
def _unwrapped() -> Iterator[None]:
    """Let an error of the walk's block out as itself, not in the task group's ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            error = group.exceptions[0]
            raise error from error.__cause__
        raise


@asynccontextmanager
async def open_walk(
    client: AsyncWiserClient,
    *,
    accounts: Sequence[str] | None,
    devices_by: DevicesBy,
    page_size: int | None,
    deadline: float | None,
    buffer: int,
    done_units: Container[Unit] = frozenset(),
) -> AsyncIterator[Walk]:
    """Start a walk in a task group that the block owns; leaving the block stops it."""
    if devices_by not in ("site", "room"):
        raise ValueError("devices_by must be 'site' or 'room'")
    # A walk reads pages as large as the API serves, unless told otherwise.
    size = client.config.pages.max_page_size if page_size is None else client._page_size(page_size)
    send, receive = anyio.create_memory_object_stream[Event](buffer)
    engine = _Engine(
        client,
        accounts if accounts is not None else [client.account],
        devices_by=devices_by,
        page_size=size,
        done_units=done_units,
        send=send,
    )
    walk = Walk(receive, engine, client)
    with receive, _unwrapped():
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run, deadline)
            try:
                yield walk
            finally:
                # The consumer is done, early or not: stop the workers. The
                # receiving end closes only once they have stopped, so none
                # finds it closed while still running; nothing outlives the block.
                tg.cancel_scope.cancel()


class _TreeBuilder:
    """Assembles pages of items into per-account trees."""

    def __init__(self) -> None:
        self.locations: dict[str, dict[str, LocationTree]] = {}
        self.sites: dict[tuple[str, str], SiteTree] = {}
        self.site_location: dict[tuple[str, str], str] = {}
        self.rooms: dict[tuple[str, str], dict[str, RoomTree]] = {}
        # Per site: the pages of its devices.
        self.devices: dict[tuple[str, str], list[_Batch]] = {}

    def add(self, batch: _Batch) -> None:
        account = batch.account
        if batch.kind == "location":
            trees = self.locations.setdefault(account, {})
            for item in batch.items:
                trees[item.id] = LocationTree(item)  # type: ignore[arg-type]
        elif batch.kind == "site":
            for item in batch.items:
                key = (account, item.id)
                self.sites[key] = SiteTree(item)  # type: ignore[arg-type]
                self.site_location[key] = batch.location_id or ""
        elif batch.kind == "room":
            rooms = self.rooms.setdefault((account, batch.site_id or ""), {})
            for item in batch.items:
                rooms[item.id] = RoomTree(item)  # type: ignore[arg-type]
        else:
            self.devices.setdefault((account, batch.site_id or ""), []).append(batch)

    def result(
        self, accounts: Sequence[str], failures: list[Failure], stats: CrawlStats
    ) -> CrawlResult:
        for key, site_tree in self.sites.items():
            rooms = self.rooms.get(key, {})
            site_tree.rooms = list(rooms.values())
            for batch in self.devices.get(key, []):
                for device in batch.items:
                    room_id = batch.room_of(device)  # type: ignore[arg-type]
                    room = rooms.get(room_id) if room_id is not None else None
                    (room.devices if room is not None else site_tree.devices).append(device)  # type: ignore[arg-type]
            location = self.locations.get(key[0], {}).get(self.site_location[key])
            if location is not None:
                location.sites.append(site_tree)
        portfolios = {
            account: list(self.locations.get(account, {}).values()) for account in accounts
        }
        return CrawlResult(portfolios=portfolios, failures=list(failures), stats=stats)
