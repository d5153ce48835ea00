"""`AsyncWiserClient`: typed access to the API, a facade over the request path and the crawl."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx2

from ._config import ApiConfig
from ._oauth import WiserOAuth
from ._resources import Devices, Locations, Rooms, Sites
from ._retry import RateLimiter, RetryPolicy
from ._stats import ClientStats
from ._transport import DEFAULT_MAX_RESPONSE_BYTES, UNSET, Session, Unset

# The request path (and the decoders and events under it) is imported by the
# first client: importing the package does not pay for it.
if TYPE_CHECKING:
    from ._crawl import CrawlResult, DevicesBy, Walk
    from ._observe import EventHook
    from ._transport import Requester

T = TypeVar("T")

__all__ = ["AsyncWiserClient"]


class AsyncWiserClient:
    """Typed async access to the Wiser Energy Monitoring Cloud API for one account.

    Resources hang off the client: ``client.locations``, ``client.sites``,
    ``client.rooms``, ``client.devices``. Every call goes through one request
    path that signs with the account's token (refreshing once on 401),
    bounds in-flight requests, paces to an optional rate, pauses the whole
    client after a 429, retries transient failures within a budget and a
    time limit, and maps errors to `wiser_async.errors`.

    Create one per process and use `for_account` per customer: siblings
    share the connection pool, the limits, the codec and the token cache.
    Use it as an async context manager (or call `aclose`): it closes the
    HTTP client if it created it, never one it borrowed.

    Args:
        oauth: Provides the account's tokens.
        account: The account key whose token signs requests.
        config: URLs, path templates, paging and field names.
        http_client: An `httpx2.AsyncClient` to borrow (its connection pool,
            proxies, TLS settings); by default the client creates its own.
        transport: An httpx2 transport for the HTTP client it creates (such
            as the sandbox's in-process one).
        timeout: Seconds one attempt of a request may take as a whole: to
            connect (at most 10 s of it), to send, and to receive the headers
            and every byte of the body; a retry is a new attempt, and all of
            them end by ``retry.timeout``. An `httpx2.Timeout` sets httpx2's
            per-phase limits instead (each read, each write...), and only
            ``retry.timeout`` bounds the whole; None: no limit but that.
            Unset: 30 s (a borrowed client keeps its own phase limits).
        max_in_flight: Requests in flight at once, across every account and
            task sharing this client.
        rate_limit: Requests per second across this client and its
            `for_account` siblings (one process), or a `RedisRateLimiter`
            shared by every process using its key; None: no limit.
        retry: Retry policy for transient failures.
        max_response_bytes: Larger bodies are refused with `DecodeError`.
        on_event: Called with a `ClientEvent` (`RequestDone`, `RequestRetried`,
            `Throttled`, `TokenRefreshed`, `FailureRecorded`) as things happen,
            by this client and every `for_account` sibling. Synchronous, on
            the event loop: it must be quick and never block. One that raises
            is logged once at ERROR and the request goes on. None: no event is
            built at all.
    """

    def __init__(
        self,
        oauth: WiserOAuth,
        account: str,
        *,
        config: ApiConfig | None = None,
        http_client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: httpx2.Timeout | float | Unset | None = UNSET,
        max_in_flight: int = 16,
        rate_limit: float | RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_event: EventHook | None = None,
    ) -> None:
        from ._transport import Requester

        session = Session(
            oauth=oauth,
            config=config or ApiConfig(),
            http_client=http_client,
            transport=transport,
            timeout=timeout,
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
            retry=retry or RetryPolicy(),
            max_response_bytes=max_response_bytes,
            on_event=on_event,
        )
        self._attach(Requester(session, account), owns_session=True)

    def _attach(self, requester: Requester, *, owns_session: bool) -> None:
        self._requester = requester
        # Only the client that created the session closes it, never a sibling.
        self._owns_session = owns_session
        self.account = requester.account
        self.locations = Locations(requester)
        self.sites = Sites(requester)
        self.rooms = Rooms(requester)
        self.devices = Devices(requester)

    def for_account(self, account: str) -> AsyncWiserClient:
        """A client for another account sharing this one's pool, limits and stats.

        Closing it leaves the shared pool open: the client it came from owns it.
        """
        other = object.__new__(AsyncWiserClient)
        other._attach(self._requester.for_account(account), owns_session=False)
        return other

    def __repr__(self) -> str:
        return f"AsyncWiserClient(account={self.account!r}, base_url={self.config.base_url!r})"

    @property
    def requester(self) -> Requester:
        """The request path this client's calls go through."""
        return self._requester

    @property
    def config(self) -> ApiConfig:
        """The API configuration in use."""
        return self._requester.config

    @property
    def oauth(self) -> WiserOAuth:
        """The token provider."""
        return self._requester.session.oauth

    @property
    def stats(self) -> ClientStats:
        """Request counters, shared with every `for_account` sibling."""
        return self._requester.session.stats

    @property
    def max_in_flight(self) -> int:
        """The client-wide bound on requests in flight."""
        return self._requester.session.max_in_flight

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it (a `for_account` sibling never does)."""
        if self._owns_session:
            await self._requester.session.aclose()

    @asynccontextmanager
    async def walk(
        self,
        *,
        accounts: Sequence[str] | None = None,
        devices_by: DevicesBy = "site",
        page_size: int | None = None,
        timeout: float | None = None,
        buffer: int = 4,
    ) -> AsyncIterator[Walk]:
        """Walk the portfolio, yielding nodes as they are found.

        ::

            async with client.walk() as walk:
                async for node in walk:
                    ...
            print(walk.failures, walk.stats)

        Memory is bounded by the parallelism and the page size, not by the
        portfolio: a slow consumer slows the walk. Leaving the block stops
        it; no task outlives the block. A 403, 404 or undecodable body is
        recorded in ``walk.failures`` and the walk goes on beside and below.
        ``walk.stats`` counts this walk's own requests only.

        Args:
            accounts: Account keys to walk (default: this client's account),
                sharing this client's pool and in-flight limit, fairly.
            devices_by: ``"site"``: one device listing per site, devices
                grouped into rooms by their ``roomId``; ``"room"``: one listing
                per room, plus the site's listing for devices in no room.
            page_size: Items per page; None: ``config.pages.page_size`` (by default the
                API's maximum, 500).
            timeout: Seconds; what is not read by then is reported as a
                failure of kind ``deadline``.
            buffer: Pages of results held for a slow consumer.
        """
        # The crawl is imported by the first walk: a one-call script never pays for it.
        from ._crawl import open_walk

        async with open_walk(
            self._requester,
            accounts=accounts,
            devices_by=devices_by,
            page_size=page_size,
            timeout=timeout,
            buffer=buffer,
        ) as walk:
            yield walk

    async def crawl(
        self,
        *,
        accounts: Sequence[str] | None = None,
        devices_by: DevicesBy = "site",
        page_size: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[Walk], None] | None = None,
    ) -> CrawlResult:
        """Walk the whole portfolio and gather it into trees, with failures and stats.

        Takes the options of `walk`, and `on_progress`: called with the `Walk`
        after each page of results.
        """
        from ._crawl import gather

        async with self.walk(
            accounts=accounts,
            devices_by=devices_by,
            page_size=page_size,
            timeout=timeout,
            # The tree is kept whole anyway: room for what the workers send
            # while it is gathered, so none waits on a full buffer.
            buffer=2 * self.max_in_flight,
        ) as walk:
            return await gather(walk, accounts or [self.account], on_progress)

    def to_wire(self, model: Any) -> dict[str, Any]:
        """A model as the API's JSON (camelCase, unknown fields restored)."""
        return self._requester.to_wire(model)

    def from_wire(self, data: Any, cls: type[T]) -> T:
        """The API's JSON for one item (a JSONL record's ``data``) as a model of `cls`.

        Raises:
            DecodeError: `data` is not a valid `cls` (the message says where).
        """
        return self._requester.from_wire(data, cls)
