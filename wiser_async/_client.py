"""`AsyncWiserClient`: typed access to the API through one private request path."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import anyio
import attrs
import httpx2
import stamina

from ._auth import BearerAuth
from ._config import ApiConfig, usable_id
from ._convert import Codec
from ._crawl import CrawlResult, DevicesBy, Walk, _Batch, _TreeBuilder, open_walk
from ._oauth import WiserOAuth
from ._redact import request_secrets
from ._resources import Devices, Locations, Rooms, Sites
from ._retry import RetryBudget, RetryPolicy, Throttle
from ._status import error_for_response
from .errors import (
    AuthorizationRequired,
    ConnectionFailed,
    DecodeError,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransportError,
    WiserError,
)
from .models import Page

__all__ = ["UNSET", "AsyncWiserClient", "ClientStats"]

T = TypeVar("T")


class _Unset(enum.Enum):
    UNSET = "UNSET"


UNSET: Final = _Unset.UNSET
"""Marks an option left unset, where None already means something (no timeout)."""

DEFAULT_TIMEOUT = 30.0
_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# JSON objects a page's body may hold per item asked for, before it is parsed:
# a device is one object (two with an address); the rest is room for unknown fields.
OBJECTS_PER_ITEM = 64
_BYTES_PER_OBJECT = 1024 // OBJECTS_PER_ITEM


@attrs.define
class ClientStats:
    """Counters of one client and every client sharing its connection pool.

    Attributes:
        requests: HTTP requests sent (retries and 401 re-sends included).
        retries: Requests repeated after a transient failure or a 429.
        throttled: 429 answers received.
        failures: Calls that ended in an error, after retries.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0


