"""Retry policy, the client-wide retry budget, and the client-wide throttle."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import anyio
import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

    from stamina._core import _RetryContextIterator

__all__ = ["RateLimiter", "RetryBudget", "RetryPolicy", "Throttle", "retry_context"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures (5xx, 429, timeouts, dropped connections) are retried.

    Backoff is exponential with jitter (``wait_initial * 2**n + U(0, wait_jitter)``,
    capped at ``wait_max``); a 429's ``Retry-After`` replaces the backoff. A
    400, 403, 404 or undecodable body is never retried.

    Attributes:
        attempts: Attempts per request, the first included.
        timeout: Seconds a call may take in all: past them no retry starts,
            and every attempt ends by then (stamina's ``timeout``).
        wait_initial: First backoff, in seconds.
        wait_max: Largest backoff, in seconds.
        wait_jitter: Largest random addition to each backoff, in seconds.
        budget_ratio: Retries the client may make per request it sends,
            averaged over time: it keeps a failing API from being hit by a
            retry storm. 0.2 allows one retry for every five requests.
        budget_burst: Retries allowed at once before the ratio applies.
        default_retry_after: The pause after a 429 that did not say how long.
        max_retry_after: The longest ``Retry-After`` obeyed. A 429 asking for
            more fails its call at once (`RateLimited`, with ``retry_after``)
            and pauses nothing else: one endpoint asking for a year must not
            stop every account of the client.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    wait_initial: float = 0.2
    wait_max: float = 10.0
    wait_jitter: float = 0.5
    budget_ratio: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
    budget_burst: float = attrs.field(default=20.0, validator=attrs.validators.ge(0))
    default_retry_after: float = 1.0
    max_retry_after: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))


def retry_context(
    policy: RetryPolicy, *, on: Callable[[BaseException], bool | float], timeout: float
) -> _RetryContextIterator:
    """stamina's retry loop for a call that failed once, with `policy`'s backoff.

    stamina (and tenacity under it) is imported here, when a first attempt
    has failed: a process whose requests succeed never pays for it.

    Args:
        policy: Attempts and backoff.
        on: stamina's ``on``: whether (or after how long) to retry an exception.
        timeout: Seconds left for every retry together.
    """
    import stamina

    return stamina.retry_context(
        on=on,
        attempts=policy.attempts,
        timeout=timeout,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_jitter,
    )


class RetryBudget:
    """A token bucket of retries shared by every request of a client.

    Each request sent deposits `ratio` tokens, each retry withdraws one; the
    balance never exceeds `burst`. 429 answers with ``Retry-After`` do not
    draw on it: the server said when to come back.
    """

    def __init__(self, ratio: float, burst: float) -> None:
        self._ratio = ratio
        self._burst = burst
        self._balance = burst

    def on_request(self) -> None:
        """Credit one request sent."""
        self._balance = min(self._burst, self._balance + self._ratio)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False if it is exhausted."""
        if self._balance >= 1.0:
            self._balance -= 1.0
            return True
        return False


class RateLimiter(Protocol):
    """Where requests wait their turn: a `Throttle` (one process) or a `RedisRateLimiter` (all)."""

    async def wait_turn(self, give_up_at: float) -> float:
        """Wait until a request may go: 0, or the seconds it would still wait past `give_up_at`."""
        ...

    async def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (after a 429's ``Retry-After``)."""
        ...


class Throttle:
    """Client-wide pacing: an optional request rate and pauses after 429s.

    Every request of a client (all accounts, all levels of a crawl) waits
    here before it is sent. `pause` stops them all until a time, which is how
    one ``Retry-After`` slows the whole client rather than one request.
    """

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate_limit must be a positive number of requests per second")
        self._interval = 1.0 / rate if rate else 0.0
        self._next_slot = -math.inf
        self._paused_until = -math.inf

    async def pause(self, seconds: float) -> None:
        """Hold every request until `seconds` from now (never shortens a pause)."""
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    async def wait_turn(self, give_up_at: float) -> float:
        """Wait until this request may be sent.

        Args:
            give_up_at: The request's deadline (`anyio.current_time()` clock).

        Returns:
            0 once the request may go; else the seconds left of a pause that
            outlasts `give_up_at`, without waiting for it.
        """
        while True:
            now = anyio.current_time()
            if self._paused_until > now:
                if self._paused_until > give_up_at:
                    return self._paused_until - now
                await anyio.sleep(self._paused_until - now)
                continue
            if not self._interval:
                return 0.0
            # Reserve the next free slot (GCRA with a burst of one): requests go
            # out evenly spaced, never in bursts that trip the server's limiter.
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
            if slot > now:
                await anyio.sleep(slot - now)
            if self._paused_until <= anyio.current_time():
                return 0.0
            # A 429 paused the client while this request waited for its slot.
