"""`RedisRateLimiter`: one request rate and one 429 pause for every process sharing a key.

The rate is GCRA (the generic cell rate algorithm, as in ATM networks and
redis-cell), kept in Redis by one server-side script per permit: it reads the
server's clock, reserves the next free slot and says how long to wait for it.
Every process and machine using the same key draws slots from one schedule,
so N workers send at the configured rate together, not N times it. A 429's
``Retry-After`` is written under the same key and read by the same script:
one worker's pause holds them all.

redis-py is asyncio-only, so this limiter is too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Self

import anyio

from ._retry import Throttle
from .errors import RateLimiterUnavailable

if TYPE_CHECKING:
    from types import TracebackType

    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisRateLimiter"]

# KEYS[1]: the theoretical arrival time (microseconds, the server's clock);
# KEYS[2]: the end of a shared pause. ARGV: interval, tolerance, longest wait
# the caller accepts (all microseconds). Returns {0, wait}: a slot is reserved
# `wait` from now; {1, left}: paused `left` more; {2, wait}: the next slot is
# further away than the caller may wait, nothing reserved.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
    return {1, math.ceil(paused - now)}
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then
    wait = 0
end
if wait > tonumber(ARGV[3]) then
    return {2, math.ceil(wait)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
           'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {0, math.ceil(wait)}
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


class RedisRateLimiter:
    """A request rate, and 429 pauses, shared by every client using `key` on one Redis.

    Give it to ``AsyncWiserClient(rate_limit=...)`` in every worker, instead
    of a number (which limits one process only). Each request costs one
    round trip to Redis (a script, ``EVALSHA``).

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

    @staticmethod
    def _connect(url: str) -> Any:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - the redis extra is missing
            raise ImportError(
                "RedisRateLimiter needs redis: pip install 'wiser-async[redis]'"
            ) from exc
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
        """Wait for this request's slot in the shared schedule.

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
            longest = max(0.0, give_up_at - anyio.current_time()) * _MICROS
            kind, micros = await self._call(
                self._take, self.redis_keys, (self._interval, self._tolerance, longest), give_up_at
            )
            wait = int(micros) / _MICROS
            if int(kind) == 0:
                if wait > 0:
                    await anyio.sleep(wait)
                return 0.0
            if int(kind) == 1:
                await self._local.pause(wait)
                continue
            return wait

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
        self, script: Any, keys: tuple[str, ...], args: tuple[float, ...], give_up_at: float
    ) -> Any:
        from redis.exceptions import RedisError

        ends = min(give_up_at, anyio.current_time() + self.patience)
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
