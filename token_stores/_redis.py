"""`RedisTokenStore`: tokens in Redis, compare-and-set by script, leased locks."""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, ClassVar, TypeVar

import anyio

from . import _redis_scripts as scripts
from ._crypto import Encryption
from ._errors import CorruptTokenData, LockTimeout, StoreUnavailable
from ._keys import encoded_key
from ._protocol import DEFAULT_LOCK_TIMEOUT, LockHeld
from ._redaction import redact_store_spec
from ._redis_client import (
    check_account,
    check_options,
    client_from_url,
    close_subscription,
    described,
    location_of,
    new_subscription,
    shown_key,
    unwrapped,
    wrong_type,
)
from ._sealing import open_token, seal_token
from ._token import Token

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool, Redis, RedisCluster
    from redis.asyncio.client import PubSub
    from redis.asyncio.lock import Lock

__all__ = ["RedisTokenStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A holder that has not released within this long is forgotten: longer than
# any refresh takes, and than a paused process is likely to stay paused.
_HOLDER_MEMORY_MS = 120_000
# Invalidation messages are read at most this often, whatever the callers ask.
_DRAIN_INTERVAL = 0.05


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
    - **Another program's key** (another Redis type) where an account's token
      hash belongs is that account's `CorruptTokenData`, never written over;
      `keys` skips it, and an account name that is not UTF-8, with a warning.

    - **Changes reach other processes:** every write and delete is published
      on ``{prefix}:changes``; `change_marker` reads those messages from a
      subscription, so telling that nothing changed costs no round trip.
    - **A lock taken over** from a holder whose lease ran out is reported as
      ``LockHeld(taken_over=True)``: that holder may still save a token.
    - **An outage is reported at once, with its cause:** `StoreUnavailable`
      says "connection refused", "timed out", "name does not resolve"...
      A client made from a URL gives up connecting, or waiting for an
      answer, after `DEFAULT_TIMEOUT` seconds unless the URL says otherwise
      (``?socket_connect_timeout=``, ``?socket_timeout=``). Messages and
      `repr` show the URL with its credentials masked (`redact_store_spec`).
    - **Forgeries refused:** a token hash whose ``key`` field is not the
      account's is `ForeignToken`; with encryption, a token sealed for
      another account is too, and a plain one is `UnboundToken` unless the
      `Encryption` accepts one for a migration.

    Keys: ``{prefix}:{<digest of the account key>}:token`` (a hash with
    fields ``key``, ``fp``, ``data``, ``enc``), ``...:lock`` and
    ``...:holder``; channel ``{prefix}:changes``.

    Args:
        redis: A ``redis.asyncio.Redis`` or ``RedisCluster`` you configured
            (Sentinel, TLS, ACLs...), or a URL (``redis://host:6379/0``); a
            client made from a URL is closed by `aclose`.
        prefix: Namespace of this store's keys.
        encryption: Encrypts tokens at rest; ``None`` stores JSON.
        ttl: Seconds after each write before Redis drops the token; None keeps it.
        lease: Seconds a lock outlives a holder that stopped extending it.

    Raises:
        ValueError: the URL has an option redis-py's connections do not take
            (the URL is shown with its credentials masked).
    """

    DEFAULT_TIMEOUT: ClassVar[float] = 5.0
    """Seconds a client made from a URL waits to connect, and for an answer.

    Applies to what the URL does not set (``socket_connect_timeout``,
    ``socket_timeout``): an unreachable Redis is then reported within it.
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
            self._redis: Redis | RedisCluster = client_from_url(redis, self.DEFAULT_TIMEOUT)
            self._owns_client = True
            self._location = redact_store_spec(redis)
            check_options(self._redis, self._location)
        else:
            self._redis = redis
            self._owns_client = False
            self._location = location_of(redis)
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive (or None)")
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.prefix = prefix
        self.encryption = encryption
        self.ttl = ttl
        self.lease = lease
        self._compare_and_set = self._redis.register_script(scripts.COMPARE_AND_SET)
        self._save = self._redis.register_script(scripts.SAVE)
        self._take_holder = self._redis.register_script(scripts.TAKE_HOLDER)
        self._drop_holder = self._redis.register_script(scripts.DROP_HOLDER)
        self._channel = f"{prefix}:changes"
        self._pubsub: PubSub | None = None
        self._pubsub_pool: ConnectionPool | None = None
        # Changes seen per account (by digest); the epoch moves on every new
        # subscription, as messages sent while there was none are unknown.
        self._epoch = 0
        self._generations: dict[str, int] = {}
        self._drained_at = -math.inf
        self._draining = False

    def __repr__(self) -> str:
        return (
            f"RedisTokenStore({self._location!r}, prefix={self.prefix!r}, "
            f"encryption={self.encryption!r}, ttl={self.ttl!r})"
        )

    @property
    def _where(self) -> str:
        # Never the URL as given: it may carry a password.
        return f"Redis {self._location}"

    async def aclose(self) -> None:
        """Close the change subscription, and the Redis client if this store created it."""
        await self._close_pubsub()
        if self._owns_client:
            await self._redis.aclose()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        pool, self._pubsub_pool = self._pubsub_pool, None
        await close_subscription(pubsub, pool)

    @staticmethod
    def _tag(key: str) -> str:
        return hashlib.sha256(encoded_key(key)).hexdigest()[:24]

    def redis_keys(self, key: str) -> tuple[str, str]:
        """The Redis keys of an account: its token hash and its lock, in one cluster slot."""
        base = f"{self.prefix}:{{{self._tag(key)}}}"
        return f"{base}:token", f"{base}:lock"

    async def change_marker(self, key: str) -> tuple[int, int]:
        """Changes of `key` seen on the subscription (no round trip while none arrive).

        Raises:
            StoreUnavailable: the subscription cannot be made or was lost; the
                next call subscribes again, and every marker then changes.
        """
        from redis.exceptions import RedisError

        now = anyio.current_time()
        # A lost subscription is made again at once: until then nothing is known.
        # One task at a time reads the subscription (its connection is not shared
        # safely, and is not there until `subscribe` returns); the others answer
        # from what was read so far. Before the first subscription that is epoch 0,
        # which the first read then changes: a re-check of the store, never a miss.
        if not self._draining and (
            self._pubsub is None or now - self._drained_at >= _DRAIN_INTERVAL
        ):
            self._drained_at = now
            self._draining = True
            try:
                await self._drain()
            except (RedisError, OSError) as exc:
                await self._close_pubsub()
                raise StoreUnavailable(
                    f"{self._where}: no change subscription ({described(exc)})"
                ) from None
            finally:
                self._draining = False
        return (self._epoch, self._generations.get(self._tag(key), 0))

    async def _drain(self) -> None:
        if self._pubsub is None:
            # Assigned first: a subscription that fails half-way is closed like any other.
            self._pubsub, self._pubsub_pool = new_subscription(self._redis)
            await self._pubsub.subscribe(self._channel)
            self._epoch += 1
        while (message := await self._pubsub.get_message(timeout=0)) is not None:
            if message.get("type") == "message":
                data = message.get("data")
                tag = data.decode("ascii", "replace") if isinstance(data, bytes) else str(data)
                self._generations[tag] = self._generations.get(tag, 0) + 1

    async def _announce(self, key: str) -> None:
        await self._redis.publish(self._channel, self._tag(key))

    async def _call(self, action: Callable[[], Awaitable[T]], redis_key: str | None = None) -> T:
        from redis.exceptions import RedisError

        try:
            return await action()
        except (RedisError, OSError) as exc:
            if wrong_type(exc):
                # Something else wrote a key of another type there: this account's
                # data is unusable, the store is not down. It is left as it is.
                raise CorruptTokenData(
                    f"{self._where}: {redis_key or 'a key'} is not a token hash (WRONGTYPE: "
                    "another program's key?); it is left as it is: delete it to store a new token"
                ) from None
            # Down, timed out, read-only after a failover, out of memory, no
            # permission: the store cannot serve now. The words say which.
            raise StoreUnavailable(f"{self._where} is unavailable: {described(exc)}") from None

    def _ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, round(self.ttl * 1000))

    # -- the protocol ------------------------------------------------------------

    async def load(self, key: str) -> Token | None:
        """The token of `key`, or None.

        Raises:
            CorruptTokenData: the token key holds another Redis type (named),
                or data that is no token. `save` and `compare_and_set` raise
                it too, and write nothing there.
            ForeignToken: the hash's ``key`` field, or the account sealed in
                its ciphertext, is another account's.
            UnboundToken: the store encrypts, and the token is in plain text
                or encrypted without its account (see `Encryption`).
            DecryptionError: encrypted with a key this store was not given.
            StoreUnavailable: Redis cannot serve now (the message says why).
            ValueError: `key` is not valid Unicode text (a lone surrogate).
        """
        token_key, _ = self.redis_keys(key)
        data, encrypted, account = await self._call(
            lambda: self._redis.hmget(token_key, ["data", "enc", "key"]), token_key
        )
        if data is None:
            return None
        where = f"{self._where} {token_key}"
        check_account(account, key, where)
        return open_token(data, encrypted in (b"1", "1"), self.encryption, key=key, where=where)

    async def save(self, key: str, token: Token) -> None:
        """Store `token` for `key`."""
        token_key, _ = self.redis_keys(key)
        payload, encrypted = seal_token(token, self.encryption, key=key)
        args = [token.fingerprint, payload, "1" if encrypted else "0", key, self._ttl_ms()]

        async def save() -> None:
            await self._save(keys=[token_key], args=args)
            await self._announce(key)

        await self._call(save, token_key)

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        """Store `token` if the stored fingerprint is `expected`'s (one server-side script)."""
        token_key, _ = self.redis_keys(key)
        payload, encrypted = seal_token(token, self.encryption, key=key)
        args = [
            "" if expected is None else expected.fingerprint,
            token.fingerprint,
            payload,
            "1" if encrypted else "0",
            key,
            self._ttl_ms(),
            self._channel,
            self._tag(key),
        ]
        result = await self._call(
            lambda: self._compare_and_set(keys=[token_key], args=args), token_key
        )
        return bool(result)

    async def delete(self, key: str) -> bool:
        """Remove the token of `key`."""
        token_key, _ = self.redis_keys(key)

        async def delete() -> bool:
            deleted = bool(await self._redis.delete(token_key))
            await self._announce(key)
            return deleted

        return await self._call(delete)

    async def keys(self) -> list[str]:
        """Every account key with a token under this prefix, sorted.

        A key that is not one of this store's token hashes (another Redis
        type, an account name that is not UTF-8, or the name of an account
        whose token belongs elsewhere: a copy) is skipped with a warning
        naming it: the other accounts are still listed.
        """

        async def keys() -> list[str]:
            found = []
            async for token_key in self._redis.scan_iter(match=f"{self.prefix}:{{*}}:token"):
                account = await self._account_of(token_key)
                if account is not None:
                    found.append(account)
            return sorted(found)

        return await self._call(keys)

    async def _account_of(self, token_key: bytes | str) -> str | None:
        """The account key stored in `token_key`; None if gone, or not usable (logged)."""
        from redis.exceptions import ResponseError

        try:
            stored = await self._redis.hget(token_key, "key")
            # A client made with decode_responses=True decodes it itself (and fails
            # the same way); otherwise it comes as bytes.
            account: str | None = stored.decode() if isinstance(stored, bytes) else stored
        except ResponseError as exc:
            if not wrong_type(exc):
                raise
            logger.warning("skipped %s: not a token hash (WRONGTYPE)", shown_key(token_key))
            return None
        except UnicodeDecodeError:
            logger.warning("skipped %s: its account key is not UTF-8 text", shown_key(token_key))
            return None
        if account is None:
            return None  # deleted since the scan saw it
        name = token_key.decode("ascii", "replace") if isinstance(token_key, bytes) else token_key
        if self.redis_keys(account)[0] != name:
            # Copied or renamed there: the account is listed from its own hash, if it has one.
            logger.warning(
                "skipped %s: it names an account whose token is kept elsewhere (a copy?)",
                shown_key(token_key),
            )
            return None
        return account

    @asynccontextmanager
    async def lock(
        self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> AsyncIterator[LockHeld]:
        """A leased lock on `key` across processes, extended while the block runs."""
        _, lock_key = self.redis_keys(key)
        holder_key = lock_key.removesuffix(":lock") + ":holder"
        lock: Lock = self._redis.lock(
            lock_key, timeout=self.lease, sleep=0.005, blocking_timeout=timeout
        )
        acquired = await self._call(lambda: lock.acquire())
        if not acquired:
            raise LockTimeout(key, timeout, f"{self._where} ({self.prefix})")
        me = secrets.token_hex(16)
        try:
            previous = await self._call(
                lambda: self._take_holder(keys=[holder_key], args=[me, _HOLDER_MEMORY_MS])
            )
            with unwrapped():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_leased, lock, key)
                    try:
                        yield LockHeld(taken_over=previous is not None)
                    finally:
                        tg.cancel_scope.cancel()
        finally:
            await self._release(lock, key, holder_key, me)

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
                logger.warning("could not extend the lock of account %r: %s", key, described(exc))

    async def _release(self, lock: Lock, key: str, holder_key: str, me: str) -> None:
        from redis.exceptions import LockError, RedisError

        with anyio.CancelScope(shield=True):
            try:
                await self._drop_holder(keys=[holder_key], args=[me])
                await lock.release()
            except LockError:
                logger.warning("the lock lease of account %r expired before release", key)
            except (RedisError, OSError) as exc:
                # The lease frees the lock by itself.
                logger.warning("could not release the lock of account %r: %s", key, described(exc))

    async def rotate_encryption(self) -> int:
        """Re-encrypt every token with the newest key, sealed with its account.

        Plain tokens, and tokens encrypted without their account, are
        rewritten only if the `Encryption` accepts them; otherwise the first
        one stops the rotation with `UnboundToken`.

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
