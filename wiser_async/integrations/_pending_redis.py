"""`RedisPendingStore`: pending logins in Redis, shared by every worker.

Keys (one hash tag, so a Redis Cluster keeps them on one node):

- ``{prefix}:{pending}:login:{sha256(state)}``: ``browser|body``, or ``used``;
- ``{prefix}:{pending}:browser:{sha256(cookie)}``: the browser's record;
- ``{prefix}:{pending}:index``: a sorted set of the logins by the time they
  leave; it counts them for the cap, and its expired members are removed at
  each login (only those: ``ZREMRANGEBYSCORE``);
- ``{prefix}:{pending}:account:{sha1(account)}``: the same, of one account,
  for ``max_per_account``.

Every key has a TTL, an index that of its longest-lived login: nothing
outlives its login by more than `GRACE`. The expiry times are the workers'
clocks: keep them synchronized (NTP), as for the tokens' expiry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from .._extras import extra_missing
from ..errors import StoreUnavailable
from ._pending import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PER_ACCOUNT,
    LOGINS_PER_BROWSER,
    PendingLogin,
    Taken,
    check_bounds,
    decode_entry,
    record_browser,
    state_key,
)

__all__ = ["RedisPendingStore"]

T = TypeVar("T")

# `plan_start` and `MemoryPendingStore.start`, atomically on the server.
# KEYS: index, login, new browser record, previous browser record (or "-").
# ARGV: now, keep_until, max_pending, body, account, new browser id,
#       logins per browser, prefix of login keys, the login's key,
#       max per account, prefix of account indexes.
_START = """
local index, login, browser_key, previous_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, keep_until, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local account, per_browser, login_prefix, key = ARGV[5], tonumber(ARGV[7]), ARGV[8], ARGV[9]
local per_account, account_prefix = tonumber(ARGV[10]), ARGV[11]
local function of_account(name) return account_prefix .. redis.sha1hex(name) end
local own = of_account(account)
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
redis.call('ZREMRANGEBYSCORE', own, '-inf', now)
local browser, logins = ARGV[6], {}
if previous_key ~= '-' then
    local raw = redis.call('GET', previous_key)
    if raw then
        local record = cjson.decode(raw)
        browser, logins = record.browser, record.logins
    end
end
local kept, drop = {}, {}
for _, pair in ipairs(logins) do
    if pair[1] == account then table.insert(drop, pair) else table.insert(kept, pair) end
end
while #kept >= per_browser do table.insert(drop, table.remove(kept, 1)) end
local freed, freed_here = 0, 0
for _, pair in ipairs(drop) do
    if redis.call('ZSCORE', index, pair[2]) then
        freed = freed + 1
        if pair[1] == account then freed_here = freed_here + 1 end
    end
end
if redis.call('ZCARD', index) - freed >= cap then return 0 end
if redis.call('ZCARD', own) - freed_here >= per_account then return 0 end
for _, pair in ipairs(drop) do
    redis.call('DEL', login_prefix .. pair[2])
    redis.call('ZREM', index, pair[2])
    redis.call('ZREM', of_account(pair[1]), pair[2])
end
if previous_key ~= '-' then redis.call('DEL', previous_key) end
table.insert(kept, {account, key})
local ttl = math.max(1, math.ceil((keep_until - now) * 1000))
redis.call('SET', login, browser .. '|' .. ARGV[4], 'PX', ttl)
redis.call('SET', browser_key, cjson.encode({browser = browser, logins = kept}), 'PX', ttl)
-- The indexes live as long as their longest-lived member (a shorter TTL never shortens them).
for _, sorted in ipairs({index, own}) do
    redis.call('ZADD', sorted, keep_until, key)
    if redis.call('PTTL', sorted) < ttl then redis.call('PEXPIRE', sorted, ttl) end
