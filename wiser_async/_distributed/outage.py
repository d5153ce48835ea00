"""The queue's Redis going away and coming back: causes in words, and a bounded patience.

A Redis restart (a deploy, a failover, a crash with AOF) takes a few
seconds. The workers wait for it with `Patience`: every Redis call of a
worker is tried again, a little later each time, until Redis answers or the
outage has lasted ``patience`` seconds, after which `QueueUnavailable`
says for how long and why (`describe_redis_error`: "connection refused", not
only ``ConnectionError``).
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar, TypeVar

import anyio

from ..errors import WiserError

__all__ = ["Patience", "QueueUnavailable", "describe_redis_error"]

T = TypeVar("T")

logger = logging.getLogger("wiser_async.queue")

# Between two tries while Redis is away: short enough that a worker holding an
# account renews its claim well within the first third of ``claim_idle`` after
# Redis is back; long enough to cost nothing while it is away.
_FIRST_WAIT = 0.05
_LONGEST_WAIT = 0.25
# Exceptions chained below a Redis error (cause or context), looked at for a cause.
_CHAIN_DEPTH = 8


class QueueUnavailable(WiserError):
    """The queue's Redis did not answer for longer than the worker's patience.

    Attributes:
        cause: Why, in words (``connection refused``, ``timed out``, ...).
        seconds: How long the worker waited for it.
    """

    kind: ClassVar[str] = "queue"

    def __init__(self, cause: str, seconds: float) -> None:
        super().__init__(f"the queue's Redis did not answer for {seconds:.1f} s ({cause})")
        self.cause = cause
        self.seconds = seconds


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_redis_error(error: BaseException, *, timeout: float | None = None) -> str:
    """Why a Redis call failed, in words: ``connection refused``, ``timed out after 5 s``...

    Looks through the error and what it was raised from (redis-py wraps the
    socket's error); falls back on the error's own message. Never shows a
    password (redis-py's messages hold none; a URL is not part of them).

    Args:
        error: What the call raised.
        timeout: The connect timeout in force, named in a timeout's description.
    """
    from redis import exceptions

    within = f" after {timeout:g} s" if timeout is not None else ""
    for link in _chain(error):
        if isinstance(link, exceptions.AuthenticationError):
            return "authentication failed (check the user and password of the URL)"
        if isinstance(link, exceptions.BusyLoadingError):
            return "Redis is loading its data after a restart"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return f"the host name does not resolve ({link.strerror or 'unknown host'})"
        if isinstance(link, exceptions.TimeoutError | TimeoutError):
            return f"timed out{within}"
        if isinstance(link, ConnectionResetError | BrokenPipeError):
            return "the connection was reset"
        if isinstance(link, ssl.SSLError):
            return f"TLS failed ({link.reason or link.strerror or 'handshake'})"
        if isinstance(link, OSError) and link.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"unreachable ({link.strerror})"
    text = " ".join(str(error).split())
    if isinstance(error, exceptions.ConnectionError) and "closed by server" in text.lower():
        return "the connection was closed by the server"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _outage_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The errors an outage gives, and those of its kind that are not one (refused credentials)."""
    from redis import exceptions

    outage = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
    refused = (exceptions.AuthenticationError, exceptions.AuthorizationError)
    return outage, refused


class Patience:
    """Tries Redis calls again while Redis is away, for at most `seconds` per outage.

    One per worker, shared by its slots: an outage starts at the first call
    that fails and ends at the first that succeeds, whichever slot made them.

    Args:
        seconds: How long an outage is waited out (0: the first failure is final).
    """

    def __init__(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("patience must be zero or more seconds")
        self.seconds = seconds
        self._since: float | None = None
        self.recovered_at: float | None = None
        """When the last outage ended (`anyio.current_time()` clock); None before any."""
        self._outage_errors = _outage_errors()

    @property
    def waiting(self) -> bool:
        """An outage is under way (the last call failed)."""
        return self._since is not None

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``await operation()``, tried again while Redis is away; its result.

        The operation must be safe to repeat: a call whose answer was lost may
        have been carried out.

        Raises:
            QueueUnavailable: the outage has lasted `seconds`.
        """
        outage, refused = self._outage_errors
        wait = _FIRST_WAIT
        while True:
            try:
                result = await operation()
            except refused:
                raise
            except outage as exc:
                now = anyio.current_time()
                if self._since is None:
                    self._since = now
                    logger.warning(
                        "the queue's Redis is unavailable (%s); waiting up to %g s for it",
                        describe_redis_error(exc),
                        self.seconds,
                    )
                waited = now - self._since
                if waited >= self.seconds:
                    raise QueueUnavailable(describe_redis_error(exc), waited) from exc
                await anyio.sleep(min(wait, self.seconds - waited))
                wait = min(wait * 2, _LONGEST_WAIT)
                continue
            if self._since is not None:
                self.recovered_at = anyio.current_time()
                logger.warning(
                    "the queue's Redis answers again, after %.1f s",
                    self.recovered_at - self._since,
                )
                self._since = None
            return result
