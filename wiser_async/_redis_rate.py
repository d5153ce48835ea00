"""`RedisRateLimiter`: one request rate and one 429 pause for every process sharing a key.

The rate is GCRA (the generic cell rate algorithm, as in ATM networks and
redis-cell), kept in Redis by one server-side script: it reads the server's
clock, checks the shared pause, reserves the next free slots and says how
long to wait for each. Every process and machine using the same key draws
slots from one schedule, so N workers send at the configured rate together,
not N times it. A 429's ``Retry-After`` is written under the same key and
read by the same script: one worker's pause holds them all, including the
requests that had reserved a slot before it was set (see `RedisRateLimiter`).

redis-py is asyncio-only, so this limiter is too.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Self

import anyio

from ._extras import extra_missing
from ._retry import Throttle
from .errors import RateLimiterUnavailable

if TYPE_CHECKING:
    from types import TracebackType

    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisRateLimiter"]

# KEYS[1]: the theoretical arrival time (microseconds, the server's clock);
# KEYS[2]: the end of a shared pause. ARGV[1], ARGV[2]: interval, tolerance;
# ARGV[3...]: for each slot wanted, the longest wait its request accepts (all
# microseconds); none wanted: the pause is checked, nothing reserved. Returns
# {1, left}: paused `left` more, nothing reserved; else {0, wait...}, one per
# slot wanted, in order: wait >= 0, a slot reserved `wait` from now; wait < 0,
# nothing reserved: the next slot is -wait away, further than that request
# may wait.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
    return {1, math.ceil(paused - now)}
end
local answer = {0}
if #ARGV < 3 then
    return answer
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local reserved = false
for i = 3, #ARGV do
    local wait = tat - tolerance - now
    if wait < 0 then
        wait = 0
    end
    if wait > tonumber(ARGV[i]) then
        answer[#answer + 1] = -math.ceil(wait)
    else
        answer[#answer + 1] = math.ceil(wait)
        tat = tat + interval
        reserved = true
    end
end
if reserved then
    redis.call('SET', KEYS[1], string.format('%.0f', tat),
               'PX', math.ceil((tat - now) / 1000) + 1000)
end
return answer
"""
# KEYS[1]: the end of the shared pause; ARGV[1]: its length (microseconds).
# Never shortens a pause another worker set.
_PAUSE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local ends = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ends > current then
    redis.call('SET', KEYS[1], string.format('%.0f', ends),
               'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 1
"""
_MICROS = 1_000_000

# What a request learns from a call to Redis (`_Ticket.answer`): a kind and a number.
_GO: Final = 0  # it may go now (its slot is due, and no pause is set)
_AT: Final = 1  # a slot reserved at the number (anyio clock): wait, then check the pause
_PAUSED: Final = 2  # paused the number of seconds more: nothing reserved
_TOO_FAR: Final = 3  # the next slot is the number of seconds away, beyond its limit
_ON_YOUR_OWN: Final = 4  # the call meant to serve it failed or was cancelled: it calls itself


class _Ticket:
    """One request's business with Redis: a slot to reserve, or its reserved slot to confirm."""

    __slots__ = ("answer", "answered", "give_up_at", "reserve", "since", "withdrawn")

    def __init__(self, give_up_at: float, *, reserve: bool) -> None:
        self.give_up_at = give_up_at
        self.reserve = reserve
        self.since = anyio.current_time()
        # Until a call answers it: nobody's call has served it.
        self.answer: tuple[int, float] = (_ON_YOUR_OWN, 0.0)
        # Set when another request's call answers it (made only if it waits for one).
        self.answered: anyio.Event | None = None
        self.withdrawn = False


class RedisRateLimiter:
    """A request rate, and 429 pauses, shared by every client using `key` on one Redis.

    Give it to ``AsyncWiserClient(rate_limit=...)`` in every worker, instead
    of a number (which limits one process only).

    A request whose slot is not due at once waits for it, then checks the
    shared pause again before it goes, as the in-process throttle does: a
    pause any worker sets holds the requests that had reserved a slot
    before it, and nothing is sent inside it. Each call to Redis (a script,
    ``EVALSHA``) both checks the pause for the request whose slot has come
    and reserves the slots of the requests of its process that came in
    meanwhile: a request does not call for itself while a call of its
    process is under way or due (at a reserved slot) before its time limit.
    So a worker with requests waiting pays about one round trip per request,
    plus one per wave of requests; a request that waits alone (nothing else
    of its process waiting) pays two.

    Args:
        redis_or_url: A ``redis://`` URL (the limiter opens and closes its
            client), or a redis-py asyncio client (``Redis``, ``RedisCluster``,
            from Sentinel, with TLS): borrowed, never closed here.
        key: Names the shared limit: every worker with the same key on the
            same Redis shares one rate. The Redis keys are ``{key}:tat`` and
            ``{key}:pause`` (one cluster slot).
        rate: Requests per second, for all workers together.
        burst: Requests that may go at once after a quiet spell (default 1:
            evenly spaced, never a burst that trips the server's limiter).
        patience: Seconds a request keeps retrying while Redis does not
            answer, before it fails with `RateLimiterUnavailable` (never beyond
            the call's own time limit).

    A Redis outage fails the requests made meanwhile with
    `RateLimiterUnavailable` rather than falling back to a per-process rate:
    N workers each at the whole rate would send N times what the server
    allows, which is what the limiter is for.
    """

    def __init__(
        self,
        redis_or_url: str | Redis | RedisCluster,
        *,
        key: str,
        rate: float,
        burst: int | None = None,
        patience: float = 5.0,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive number of requests per second")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        if not key:
            raise ValueError("key must not be empty")
        self.key = key
        self.rate = float(rate)
        self.burst = burst or 1
        self.patience = patience
        self._interval = _MICROS / self.rate
        self._tolerance = (self.burst - 1) * self._interval
        self.redis_keys = (f"{{{key}}}:tat", f"{{{key}}}:pause")
        self._owned = isinstance(redis_or_url, str)
        self._redis: Any = (
            self._connect(redis_or_url) if isinstance(redis_or_url, str) else redis_or_url
        )
        self._take = self._redis.register_script(_TAKE)
        self._pause = self._redis.register_script(_PAUSE)
        # A pause seen or set here, held by a process-local throttle (no rate of its
        # own): waiting requests need no round trip to learn of it.
        self._local = Throttle(None)
        # Requests waiting for a call of this process to reserve their slot.
        self._queue: deque[_Ticket] = deque()
        # The slots (anyio clock) requests of this process reserved and wait
        # for: each of them calls at its slot, which serves the queue too.
        self._held: list[float] = []
        # Calls to Redis under way; each serves the queue as it was when it began.
        self._calls = 0

    @staticmethod
    def _connect(url: str) -> Any:
        try:
            from redis.asyncio import Redis
        except ModuleNotFoundError as exc:
            raise extra_missing("RedisRateLimiter", "redis", exc) from exc
        return Redis.from_url(url)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(key={self.key!r}, rate={self.rate:g}, burst={self.burst})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis client if the limiter opened it (from a URL)."""
        if self._owned:
            await self._redis.aclose()

    async def wait_turn(self, give_up_at: float) -> float:
        """Wait for this request's slot in the shared schedule, then check the shared pause.

        Args:
            give_up_at: The request's time limit (`anyio.current_time()` clock).

        Returns:
            0 once the request may go; else how many seconds it would still
            have to wait (a pause or a slot beyond `give_up_at`), not waited.

        Raises:
            RateLimiterUnavailable: Redis did not answer within `patience`.
        """
        while True:
            left = await self._local.wait_turn(give_up_at)
            if left:
                return left
            kind, value = await self._ask(_Ticket(give_up_at, reserve=True))
            if kind == _AT:
                try:
                    await anyio.sleep_until(value)
                except BaseException:
                    self._held.remove(value)
                    self._kick()
                    raise
                self._held.remove(value)
                if await self._local.wait_turn(anyio.current_time()):
                    # A pause this process knows of already (another of its requests
                    # learned of it): no call needed to learn it again.
                    self._kick()
                    continue
                # Any worker may have paused while this one waited for its slot
                # (the in-process Throttle re-checks too): nothing goes inside a pause.
                kind, value = await self._ask(_Ticket(give_up_at, reserve=False))
            if kind == _GO:
                return 0.0
            if kind == _TOO_FAR:
                return value
            await self._local.pause(value)

    async def _ask(self, ticket: _Ticket) -> tuple[int, float]:
        """`ticket`'s answer: from a call of this process due in time, or from a call of its own."""
        earliest = min(self._held, default=math.inf)
        if ticket.reserve and (self._calls or earliest <= ticket.give_up_at):
            # A call of this process is under way or due before this request's
            # limit (one that waited, checking the pause at its slot): that call
            # reserves this slot too, and Redis sees one round trip, not two.
            ticket.answered = anyio.Event()
            self._queue.append(ticket)
            try:
                await ticket.answered.wait()
            except BaseException:
                self._withdraw(ticket)
                raise
            if ticket.answer[0] != _ON_YOUR_OWN:
                return ticket.answer
        return await self._serve(ticket)

    async def _serve(self, ticket: _Ticket) -> tuple[int, float]:
        """One call to Redis for `ticket` and every queued request; `ticket`'s answer."""
        batch = [ticket, *self._queue]
        self._queue.clear()
        now = anyio.current_time()
        longest = [max(0.0, each.give_up_at - now) * _MICROS for each in batch if each.reserve]
        self._calls += 1
        try:
            reply = await self._call(
                self._take,
                self.redis_keys,
                (self._interval, self._tolerance, *longest),
                ticket.give_up_at,
                # Its patience counts from its asking, not from when its call began:
                # time spent waiting for another's call that failed is spent.
                ticket.since,
            )
        except BaseException:
            self._calls -= 1
            # Not served: the others ask Redis themselves, each within its own limit.
            for other in batch[1:]:
                self._answer(other, _ON_YOUR_OWN, 0.0)
            self._kick()
            raise
        self._calls -= 1
        arrived = anyio.current_time()
        if int(reply[0]) == 1:
            left = int(reply[1]) / _MICROS
            for each in batch:
                self._answer(each, _PAUSED, left)
        else:
            waits = iter(reply[1:])
            for each in batch:
                if not each.reserve:
                    # Its slot had come and the pause is not set: it goes.
                    self._answer(each, _GO, 0.0)
                    continue
                micros = int(next(waits))
                if micros < 0:
                    self._answer(each, _TOO_FAR, -micros / _MICROS)
                elif micros == 0:
                    # Reserved and checked in this one call: it goes now.
                    self._answer(each, _GO, 0.0)
                elif each.withdrawn:
                    # Cancelled meanwhile: the slot goes unused, and no call is due for it.
                    pass
                else:
                    slot = arrived + micros / _MICROS
                    self._held.append(slot)
                    self._answer(each, _AT, slot)
        self._kick()
        return ticket.answer

    @staticmethod
    def _answer(ticket: _Ticket, kind: int, value: float) -> None:
        ticket.answer = (kind, value)
        if ticket.answered is not None:
            ticket.answered.set()

    def _withdraw(self, ticket: _Ticket) -> None:
        """`ticket`'s request was cancelled while it waited for another's call."""
        ticket.withdrawn = True
        if ticket in self._queue:
            self._queue.remove(ticket)
        elif ticket.answer[0] == _AT:
            # A slot reserved for it that it will not use: no call is due at it.
            self._held.remove(ticket.answer[1])
        self._kick()

    def _kick(self) -> None:
        """If no call of this process comes in time for a queued request, the first one calls."""
        if not self._queue or self._calls:
            return
        earliest = min(self._held, default=math.inf)
        if all(each.give_up_at >= earliest for each in self._queue):
            return
        self._answer(self._queue.popleft(), _ON_YOUR_OWN, 0.0)

    async def pause(self, seconds: float) -> None:
        """Hold every worker's requests for `seconds` (never shortens a pause)."""
        await self._local.pause(seconds)
        await self._call(
            self._pause,
            self.redis_keys[1:],
            (math.ceil(seconds * _MICROS),),
            anyio.current_time() + self.patience,
        )

    async def _call(
        self,
        script: Any,
        keys: tuple[str, ...],
        args: tuple[float, ...],
        give_up_at: float,
        since: float | None = None,
    ) -> Any:
        """Run `script`, retrying while Redis does not answer, `patience` from `since` (now)."""
        from redis.exceptions import RedisError

        since = anyio.current_time() if since is None else since
        ends = min(give_up_at, since + self.patience)
        wait = 0.05
        while True:
            try:
                return await script(keys=list(keys), args=[f"{arg:.0f}" for arg in args])
            except (RedisError, OSError) as exc:
                left = ends - anyio.current_time()
                if left <= 0:
                    raise RateLimiterUnavailable(
                        f"the shared rate limit {self.key!r} could not be read from Redis "
                        f"({type(exc).__name__})"
                    ) from exc
                await anyio.sleep(min(wait, left))
                wait = min(wait * 2, 1.0)
