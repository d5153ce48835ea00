"""What a client tells its observers: typed events for an ``on_event`` hook, and log records.

`AsyncWiserClient(..., on_event=hook)` calls ``hook(event)`` with one of the
`ClientEvent` subclasses below for every HTTP request sent (`RequestDone`),
every retry (`RequestRetried`), every 429 (`Throttled`), every token refresh
a request of the client caused (`TokenRefreshed`) and every failure a crawl
records (`FailureRecorded`). The hook is shared by every `for_account`
sibling. With no hook nothing here runs on a request's path: no event is built.

The hook is called synchronously on the event loop, in the task that made
the request: it must be quick and must not block (hand the event to a queue
or a counter). One that raises breaks nothing: the first error is logged at
ERROR by ``wiser_async.events``, later ones are ignored.

Events and log records carry no secret: methods, path templates, paths built
from ids (redacted all the same), attempt numbers, statuses, error kinds and
account keys only.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import attrs

from .errors import ApiError, AuthorizationError, WiserError

__all__ = [
    "ApiPath",
    "AttemptRecord",
    "ClientEvent",
    "Emitter",
    "EventHook",
    "ObservedCall",
    "RequestDone",
    "RequestRetried",
    "Throttled",
    "TokenRefreshed",
    "failure_reason",
    "log_retry",
    "log_throttled",
    "note_send",
    "note_token_refreshed",
    "template_of",
]

http_logger = logging.getLogger("wiser_async.http")
events_logger = logging.getLogger("wiser_async.events")


@attrs.frozen
class ClientEvent:
    """The base class of what an ``on_event`` hook receives."""


@attrs.frozen
class RequestDone(ClientEvent):
    """One HTTP request sent and answered (or failed on the wire).

    One per request sent, re-sends after a 401 included, so their number is
    ``client.stats.requests``.

    Attributes:
        method: ``"GET"``.
        path_template: The `Paths` template the path was built from
            (``"/sites/{site_id}/devices"``); the path itself when it was
            built from none.
        path: The path sent, with its query.
        status: The HTTP status; None when no answer came (a timeout, a
            dropped connection).
        attempt: The attempt of the call it belongs to, from 1 (a retry is a
            new attempt; a re-send after a 401 is part of its attempt).
        duration: Seconds from sending to the end of the answer's body.
        account: The account key whose token signed it.
        started_at: When it was sent, in seconds since the epoch (`time.time`).
    """

    method: str
    path_template: str
    path: str
    status: int | None
    attempt: int
    duration: float
    account: str
    started_at: float

    @property
    def ended_at(self) -> float:
        """When it ended, in seconds since the epoch."""
        return self.started_at + self.duration


@attrs.frozen
class RequestRetried(ClientEvent):
    """An attempt of a call failed in a way worth retrying, and the next one starts.

    One per retry, so their number is ``client.stats.retries``.

    Attributes:
        method: ``"GET"``.
        path_template: As in `RequestDone`.
        path: The path, with its query.
        status: The failed attempt's HTTP status, if an answer came.
        attempt: The number of the attempt that starts now (2 for the first retry).
        duration: Seconds since the call's first attempt started.
        account: The account key.
        reason: What failed, as a crawl failure's kind: ``server_error``,
            ``rate_limited``, ``timeout``, ``connection``...
    """

    method: str
    path_template: str
    path: str
    status: int | None
    attempt: int
    duration: float
    account: str
    reason: str


@attrs.frozen
class Throttled(ClientEvent):
    """A 429 answer: every request of the client waits `retry_after` seconds.

    One per 429, so their number is ``client.stats.throttled``.

    Attributes:
        retry_after: The pause, in seconds (the ``Retry-After``, or the
            policy's default when the answer gave none). One beyond
            ``RetryPolicy.max_retry_after`` pauses nothing: its call fails.
        path: The path answered 429.
        account: The account key.
    """

    retry_after: float
    path: str
    account: str


@attrs.frozen
class TokenRefreshed(ClientEvent):
    """A request of this client refreshed the account's token (one per token-endpoint refresh).

    Attributes:
        account: The account key.
    """

    account: str


class ApiPath(str):
    """A path that remembers its `Paths` template (made only while an ``on_event`` hook is set)."""

    template: str


def template_of(source: str | None, target: str) -> str:
    """The template `source` (the path a request's `target` was made of) was built from."""
    if isinstance(source, ApiPath):
        return source.template
    return target if source is None else source


EventHook: TypeAlias = Callable[[ClientEvent], None]


class Emitter:
    """Hands events to the hook; a hook that raises is logged once at ERROR, then ignored."""

    def __init__(self, hook: EventHook) -> None:
        self.hook = hook
        self._failed = False

    def __repr__(self) -> str:
        return f"Emitter(hook={self.hook!r})"

    def emit(self, event: ClientEvent) -> None:
        """Call the hook with `event`; never raises what the hook raises."""
        try:
            self.hook(event)
        except Exception:
            if not self._failed:
                self._failed = True
                events_logger.exception(
                    "the on_event hook raised on %s; the request goes on, and later "
                    "errors of the hook are not logged",
                    type(event).__name__,
                    extra={"event_type": type(event).__name__},
                )


class AttemptRecord:
    """The sends of one attempt, noted while it runs (in its task's context)."""

    __slots__ = ("emitter", "sends", "status")

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.sends: list[float] = []
        self.status: int | None = None


# The attempt running in this task, for the 401 re-sends and refreshes made inside it.
_current: contextvars.ContextVar[AttemptRecord | None] = contextvars.ContextVar(
    "wiser_async_attempt", default=None
)


def note_send() -> None:
    """A request of the current attempt is sent now (called by the auth flow's counter)."""
    record = _current.get()
    if record is not None:
        record.sends.append(time.perf_counter())


def note_token_refreshed(account: str) -> None:
    """The token of `account` was refreshed: tell the hook of the request that asked, if any."""
    record = _current.get()
    if record is not None:
        record.emitter.emit(TokenRefreshed(account))


def failure_reason(exc: BaseException) -> str:
    """A short, secret-free name of what failed: the error's kind (``server_error``...)."""
    return exc.kind if isinstance(exc, WiserError) else type(exc).__name__


def _status_of(exc: BaseException | None) -> int | None:
    return exc.status_code if isinstance(exc, ApiError) else None


class ObservedCall:
    """One call of the request path while a hook is set: its attempts, reported as events."""

    __slots__ = (
        "account",
        "emitter",
        "last_error",
        "last_status",
        "method",
        "path",
        "started",
        "template",
    )

    def __init__(
        self, emitter: Emitter, method: str, path: str, template: str, account: str
    ) -> None:
        self.emitter = emitter
        self.method = method
        self.path = path
        self.template = template
        self.account = account
        self.started = time.perf_counter()
        self.last_status: int | None = None
        self.last_error: BaseException | None = None

    async def attempt(self, number: int, run: Callable[[AttemptRecord], Awaitable[bytes]]) -> bytes:
        """Run attempt `number` (``run(record)``), then report each request it sent."""
        record = AttemptRecord(self.emitter)
        wall, clock = time.time(), time.perf_counter()
        context = _current.set(record)
        error: BaseException | None = None
        try:
            return await run(record)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _current.reset(context)
            ended = time.perf_counter()
            status = record.status
            if status is None:
                status = _status_of(error)
                if status is None and isinstance(error, AuthorizationError) and record.sends:
                    status = 401  # refused, and the refresh after it failed
            self.last_status, self.last_error = status, error
            sends = record.sends
            for index, sent in enumerate(sends):
                last = index == len(sends) - 1
                self.emitter.emit(
                    RequestDone(
                        method=self.method,
                        path_template=self.template,
                        path=self.path,
                        # Only a 401 leads to a re-send within an attempt.
                        status=status if last else 401,
                        attempt=number,
                        duration=(ended if last else sends[index + 1]) - sent,
                        account=self.account,
                        started_at=wall + (sent - clock),
                    )
                )

    def retried(self, number: int, reason: str) -> None:
        """Attempt `number` starts after the previous one failed for `reason`."""
        self.emitter.emit(
            RequestRetried(
                method=self.method,
                path_template=self.template,
                path=self.path,
                status=self.last_status,
                attempt=number,
                duration=time.perf_counter() - self.started,
                account=self.account,
                reason=reason,
            )
        )


def log_retry(
    method: str, path: str, template: str, attempt: int, attempts: int, reason: str, account: str
) -> None:
    """An INFO record of a retry (attempt `attempt` of `attempts` starts)."""
    http_logger.info(
        "retrying %s %s (attempt %d of %d) after %s",
        method,
        path,
        attempt,
        attempts,
        reason,
        extra={
            "http_method": method,
            "path": path,
            "path_template": template,
            "attempt": attempt,
            "reason": reason,
            "account": account,
        },
    )


def log_throttled(seconds: float, path: str, account: str, *, obeyed: bool) -> None:
    """A WARNING record of a 429: the pause of every request, or why there is none."""
    if obeyed:
        message = "429 Too Many Requests on %s: every request of the client waits %.3g s"
    else:
        message = (
            "429 Too Many Requests on %s: a Retry-After of %.3g s is not obeyed; the call fails"
        )
    http_logger.warning(
        message,
        path,
        seconds,
        extra={"retry_after": seconds, "path": path, "account": account, "obeyed": obeyed},
    )
