"""`Walk`: a running walk, iterated for nodes or events; `open_walk` starts one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Container, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._config import NodeKind
from .._stats import ClientStats
from .._transport import Requester
from .engine import Engine
from .events import Batch, Event
from .results import CrawlStats, DevicesBy, Failure, Node, Unit

__all__ = ["Events", "Walk", "open_walk"]


class Walk:
    """A running walk: iterate it for `Node` objects, in the order they are found.

    `failures` lists what could not be read so far; `stats` is final once
    the iteration has ended.
    """

    def __init__(
        self, receive: MemoryObjectReceiveStream[Event], engine: Engine, counted: ClientStats
    ) -> None:
        self._receive = receive
        self._engine = engine
        # This walk's own requests, whatever else runs on the same client.
        self._counted = counted
        self._nodes: Iterator[Node] | None = None
        self._started = time.perf_counter()
        self._ended: float | None = None

    @property
    def failures(self) -> list[Failure]:
        """What could not be read so far."""
        return self._engine.failures

    @property
    def workers(self) -> int:
        """Tasks fetching pages: each holds at most one page while the consumer is slow."""
        return self._engine.workers

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
            if isinstance(event, Batch):
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
            return self.next_event_nowait()
        except anyio.WouldBlock:
            pass
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._over() from None

    def next_event_nowait(self) -> Event:
        """The next message if one is waiting.

        Raises:
            anyio.WouldBlock: none is, yet.
            StopAsyncIteration: the walk is over.
        """
        try:
            return self._receive.receive_nowait()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._over() from None

    def _over(self) -> StopAsyncIteration:
        if self._ended is None:
            self._ended = time.perf_counter()
        return StopAsyncIteration()

    def events(self) -> Events:
        """Iterate every message from the workers (see `next_event`)."""
        return Events(self)

    @property
    def stats(self) -> CrawlStats:
        """Counters so far; final once the iteration has ended."""
        counted = self._counted
        counts = self._engine.counts
        ended = self._ended if self._ended is not None else time.perf_counter()
        return CrawlStats(
            requests=counted.requests,
            retries=counted.retries,
            throttled=counted.throttled,
            failures=len(self._engine.failures),
            duration=ended - self._started,
            locations=counts["location"],
            sites=counts["site"],
            rooms=counts["room"],
            devices=counts["device"],
        )


class Events:
    def __init__(self, walk: Walk) -> None:
        self._walk = walk

    def __aiter__(self) -> Events:
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
    requester: Requester,
    *,
    accounts: Sequence[str] | None,
    devices_by: DevicesBy,
    page_size: int | None,
    timeout: float | None,
    buffer: int,
    done_units: Container[Unit] = frozenset(),
    raw: bool = False,
) -> AsyncIterator[Walk]:
    """Start a walk in a task group that the block owns; leaving the block stops it.

    With `raw`, items are kept as the API sent them (`RawItem`: ids read,
    JSON written), for writing out unchanged; read them with `Walk.events()`.
    """
    if devices_by not in ("site", "room"):
        raise ValueError("devices_by must be 'site' or 'room'")
    size = requester.page_size(page_size)
    send, receive = anyio.create_memory_object_stream[Event](buffer)
    counted = ClientStats()
    engine = Engine(
        requester,
        accounts if accounts is not None else [requester.account],
        devices_by=devices_by,
        page_size=size,
        done_units=done_units,
        send=send,
        sink=counted,
        raw=raw,
    )
    walk = Walk(receive, engine, counted)
    with receive, _unwrapped():
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run, timeout)
            try:
                yield walk
            finally:
                # The consumer is done, early or not: stop the workers. The
                # receiving end closes only once they have stopped, so none
                # finds it closed while still running; nothing outlives the block.
                tg.cancel_scope.cancel()
