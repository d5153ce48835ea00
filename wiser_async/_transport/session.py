"""The shared half of the request path: a `Session` of pool, limits, throttle, budget, codec, stats.

One per `AsyncWiserClient` and its `for_account` siblings; each account's
`Requester` sends through it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote

import anyio
import httpx2

from .._config import ApiConfig
from .._retry import RateLimiter, RetryBudget, RetryPolicy, Throttle
from .._stats import ClientStats
from .body import read_body
from .direct import proxies_configured, send_direct

if TYPE_CHECKING:
    from .._oauth import WiserOAuth
    from .._observe import AttemptRecord, Emitter, EventHook
    from .aiohttp import NativeSender

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "UNSET",
    "Session",
    "Unset",
]


class Unset(enum.Enum):
    """The type of `UNSET`."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET
"""Marks an option left unset, where None already means something (no timeout)."""

DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class Session:
    """What the clients of several accounts share: pool, limits, throttle, budget, codec, stats.

    One per `AsyncWiserClient` and its `for_account` siblings; the client
    that created it closes it.
    """

    def __init__(
        self,
        *,
        oauth: WiserOAuth,
        config: ApiConfig,
        http_client: httpx2.AsyncClient | None,
        transport: httpx2.AsyncBaseTransport | None,
        timeout: httpx2.Timeout | float | Unset | None,
        max_in_flight: int,
        rate_limit: float | RateLimiter | None,
        retry: RetryPolicy,
        max_response_bytes: int,
        on_event: EventHook | None = None,
    ) -> None:
        # Imported by the first session, not by the package's import.
        from .._decode import Codec
        from .._token_endpoint import default_ssl_context

        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.oauth = oauth
        self.config = config
        self.codec = Codec.shared(config.aliases)
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
            timeout = httpx2.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        # Where requests go without httpx2.AsyncClient.send's layers (see `send_direct`).
        self.direct: httpx2.AsyncBaseTransport | None = None
        # AiohttpTransport's own path: no httpx2 client, Request or Response at all.
        self.native: NativeSender | None = None
        native_sender = getattr(transport, "native_sender", None)
        if http_client is None and native_sender is not None:
            phases = httpx2.Timeout(timeout)
            self.native = native_sender(connect=phases.connect, read=phases.read, pool=phases.pool)
        elif http_client is None:
            limits = httpx2.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            )
            if transport is None and not proxies_configured():
                # What httpx2.AsyncClient builds by default when no proxy is mounted.
                transport = httpx2.AsyncHTTPTransport(verify=default_ssl_context(), limits=limits)
            # A transport given explicitly is used for every URL: httpx2 mounts no proxy then.
            self.direct = transport
            self.http = httpx2.AsyncClient(
                timeout=timeout,
                limits=limits,
                transport=transport,
                verify=default_ssl_context(),
                # A bearer-token API needs no cookies: none kept or sent, whichever path.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
            self.request_options: dict[str, Any] = {}
            self._timeouts = self.http.timeout.as_dict()
        else:
            self.http = http_client
            self.request_options = {} if keep_borrowed_phases else {"timeout": timeout}
        self.exchange: Callable[
            [str, str, httpx2.Auth, AttemptRecord | None],
            Awaitable[tuple[int, Mapping[str, str], bytes]],
        ] = self._exchange_httpx2 if self.native is None else self._exchange_native
        """`target` (under the base URL) requested, signed by `auth`: status, headers, body.

        The body is read within ``max_response_bytes`` (`DecodeError` past
        it, declared or decoded). Failures are httpx2's exceptions on either
        path: the `Requester` maps them to the library's errors. The attempt's
        record (if any) is given the status as soon as the headers are in.
        """
        self.max_in_flight = max_in_flight
        self.limiter = anyio.CapacityLimiter(max_in_flight)
        # Tasks waiting for a slot of `limiter` (a count is cheaper than its statistics).
        self.waiting = 0
        # A number paces this process; a shared limiter (RedisRateLimiter) every process.
        self.throttle: RateLimiter = (
            Throttle(rate_limit)
            if rate_limit is None or isinstance(rate_limit, int | float)
            else rate_limit
        )
        self.retry = retry
        self.budget = RetryBudget(retry.budget_ratio, retry.budget_burst)
        self.max_response_bytes = max_response_bytes
        self.stats = ClientStats()
        # None when no hook is set: the request path then builds no event.
        self.events: Emitter | None = None
        if on_event is not None:
            from .._observe import Emitter

            self.events = Emitter(on_event)

    async def take_slot(self) -> None:
        """One of the `max_in_flight` request slots (give it back with ``limiter.release()``).

        A free slot is taken without a trip through the event loop: every
        yield here leaves pooled connections idle, which httpx2 pays for.
        """
        try:
            self.limiter.acquire_nowait()
        except anyio.WouldBlock:
            self.waiting += 1
            try:
                await self.limiter.acquire()
            finally:
                self.waiting -= 1

    async def take_turn(self, give_up_at: float) -> float:
        """A request slot, then the rate limiter's go, as the last wait before a send.

        In that order, the limiter's answer (the 429 pause checked after any
        wait of its own) is the last word before the send: the other way
        round, a request cleared by the limiter that then waited for a slot
        went as soon as one was freed, even by the 429 that paused the client.

        Args:
            give_up_at: The request's time limit (`anyio.current_time()` clock).

        Returns:
            0 with the slot held (give it back with ``limiter.release()``);
            else the seconds of a pause beyond `give_up_at`, no slot held.
        """
        await self.take_slot()
        try:
            paused = await self.throttle.wait_turn(give_up_at)
        except BaseException:
            self.limiter.release()
            raise
        if paused:
            self.limiter.release()
        return paused

    def build_request(self, method: str, url: str) -> httpx2.Request:
        """A request to `url` (absolute, query encoded) with the client's headers and timeout."""
        if self.direct is None:
            return self.http.build_request(method, url, **self.request_options)
        # The client's headers and timeout, without merging cookies or params.
        return httpx2.Request(
            method, url, headers=self.http.headers, extensions={"timeout": self._timeouts}
        )

    async def send(self, request: httpx2.Request, auth: httpx2.Auth) -> httpx2.Response:
        """Send `request`, signed by `auth`; the response's body is left to stream.

        A redirect is never followed, whatever a borrowed client's
        ``follow_redirects``: the 3xx comes back as it is (the `Requester`
        raises `UnexpectedRedirect`), and nothing goes where it points.
        """
        if self.direct is None:
            # Explicit: httpx2's send falls back to the client's own default,
            # and a borrowed client may have been made with follow_redirects=True.
            return await self.http.send(request, auth=auth, stream=True, follow_redirects=False)
        # The transport itself follows nothing (AiohttpTransport: allow_redirects=False).
        return await send_direct(self.direct, request, auth)

    async def _exchange_httpx2(
        self, method: str, target: str, auth: httpx2.Auth, record: AttemptRecord | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        # `exchange` through httpx2 (its client, or its transport itself).
        response = await self.send(self.build_request(method, self.base_url + target), auth)
        if record is not None:
            record.status = response.status_code
        try:
            content = await read_body(response, self.max_response_bytes, method, target)
        finally:
            await response.aclose()
        return response.status_code, response.headers, content

    async def _exchange_native(
        self, method: str, target: str, auth: httpx2.Auth, record: AttemptRecord | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        # `exchange` through AiohttpTransport's own path (see `NativeSender`).
        native = cast("NativeSender", self.native)
        response = await native.send(method, self.base_url + target, auth)
        if record is not None:
            record.status = response.status
        try:
            content = await native.read(response, self.max_response_bytes, method, target)
        finally:
            # Synchronous: it holds in a cancelled scope. A body not read to its end
            # closes its connection.
            response.release()
        return response.status, response.headers, content

    async def aclose(self) -> None:
        """Close the HTTP client (or transport) if the session created it, never a borrowed one."""
        if self.native is not None:
            await self.native.transport.aclose()
        elif self.owns_http:
            await self.http.aclose()
