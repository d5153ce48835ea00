"""`RedisTokenStore`: tokens in Redis, compare-and-set by script, leased locks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._crypto import Encryption
from ._errors import LockTimeout, StoreUnavailable
from ._protocol import DEFAULT_LOCK_TIMEOUT
from ._sealing import open_token, seal_token
from ._token import Token

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.lock import Lock

__all__ = ["RedisTokenStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Writes the token only if the stored fingerprint is the expected one
# ("" = nothing stored). One script, so no other client can write in between.
_COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], 'fp')
if (current == false and ARGV[1] == '') or current == ARGV[1] then
    redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'data', ARGV[3], 'enc', ARGV[4], 'key', ARGV[5])
    if tonumber(ARGV[6]) > 0 then
        redis.call('PEXPIRE', KEYS[1], ARGV[6])
    else
        redis.call('PERSIST', KEYS[1])
    end
    return 1
end
return 0
"""


@contextmanager
def _unwrapped() -> Iterator[None]:
    """Let an error of the locked block out as itself, not in the task group's ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            error = group.exceptions[0]
            raise error from error.__cause__
        raise


class RedisTokenStore:
    """Tokens in Redis (redis-py's asyncio client: asyncio only, not trio).

    - **Compare-and-set** runs as one server-side script, so a refresher whose
      lease expired cannot overwrite a newer token.
    - **Locks** are redis-py's leased locks: a random token per holder, only
      the holder can release, and the lease is extended while the block runs
      (a refresh), so a crashed holder frees the lock after `lease` seconds.
    - **Redis Cluster:** an account's token and lock keys share a hash tag,
      so they live in one slot.
    - **Durability** is Redis's: run it with AOF (``appendonly yes``) if a
      restart must not lose tokens.
    - **Encrypted at rest** when given an `Encryption`; optional **TTL**.

    Keys: ``{prefix}:{<digest of the account key>}:token`` (a hash with
    fields ``key``, ``fp``, ``data``, ``enc``) and ``...:lock``.

    Args:
        redis: A ``redis.asyncio.Redis`` or ``RedisCluster`` you configured
            (Sentinel, TLS, ACLs...), or a URL (``redis://host:6379/0``); a
            client made from a URL is closed by `aclose`.
        prefix: Namespace of this store's keys.
        encryption: Encrypts tokens at rest; ``None`` stores JSON.
        ttl: Seconds after each write before Redis drops the token; None keeps it.
        lease: Seconds a lock outlives a holder that stopped extending it.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster | str,
        *,
        prefix: str = "wiser-tokens",
        encryption: Encryption | None = None,
        ttl: float | None = None,
        lease: float = 10.0,
    ) -> None:
        if isinstance(redis, str):
            import redis.asyncio as redis_asyncio

            self._redis: Redis | RedisCluster = redis_asyncio.from_url(redis)
            self._owns_client = True
        else:
            self._redis = redis
            self._owns_client = False
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive (or None)")
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.prefix = prefix
        self.encryption = encryption
        self.ttl = ttl
        self.lease = lease
        self._compare_and_set = self._redis.register_script(_COMPARE_AND_SET)

    def __repr__(self) -> str:
        return (
            f"RedisTokenStore({self._where}, prefix={self.prefix!r}, "
            f"encryption={self.encryption!r}, ttl={self.ttl!r})"
        )

    @property
    def _where(self) -> str:
        # Host and port only: a URL may carry a password.
        try:
            kwargs = self._redis.connection_pool.connection_kwargs  # type: ignore[union-attr]
            return f"Redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        except AttributeError:
            return "Redis"

    async def aclose(self) -> None:
        """Close the Redis client if this store created it from a URL."""
        if self._owns_client:
            await self._redis.aclose()

    def _keys(self, key: str) -> tuple[str, str]:
        tag = hashlib.sha256(key.encode()).hexdigest()[:24]
        base = f"{self.prefix}:{{{tag}}}"
        return f"{base}:token", f"{base}:lock"

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        try:
            return await action()
        except (RedisError, OSError) as exc:
            # Down, timed out, read-only after a failover, out of memory, no
            # permission: the store cannot serve now. The class names which.
            raise StoreUnavailable(f"{self._where} is unavailable ({type(exc).__name__})") from None

    def _ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, round(self.ttl * 1000))

    # -- the protocol ------------------------------------------------------------

    async def load(self, key: str) -> Token | None:
        """The token of `key`, or None."""
        token_key, _ = self._keys(key)
        data, encrypted = await self._call(lambda: self._redis.hmget(token_key, ["data", "enc"]))
        if data is None:
            return None
        return open_token(
            data, encrypted == b"1", self.encryption, where=f"{self._where} {token_key}"
        )

    async def save(self, key: str, token: Token) -> None:
        """Store `token` for `key`."""
        token_key, _ = self._keys(key)
        payload, encrypted = seal_token(token, self.encryption)
        fields = {
            "fp": token.fingerprint,
            "data": payload,
            "enc": "1" if encrypted else "0",
            "key": key,
        }

        async def save() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(token_key, mapping=fields)  # type: ignore[arg-type]
                if self.ttl is None:
                    pipe.persist(token_key)
                else:
                    pipe.pexpire(token_key, self._ttl_ms())
                await pipe.execute()

        await self._call(save)

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        """Store `token` if the stored fingerprint is `expected`'s (one server-side script)."""
        token_key, _ = self._keys(key)
        payload, encrypted = seal_token(token, self.encryption)
        args = [
            "" if expected is None else expected.fingerprint,
            token.fingerprint,
            payload,
            "1" if encrypted else "0",
            key,
            self._ttl_ms(),
        ]
        result = await self._call(lambda: self._compare_and_set(keys=[token_key], args=args))
        return bool(result)

    async def delete(self, key: str) -> bool:
        """Remove the token of `key`."""
        token_key, _ = self._keys(key)
        return bool(await self._call(lambda: self._redis.delete(token_key)))

    async def keys(self) -> list[str]:
        """Every account key with a token under this prefix, sorted."""

        async def keys() -> list[str]:
            found = []
            async for token_key in self._redis.scan_iter(match=f"{self.prefix}:{{*}}:token"):
                account = await self._redis.hget(token_key, "key")
                if account is not None:
                    found.append(account.decode() if isinstance(account, bytes) else account)
            return sorted(found)

        return await self._call(keys)

    @asynccontextmanager
    async def lock(self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AsyncIterator[None]:
        """A leased lock on `key` across processes, extended while the block runs."""
        _, lock_key = self._keys(key)
        lock: Lock = self._redis.lock(
            lock_key, timeout=self.lease, sleep=0.005, blocking_timeout=timeout
        )
        acquired = await self._call(lambda: lock.acquire())
        if not acquired:
            raise LockTimeout(key, timeout, f"{self._where} ({self.prefix})")
        try:
            with _unwrapped():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_leased, lock, key)
                    try:
                        yield
                    finally:
                        tg.cancel_scope.cancel()
        finally:
            await self._release(lock, key)

    async def _keep_leased(self, lock: Lock, key: str) -> None:
        from redis.exceptions import LockError, RedisError

        while True:
            await anyio.sleep(self.lease / 3)
            try:
                await lock.reacquire()
            except LockError:
                # The lease ran out (a long pause): another process may hold
                # the lock now. Compare-and-set still protects the token.
                logger.warning("lost the lock lease of account %r", key)
                return
            except RedisError as exc:
                logger.warning(
                    "could not extend the lock of account %r: %s", key, type(exc).__name__
                )

    async def _release(self, lock: Lock, key: str) -> None:
        from redis.exceptions import LockError, RedisError

        with anyio.CancelScope(shield=True):
            try:
                await lock.release()
            except LockError:
                logger.warning("the lock lease of account %r expired before release", key)
            except (RedisError, OSError) as exc:
                # The lease frees the lock by itself.
                logger.warning(
                    "could not release the lock of account %r: %s", key, type(exc).__name__
                )

    async def rotate_encryption(self) -> int:
        """Re-encrypt every token with the newest key (or encrypt plain ones).

        Returns:
            How many tokens were rewritten.
        """
        if self.encryption is None:
            raise ValueError("this store has no encryption keys to rotate to")
        rewritten = 0
        for key in await self.keys():
            async with self.lock(key):
                token = await self.load(key)
                if token is not None and await self.compare_and_set(key, token, token):
                    rewritten += 1
        return rewritten