end
return 1
"""
# `PendingStore.take`, atomically: a live login becomes "used" for as long as
# it would have stayed; an expired one stays as it is (the caller names it).
# KEYS: login. ARGV: now. Returns the value found, or nil.
_TAKE = """
local raw = redis.call('GET', KEYS[1])
if not raw or raw == 'used' then return raw end
local body = string.sub(raw, string.find(raw, '|', 1, true) + 1)
if cjson.decode(body).expires_at > tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
end
return raw
"""


class RedisPendingStore:
    """Pending logins in Redis, shared by every worker of every machine.

    Args:
        redis_or_url: A ``redis.asyncio`` client (never closed here) or a URL.
        prefix: The keys' prefix (see the module).
        max_pending: The most entries it holds (see `MemoryPendingStore`).
        max_per_account: The most entries of one account it holds.

    Asyncio only, like redis-py. Needs Redis 6.2 or later.
    """

    def __init__(
        self,
        redis_or_url: Any,
        *,
        prefix: str = "wiser",
        max_pending: int = DEFAULT_MAX_PENDING,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    ) -> None:
        check_bounds(max_pending, max_per_account)
        if isinstance(redis_or_url, str):
            try:
                import redis.asyncio
            except ModuleNotFoundError as exc:
                raise extra_missing("RedisPendingStore", "redis", exc) from exc

            self._redis: Any = redis.asyncio.Redis.from_url(redis_or_url)
            self._owns = True
        else:
            self._redis, self._owns = redis_or_url, False
        self.prefix = prefix
        self.max_pending = max_pending
        self.max_per_account = max_per_account
        self._base = f"{prefix}:{{pending}}"
        self._start = self._redis.register_script(_START)
        self._take = self._redis.register_script(_TAKE)

    def __repr__(self) -> str:
        return f"RedisPendingStore(prefix={self.prefix!r}, max_pending={self.max_pending})"

    async def _call(self, action: Awaitable[T]) -> T:
        from redis.exceptions import RedisError

        try:
            return await action
        except (RedisError, OSError) as error:
            # The class only: a message may name the server's address.
            raise StoreUnavailable(
                f"the pending-login store (Redis) failed ({type(error).__name__})"
            ) from None

    def _login_key(self, key: str) -> str:
        return f"{self._base}:login:{key}"

    def _browser_key(self, cookie: str) -> str:
        return f"{self._base}:browser:{cookie}"

    async def start(self, login: PendingLogin, *, cookie: str, previous_cookie: str | None) -> bool:
        key = state_key(login.state)
        started = await self._call(
            self._start(
                keys=[
                    f"{self._base}:index",
                    self._login_key(key),
                    self._browser_key(cookie),
                    self._browser_key(previous_cookie) if previous_cookie else "-",
                ],
                args=[
                    repr(time.time()),
                    repr(login.keep_until),
                    self.max_pending,
                    login.body(),
                    login.account,
                    login.browser,
                    LOGINS_PER_BROWSER,
                    f"{self._base}:login:",
                    key,
                    self.max_per_account,
                    f"{self._base}:account:",
                ],
            )
        )
        return bool(started)

    async def browser(self, cookie: str) -> str | None:
        return record_browser(await self._call(self._redis.get(self._browser_key(cookie))))

    async def find(self, state: str) -> PendingLogin | Taken:
        raw = await self._call(self._redis.get(self._login_key(state_key(state))))
        return decode_entry(raw, state, now=time.time())

    async def take(self, state: str) -> PendingLogin | Taken:
        now = time.time()
        key = self._login_key(state_key(state))
        raw = await self._call(self._take(keys=[key], args=[repr(now)]))
        return decode_entry(raw, state, now=now)

    async def count(self) -> int:
        index = f"{self._base}:index"

        async def count() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(index, "-inf", time.time())
                pipe.zcard(index)
                _, held = await pipe.execute()
            return int(held)

        return await self._call(count())

    async def aclose(self) -> None:
        if self._owns:
            await self._redis.aclose()