class _Session:
    """What clients of several accounts share: pool, limits, throttle, budget, stats."""

    def __init__(
        self,
        *,
        oauth: WiserOAuth,
        config: ApiConfig,
        http_client: httpx2.AsyncClient | None,
        transport: httpx2.AsyncBaseTransport | None,
        timeout: httpx2.Timeout | float | _Unset | None,
        max_in_flight: int,
        rate_limit: float | None,
        retry: RetryPolicy,
        max_response_bytes: int,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.oauth = oauth
        self.config = config
        self.codec = Codec(config.aliases)
        # Quoted once: every page request puts them in its query.
        self.page_params = (
            quote(config.pages.offset_param, safe=""),
            quote(config.pages.limit_param, safe=""),
        )
        self.base_url = config.base_url.rstrip("/")
        # Named in transport errors, so a failure says which server it tried.
        self.host = httpx2.URL(self.base_url).netloc.decode("ascii", "replace") or self.base_url
        self.owns_http = http_client is None
        if http_client is not None and transport is not None:
            raise TypeError("give http_client= or transport=, not both")
        keep_borrowed_phases = http_client is not None and timeout is UNSET
        if timeout is UNSET:
            timeout = DEFAULT_TIMEOUT
        # A number bounds each attempt as a whole (connect, headers and every
        # byte of the body: a server trickling a byte at a time cannot hold a
        # call); an httpx2.Timeout sets httpx2's per-phase limits only.
        self.attempt_timeout = float(timeout) if isinstance(timeout, int | float) else None
        if isinstance(timeout, int | float):
            timeout = httpx2.Timeout(timeout, connect=min(_CONNECT_TIMEOUT, timeout))
        if http_client is None:
            self.http = httpx2.AsyncClient(
                timeout=timeout,
                limits=httpx2.Limits(
                    max_connections=max_in_flight, max_keepalive_connections=max_in_flight
                ),
                transport=transport,
            )
            self.request_options: dict[str, Any] = {}
        else:
            self.http = http_client
            self.request_options = {} if keep_borrowed_phases else {"timeout": timeout}
        self.max_in_flight = max_in_flight
        self.limiter = anyio.CapacityLimiter(max_in_flight)
        self.throttle = Throttle(rate_limit)
        self.retry = retry
        self.budget = RetryBudget(retry.budget_ratio, retry.budget_burst)
        self.max_response_bytes = max_response_bytes
        self.stats = ClientStats()


class AsyncWiserClient:
    """Typed async access to the Wiser Energy Monitoring Cloud API for one account.

    Resources hang off the client: ``client.locations``, ``client.sites``,
    ``client.rooms``, ``client.devices``. Every call goes through one request
    path that signs with the account's token (refreshing once on 401),
    bounds in-flight requests, paces to an optional rate, pauses the whole
    client after a 429, retries transient failures within a budget and a
    deadline, and maps errors to `wiser_async.errors`.

    Use as an async context manager (or call `aclose`): it closes the HTTP
    client if it created it, never one it borrowed.

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
            them end by ``retry.deadline``. An `httpx2.Timeout` sets httpx2's
            per-phase limits instead (each read, each write...), and only the
            deadline bounds the whole; None: no limit but the deadline. Unset:
            30 s (a borrowed client keeps its own phase limits).
        max_in_flight: Requests in flight at once, across every account and
            task sharing this client.
        rate_limit: Requests per second across the client, or None.
        retry: Retry policy for transient failures.
        max_response_bytes: Larger bodies are refused with `DecodeError`.
    """

    def __init__(
        self,
        oauth: WiserOAuth,
        account: str,
        *,
        config: ApiConfig | None = None,
        http_client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: httpx2.Timeout | float | _Unset | None = UNSET,
        max_in_flight: int = 16,
        rate_limit: float | None = None,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        session = _Session(
            oauth=oauth,
            config=config or ApiConfig(),
            http_client=http_client,
            transport=transport,
            timeout=timeout,
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
            retry=retry or RetryPolicy(),
            max_response_bytes=max_response_bytes,
        )
        self._setup(session, account, owns_http=session.owns_http)

    def _setup(self, session: _Session, account: str, *, owns_http: bool) -> None:
        self._session = session
        # Only the client that created the HTTP client closes it, never a sibling.
        self._owns_http = owns_http
        self.account = account
        self._auth = BearerAuth(session.oauth, account, session.stats)
        # Server text in errors and in log records made while a request runs
        # is redacted of this account's secrets.
        self._log_context = (session.oauth.secrets, account)
        self.locations = Locations(self)
        self.sites = Sites(self)
        self.rooms = Rooms(self)
        self.devices = Devices(self)

    def for_account(self, account: str) -> AsyncWiserClient:
        """A client for another account sharing this one's pool, limits and stats.

        Closing it leaves the shared pool open: the client it came from owns it.
        """
        other = object.__new__(AsyncWiserClient)
        other._setup(self._session, account, owns_http=False)
        return other

    def __repr__(self) -> str:
        return f"AsyncWiserClient(account={self.account!r}, base_url={self._session.base_url!r})"

    @property
    def config(self) -> ApiConfig:
        """The API configuration in use."""
        return self._session.config

    @property
    def oauth(self) -> WiserOAuth:
        """The token provider."""
        return self._session.oauth

    @property
    def stats(self) -> ClientStats:
        """Request counters, shared with every `for_account` sibling."""
        return self._session.stats

    @property
    def max_in_flight(self) -> int:
        """The client-wide bound on requests in flight."""
        return self._session.max_in_flight

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
        if self._owns_http:
            await self._session.http.aclose()

    # -- crawls -------------------------------------------------------------------

    @asynccontextmanager
    async def walk(
        self,
        *,
        accounts: Sequence[str] | None = None,
        devices_by: DevicesBy = "site",
        page_size: int | None = None,
        deadline: float | None = None,
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

        Args:
            accounts: Account keys to walk (default: this client's account),
                sharing this client's pool and in-flight limit, fairly.
            devices_by: ``"site"``: one device listing per site, devices
                grouped into rooms by their ``roomId``; ``"room"``: one listing
                per room, plus the site's listing for devices in no room.
            page_size: Items per page (default: the API's maximum).
            deadline: Seconds; what is not read by then is reported as a
                failure of kind ``deadline``.
            buffer: Pages of results held for a slow consumer.
        """
        async with open_walk(
            self,
            accounts=accounts,
            devices_by=devices_by,
            page_size=page_size,
            deadline=deadline,
            buffer=buffer,
        ) as walk:
            yield walk

    async def crawl(
        self,
        *,
        accounts: Sequence[str] | None = None,
        devices_by: DevicesBy = "site",
        page_size: int | None = None,
        deadline: float | None = None,
        on_progress: Callable[[Walk], None] | None = None,
    ) -> CrawlResult:
        """Walk the whole portfolio and gather it into trees, with failures and stats.

        Takes the options of `walk`, and `on_progress`: called with the `Walk`
        after each page of results.
        """
        builder = _TreeBuilder()
        async with self.walk(
            accounts=accounts, devices_by=devices_by, page_size=page_size, deadline=deadline
        ) as walk:
            async for event in walk.events():
                if isinstance(event, _Batch):
                    builder.add(event)
                    if on_progress is not None:
                        on_progress(walk)
        return builder.result(accounts or [self.account], walk.failures, walk.stats)

    def to_wire(self, model: Any) -> dict[str, Any]:
        """A model as the API's JSON (camelCase, unknown fields restored)."""
        return self._session.codec.unstructure(model)

    # -- the request path --------------------------------------------------------

    def _path(self, template: str, **params: str) -> str:
        for name, value in params.items():
            if not usable_id(value):
                raise ValueError(f"{name} {value!r} cannot be put in a URL path")
        return template.format(**{name: quote(value, safe="") for name, value in params.items()})

    def _redact(self, text: str) -> str:
        return self._session.oauth.redact(text, self.account)

    def _scrubbed(self, error: WiserError) -> WiserError:
        """`error` without a secret of this account, whatever the server put in it."""
        text = str(error)
        clean = self._redact(text)
        if clean != text:
            error.args = (clean,)
            error.message = self._redact(error.message)
            if error.path is not None:
                error.path = self._redact(error.path)
        return error

    async def _get_one(self, path: str, cls: type[T]) -> T:
        try:
            body = await self._get_json(path)
            return self._session.codec.structure(body, cls, method="GET", path=path)
        except WiserError as exc:
            raise self._scrubbed(exc) from exc.__cause__

    async def _get_page(
        self,
        path: str,
        cls: type[T],
        *,
        offset: int,
        limit: int,
        on_item_error: Callable[[DecodeError], None] | None = None,
    ) -> Page[T]:
        pages = self._session.config.pages
        offset_param, limit_param = self._session.page_params
        target = f"{path}?{offset_param}={offset:d}&{limit_param}={limit:d}"
        try:
            body = await self._get_json(target, objects=(limit + 1) * OBJECTS_PER_ITEM)
            return self._session.codec.structure_page(
                body,
                cls,
                offset=offset,
                limit=limit,
                keys=pages,
                method="GET",
                path=target,
                on_item_error=on_item_error,
            )
        except WiserError as exc:
            raise self._scrubbed(exc) from exc.__cause__

    def _page_size(self, size: int | None) -> int:
        pages = self._session.config.pages
        if size is None:
            return pages.page_size
        if not 1 <= size <= pages.max_page_size:
            raise ValueError(f"page_size must be between 1 and {pages.max_page_size}, not {size}")
        return size

    async def _iter_pages(
        self, path: str, cls: type[T], page_size: int | None
    ) -> AsyncIterator[Page[T]]:
        limit = self._page_size(page_size)
        offset = 0
        while True:
            page = await self._get_page(path, cls, offset=offset, limit=limit)
            yield page
            if page.is_last:
                return
            offset += page.size

    async def _get_json(self, target: str, *, objects: int | None = None) -> Any:
        """GET `target` (a path under the base URL, with its query) and decode its JSON.

        Args:
            objects: The most JSON objects the body may hold, counted (as
                ``{``) before it is parsed: a page of 1.4 million empty objects
                in 4 MiB would cost a hundred megabytes once decoded.
        """
        content = await self._send("GET", target)
        # Counted only in a body larger than such a page usually is (1 KiB an
        # item): a typical page costs no scan.
        if (
            objects is not None
            and len(content) > objects * _BYTES_PER_OBJECT
            and (count := content.count(b"{")) > objects
        ):
            raise DecodeError(
                f"the body holds {count} JSON objects, beyond what a page of the "
                f"size asked holds ({objects})",
                method="GET",
                path=target,
            )
        try:
            return json.loads(content)
        except UnicodeDecodeError:
            raise DecodeError("the body is not UTF-8 text", method="GET", path=target) from None
        except json.JSONDecodeError as exc:
            raise DecodeError(
                f"the body is not valid JSON ({exc.msg} at byte {exc.pos} of {len(content)})",
                method="GET",
                path=target,
            ) from None
        except RecursionError:
            raise DecodeError(
                "the body nests arrays or objects deeper than can be read",
                method="GET",
                path=target,
            ) from None

    async def _send(self, method: str, target: str) -> bytes:
        session = self._session
        policy = session.retry
        started = anyio.current_time()
        attempt_number = 0

        def retry_on(exc: Exception) -> bool | float:
            if attempt_number >= policy.attempts:
                return False
            if isinstance(exc, RateLimited):
                wait = policy.default_retry_after if exc.retry_after is None else exc.retry_after
                if wait > policy.max_retry_after:
                    return False
                if anyio.current_time() - started + wait > policy.deadline:
                    return False
                # The client-wide pause set on receipt does the waiting.
                return 0.0
            return isinstance(exc, ServerError | TransportError) and session.budget.try_spend()

        # Retry machinery costs tens of microseconds per call, so the first
        # attempt runs without it; a failure is replayed into stamina, which
        # then decides, backs off and retries.
        try:
            return await self._attempt(method, target, started + policy.deadline)
        except (ServerError, TransportError, RateLimited) as exc:
            first_failure: Exception = exc
        except Exception:
            session.stats.failures += 1
            raise
        remaining = policy.deadline - (anyio.current_time() - started)
        if remaining <= 0:
            # The deadline has passed already: no retry may start.
            session.stats.failures += 1
            raise first_failure
        try:
            async for attempt in stamina.retry_context(
                on=retry_on,
                attempts=policy.attempts,
                timeout=remaining,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    attempt_number = attempt.num
                    if attempt_number == 1:
                        raise first_failure  # noqa: TRY301 - replayed for stamina to decide
                    session.stats.retries += 1
                    return await self._attempt(method, target, started + policy.deadline)
        except Exception:
            session.stats.failures += 1
            raise
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _attempt(self, method: str, target: str, give_up_at: float) -> bytes:
        session = self._session
        paused = await session.throttle.wait_turn(give_up_at)
        if paused:
            # A 429 asked the whole client to wait longer than this call may.
            raise RateLimited(
                f"the client is paused {paused:.1f} s more by a 429's Retry-After, "
                "beyond this call's deadline",
                retry_after=paused,
                status_code=429,
                method=method,
                path=target,
            )
        session.budget.on_request()
        limiter = session.limiter
        # A free slot is taken without a trip through the event loop: every
        # yield here leaves pooled connections idle, which httpx2 pays for.
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            await limiter.acquire()
        # The whole attempt, headers and every byte of the body, ends by its
        # bound and by the call's deadline.
        bound = give_up_at - anyio.current_time()
        if session.attempt_timeout is not None and session.attempt_timeout < bound:
            bound = session.attempt_timeout
        try:
            try:
                # The target carries its query already encoded: one URL parse.
                request = session.http.build_request(
                    method, session.base_url + target, **session.request_options
                )
                context = request_secrets.set(self._log_context)
                try:
                    with anyio.fail_after(max(bound, 0.0)):
                        response = await session.http.send(request, auth=self._auth, stream=True)
                        try:
                            content = await self._read_body(response, method, target)
                        finally:
                            await response.aclose()
                finally:
                    request_secrets.reset(context)
            except TimeoutError:
                raise RequestTimeout(
                    f"no complete answer from {session.host} within {bound:.3g} s",
                    method=method,
                    path=target,
                ) from None
            except httpx2.TimeoutException as exc:
                raise RequestTimeout(
                    f"no answer from {session.host} in time ({type(exc).__name__})",
                    method=method,
                    path=target,
                ) from exc
            except httpx2.DecodingError as exc:
                raise DecodeError(
                    f"the body could not be decompressed ({type(exc).__name__})",
                    method=method,
                    path=target,
                ) from exc
            except httpx2.TransportError as exc:
                raise ConnectionFailed(
                    f"the connection to {session.host} failed or dropped ({type(exc).__name__})",
                    method=method,
                    path=target,
                ) from exc
        finally:
            limiter.release()
        status = response.status_code
        if status < 300:
            return content
        if status == 401:
            raise AuthorizationRequired(
                self.account,
                "the API refused the token after a refresh",
                method=method,
                path=target,
            )
        error = error_for_response(
            status, response.headers, content, method=method, path=target, redact=self._redact
        )
        if isinstance(error, RateLimited):
            session.stats.throttled += 1
            wait = (
                session.retry.default_retry_after
                if error.retry_after is None
                else error.retry_after
            )
            if wait <= session.retry.max_retry_after:
                session.throttle.pause(wait)
            # A longer wait fails this call at once (retry_on sees it) and pauses nothing:
            # one endpoint's Retry-After of a year must not stop every account.
        raise error

    async def _read_body(self, response: httpx2.Response, method: str, shown: str) -> bytes:
        limit = self._session.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise DecodeError(
                f"the body of {declared} bytes exceeds the {limit}-byte limit",
                method=method,
                path=shown,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise DecodeError(
                    f"the body exceeds the {limit}-byte limit", method=method, path=shown
                )
            chunks.append(chunk)
        return b"".join(chunks)
