"""One account's half of the request path: the `Requester`.

Every API call of the library goes through `Requester`: signing with the
account's token (refreshing once on 401), the in-flight bound, the rate
limit, the client-wide 429 pause, retries within a budget and a time limit,
whole-attempt timeouts, size bounds, the status-to-error map, and redaction
of whatever the server sends back. Controllers and crawls call its public
methods only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import quote

import anyio
import httpx2

from .._auth import BearerAuth
from .._config import ApiConfig, usable_id
from .._decode import RawItem
from .._observe import (
    ApiPath,
    AttemptRecord,
    ObservedCall,
    Throttled,
    failure_reason,
    log_retry,
    log_throttled,
    note_send,
    template_of,
)
from .._redact import request_secrets
from .._retry import retry_context
from .._stats import ClientStats
from .._status import error_for_response
from ..errors import (
    ConnectionFailed,
    DecodeError,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransportError,
    WiserError,
)
from ..models import Page
from .parse import OBJECTS_PER_ITEM, check_objects, parse_json
from .session import Session

__all__ = ["Requester"]

T = TypeVar("T")


class Requester:
    """One account's requests through a `Session`.

    Args:
        session: The pool, limits and codec shared with the other accounts.
        account: Whose token signs the requests.
        sinks: More counters than the session's to count this requester's
            requests in (a walk's own).
    """

    def __init__(
        self, session: Session, account: str, *, sinks: tuple[ClientStats, ...] = ()
    ) -> None:
        self.session = session
        self.account = account
        self._sinks = sinks
        self._counters = (session.stats, *sinks)
        # With a hook, each send is noted too (401 re-sends happen inside the auth flow).
        on_send = self._count_send if session.events is None else self._count_observed_send
        self._auth = BearerAuth(session.oauth, account, on_send)
        # Server text in errors, and log records made while a request runs,
        # are redacted of this account's secrets.
        self._log_context = (session.oauth.secrets, account)

    def __repr__(self) -> str:
        return f"Requester(account={self.account!r}, base_url={self.session.base_url!r})"

    @property
    def config(self) -> ApiConfig:
        """The API's configuration."""
        return self.session.config

    def for_account(self, account: str) -> Requester:
        """The requester of another account, on the same session and counters."""
        return Requester(self.session, account, sinks=self._sinks)

    def counting(self, sink: ClientStats) -> Requester:
        """This account's requester, counting in `sink` as well."""
        return Requester(self.session, self.account, sinks=(*self._sinks, sink))

    def _count_send(self) -> None:
        for counters in self._counters:
            counters.requests += 1

    def _count_observed_send(self) -> None:
        self._count_send()
        note_send()

    def _count_retry(self) -> None:
        for counters in self._counters:
            counters.retries += 1

    def _count_throttled(self) -> None:
        for counters in self._counters:
            counters.throttled += 1

    def _count_failure(self) -> None:
        for counters in self._counters:
            counters.failures += 1

    def path(self, template: str, **params: str) -> str:
        """`template` with its ``{...}`` fields filled, each id checked and URL-quoted.

        Raises:
            ValueError: an id cannot be one path segment (see `usable_id`).
        """
        for name, value in params.items():
            if not usable_id(value):
                raise ValueError(f"{name} {value!r} cannot be put in a URL path")
        path = template.format(**{name: quote(value, safe="") for name, value in params.items()})
        if self.session.events is None:
            return path
        # The hook's events name the template; without a hook nothing is kept.
        templated = ApiPath(path)
        templated.template = template
        return templated

    def redact(self, text: str) -> str:
        """`text` (server text) without a secret of this account, control characters escaped."""
        return self.session.oauth.redact(text, self.account)

    def to_wire(self, model: Any) -> dict[str, Any]:
        """A model as the API's JSON (camelCase, unknown fields restored)."""
        return self.session.codec.unstructure(model)

    def from_wire(self, data: Any, cls: type[T]) -> T:
        """The API's JSON for one item as a model of `cls` (`DecodeError` if it is not one)."""
        try:
            return self.session.codec.structure(data, cls, method="decode", path="$")
        except WiserError as exc:
            raise self._scrubbed(exc) from exc.__cause__

    def _scrubbed(self, error: WiserError) -> WiserError:
        """`error` without a secret of this account, whatever the server put in it."""
        text = str(error)
        clean = self.redact(text)
        if clean != text:
            error.args = (clean,)
            error.message = self.redact(error.message)
            if error.path is not None:
                error.path = self.redact(error.path)
        return error

    async def get_one(self, path: str, cls: type[T]) -> T:
        """GET one entity at `path` and decode it as `cls`."""
        try:
            body = await self._get_json(path, source=path)
            return self.session.codec.structure(body, cls, method="GET", path=path)
        except WiserError as exc:
            raise self._scrubbed(exc) from exc.__cause__

    async def get_page(
        self,
        path: str,
        cls: type[T],
        *,
        offset: int,
        limit: int,
        on_item_error: Callable[[DecodeError], None] | None = None,
    ) -> Page[T]:
        """GET one page of the collection at `path` and decode its items as `cls`.

        Args:
            offset: The first item's index.
            limit: Items asked for (see `page_size`).
            on_item_error: Where an undecodable item is reported (it is then
                skipped); by default it fails the whole page.
        """
        page = await self._decoded_page(False, path, cls, offset, limit, on_item_error)
        return cast("Page[T]", page)

    async def get_raw_page(
        self,
        path: str,
        cls: type,
        *,
        offset: int,
        limit: int,
        on_item_error: Callable[[DecodeError], None] | None = None,
    ) -> Page[RawItem]:
        """One page like `get_page`, only the ids of its items read (see `Codec.raw_page`)."""
        page = await self._decoded_page(True, path, cls, offset, limit, on_item_error)
        return cast("Page[RawItem]", page)

    async def _decoded_page(
        self,
        raw: bool,
        path: str,
        cls: type,
        offset: int,
        limit: int,
        on_item_error: Callable[[DecodeError], None] | None,
    ) -> Page[Any]:
        pages = self.session.config.pages
        offset_param, limit_param = self.session.page_params
        target = f"{path}?{offset_param}={offset:d}&{limit_param}={limit:d}"
        codec = self.session.codec
        try:
            content = await self._send("GET", target, path)
            check_objects(content, (limit + 1) * OBJECTS_PER_ITEM, "GET", target)
            decode = codec.raw_page if raw else codec.structure_page
            if not raw:
                # msgspec reads the body straight into models where it can.
                page: Page[Any] | None = codec.native_page(
                    content,
                    cls,
                    offset=offset,
                    limit=limit,
                    keys=pages,
                    method="GET",
                    path=target,
                )
                if page is not None:
                    return page
            return decode(
                parse_json(content, "GET", target),
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

    def page_size(self, size: int | None) -> int:
        """The page size to ask for: `size`, checked, or the configured default when None."""
        pages = self.session.config.pages
        if size is None:
            return pages.max_page_size if pages.page_size is None else pages.page_size
        if not 1 <= size <= pages.max_page_size:
            raise ValueError(f"page_size must be between 1 and {pages.max_page_size}, not {size}")
        return size

    async def _get_json(
        self, target: str, *, objects: int | None = None, source: str | None = None
    ) -> Any:
        """GET `target` (a path under the base URL, with its query) and decode its JSON.

        Args:
            objects: The most JSON objects the body may hold (see `parse_json`).
            source: The path `target` was made of (an `ApiPath` knows its template).
        """
        content = await self._send("GET", target, source)
        return parse_json(content, "GET", target, objects=objects)

    async def _send(self, method: str, target: str, source: str | None = None) -> bytes:
        session = self.session
        policy = session.retry
        started = anyio.current_time()
        attempt_number = 0
        give_up_at = started + policy.timeout
        # With no hook set, this check is all that observing costs a request.
        events = session.events
        call = (
            None
            if events is None
            else ObservedCall(
                events, method, self.redact(target), template_of(source, target), self.account
            )
        )
        failure: Exception | None = None

        def retry_on(exc: BaseException) -> bool | float:
            # stamina passes only Exceptions (it catches no wider); its type says BaseException.
            nonlocal failure
            if not isinstance(exc, Exception):
                return False
            failure = exc
            if attempt_number >= policy.attempts:
                return False
            if isinstance(exc, RateLimited):
                wait = policy.default_retry_after if exc.retry_after is None else exc.retry_after
                if wait > policy.max_retry_after:
                    return False
                if anyio.current_time() - started + wait > policy.timeout:
                    return False
                # The client-wide pause set on receipt does the waiting.
                return 0.0
            return isinstance(exc, ServerError | TransportError) and session.budget.try_spend()

        # Retry machinery costs tens of microseconds per call, so the first
        # attempt runs without it; a failure is replayed into stamina, which
        # then decides, backs off and retries.
        try:
            if call is None:
                return await self._attempt(method, target, give_up_at)
            return await call.attempt(1, partial(self._attempt, method, target, give_up_at))
        except (ServerError, TransportError, RateLimited) as exc:
            first_failure: Exception = exc
        except Exception:
            self._count_failure()
            raise
        remaining = policy.timeout - (anyio.current_time() - started)
        if remaining <= 0:
            # The deadline has passed already: no retry may start.
            self._count_failure()
            raise first_failure
        try:
            async for attempt in retry_context(policy, on=retry_on, timeout=remaining):
                with attempt:
                    attempt_number = attempt.num
                    if attempt_number == 1:
                        raise first_failure  # noqa: TRY301 - replayed for stamina to decide
                    self._count_retry()
                    reason = failure_reason(failure or first_failure)
                    template = call.template if call else template_of(source, target)
                    shown = self.redact(target), self.redact(template)
                    log_retry(method, *shown, attempt_number, policy.attempts, reason, self.account)
                    if call is None:
                        return await self._attempt(method, target, give_up_at)
                    call.retried(attempt_number, reason)
                    attempt_with = partial(self._attempt, method, target, give_up_at)
                    return await call.attempt(attempt_number, attempt_with)
        except Exception:
            self._count_failure()
            raise
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _attempt(
        self, method: str, target: str, give_up_at: float, record: AttemptRecord | None = None
    ) -> bytes:
        session = self.session
        paused = await session.take_turn(give_up_at)
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
        # The whole attempt, headers and every byte of the body, ends by its
        # bound and by the call's deadline.
        now = anyio.current_time()
        bound = give_up_at - now
        if session.attempt_timeout is not None and session.attempt_timeout < bound:
            bound = session.attempt_timeout
        try:
            try:
                context = request_secrets.set(self._log_context)
                try:
                    with anyio.CancelScope(deadline=now + max(bound, 0.0)) as scope:
                        status, headers, content = await session.exchange(
                            method, target, self._auth, record
                        )
                finally:
                    request_secrets.reset(context)
                if scope.cancelled_caught:
                    raise TimeoutError  # noqa: TRY301 - the deadline: mapped just below
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
            session.limiter.release()
        if status < 300:
            if session.waiting:
                # The task that took the freed slot sends before this body is
                # parsed and decoded: when a wave of answers comes in at once,
                # the next requests go out first, not after every decode.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            return content
        error = error_for_response(
            status,
            headers,
            content,
            method=method,
            path=target,
            redact=self.redact,
            account=self.account,
        )
        if isinstance(error, RateLimited):
            self._count_throttled()
            wait = (
                session.retry.default_retry_after
                if error.retry_after is None
                else error.retry_after
            )
            obeyed = wait <= session.retry.max_retry_after
            shown = self.redact(target)
            log_throttled(wait, shown, self.account, obeyed=obeyed)
            if session.events is not None:
                session.events.emit(Throttled(retry_after=wait, path=shown, account=self.account))
            if obeyed:
                await session.throttle.pause(wait)
            # A longer wait fails this call at once (retry_on sees it) and pauses nothing:
            # one endpoint's Retry-After of a year must not stop every account.
        raise error
