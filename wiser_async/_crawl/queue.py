"""The jobs of a walk (page fetches) and the fair queue that serves them."""

from __future__ import annotations

import heapq
import itertools
from collections import deque

import anyio
import attrs

from .._config import COLLECTIONS, CollectionName, PagingGuard
from .results import Unit

__all__ = ["FairQueue", "Job", "Pages"]


@attrs.frozen(eq=False, kw_only=True)
class Job:
    """One page to fetch, and where what it finds belongs."""

    account: str
    unit: Unit
    collection: CollectionName
    parent_id: str | None
    location_id: str | None
    site_id: str | None
    offset: int = 0
    limit: int
    # The first page of a collection schedules the others: from a total, a
    # few at a time as workers free (`pages`); without one, the next each time.
    first: bool = True
    pages: Pages | None = None
    # The collection's paging so far, once it has a second page (None before).
    guard: PagingGuard | None = None


@attrs.define(eq=False)
class Pages:
    """The pages of one collection still to read, handed out as workers free.

    However large a total the API gives, only a window of its pages is queued
    at a time: a total of 10**15 costs no memory and no loop.
    """

    job: Job  # the collection's first page, as a template
    next_offset: int
    end: int
    step: int

    def take(self) -> Job | None:
        """The job of the next page, or None when every page is handed out or the paging ended."""
        guard = self.job.guard
        if guard is not None and guard.ended:
            # The paging ended (a loop, a bound): the rest is neither read nor reported.
            self.next_offset = self.end
        if self.next_offset >= self.end:
            return None
        job = attrs.evolve(
            self.job, offset=self.next_offset, limit=self.step, first=False, pages=self
        )
        self.next_offset += self.step
        return job


class FairQueue:
    """Pending jobs, served round-robin between accounts, deepest level first within one.

    Deeper levels first keep the frontier (pages known but not fetched) small;
    within a level, the further pages of collections already begun come
    before first pages, so a few units are read at a time, to their end:
    what a crawl holds for its unfinished units stays a few units' worth.
    A job put wakes one idle worker, not all of them: with dozens of workers
    and thousands of jobs, waking every worker for every job would cost more
    CPU than the requests themselves.
    """

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, bool, int, Job]]] = {}
        self._ring: deque[str] = deque()
        self._sequence = itertools.count()
        self._idle: deque[anyio.Event] = deque()
        self.active: dict[int, Job] = {}

    def put(self, job: Job) -> None:
        """Queue `job`; wake one idle worker."""
        heap = self._heaps.get(job.account)
        if heap is None:
            heap = self._heaps[job.account] = []
        if not heap:
            self._ring.append(job.account)
        depth = COLLECTIONS[job.collection].depth
        heapq.heappush(heap, (-depth, job.first, next(self._sequence), job))
        if self._idle:
            self._idle.popleft().set()

    def _wake_all(self) -> None:
        while self._idle:
            self._idle.popleft().set()

    async def get(self) -> Job | None:
        """The next job, or None when no job is queued or running: the walk is over."""
        while True:
            if self._ring:
                account = self._ring.popleft()
                heap = self._heaps[account]
                job = heapq.heappop(heap)[3]
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

    def done(self, job: Job) -> None:
        """`job` has finished (whatever became of it)."""
        del self.active[id(job)]
        if not self.active and not self._ring:
            self._wake_all()

    def drop_account(self, account: str) -> None:
        """Forget the queued jobs of an account."""
        self._heaps.pop(account, None)
        if account in self._ring:
            self._ring.remove(account)

    def pending(self) -> list[Job]:
        """Queued and running jobs."""
        queued = [entry[3] for heap in self._heaps.values() for entry in heap]
        return queued + list(self.active.values())
