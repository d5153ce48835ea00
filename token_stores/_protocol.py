"""The `TokenStore` protocol every store implements."""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs

from ._token import Token

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LockHeld", "TokenStore"]

DEFAULT_LOCK_TIMEOUT = 30.0
"""Seconds `TokenStore.lock` waits for the lock before it raises `LockTimeout`."""


@attrs.frozen
class LockHeld:
    """What the holder of an account's lock learns on taking it.

    Attributes:
        taken_over: The previous holder's lease ran out before it released
            the lock (a process paused or stuck past the lease): it may still
            be finishing a refresh, and save its token after this holder read
            the store. A holder whose refresh is refused should re-read the
            store for a while before concluding the grant is gone.
    """

    taken_over: bool = False


@runtime_checkable
class TokenStore(Protocol):
    """Async persistence of OAuth tokens, keyed by an account key.

    An account key is any string naming one customer's authorization (for
    example a tenant id). Implementations are safe to share between tasks;
    the file and Redis stores are also safe to share between processes.

    The refresh protocol a client follows::

        async with store.lock(key):
            current = await store.load(key)      # another worker may have refreshed
            if current still needs a refresh:
                new = refresh(current)
                await store.compare_and_set(key, current, new)
    """

    async def change_marker(self, key: str) -> Hashable:
        """A value that changes whenever the stored token of `key` may have changed.

        Cheap enough to ask every fraction of a second: no round trip to a
        remote service while nothing changes (the memory store keeps a
        counter, the file store asks ``stat``, the Redis store reads the
        invalidation messages it has received). This is how a token deleted
        or replaced by another process stops being used here.

        Raises:
            TokenStoreError: the backend cannot tell now.
        """
        ...

    async def aclose(self) -> None:
        """Release what the store holds open (connections it created)."""
        ...

    async def load(self, key: str) -> Token | None:
        """The stored token of `key`, or None if there is none.

        Raises:
            TokenStoreError: the backend failed or the stored data is unusable.
        """
        ...

    async def save(self, key: str, token: Token) -> None:
        """Store `token` for `key` unconditionally (after a new authorization)."""
        ...

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        """Store `token` only if the stored token is still `expected`.

        Tokens are compared by `Token.fingerprint`; ``expected=None`` means
        "only if nothing is stored". This is what keeps a slow or stale
        refresher from overwriting a newer token.

        Returns:
            True if `token` was stored, False if the stored token had changed.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove the token of `key`. Returns True if there was one."""
        ...

    async def keys(self) -> list[str]:
        """Every account key that has a stored token, sorted."""
        ...

    def lock(
        self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> AbstractAsyncContextManager[LockHeld]:
        """An exclusive lock on `key`, held for the duration of the block.

        Exclusive among every user of the same backing storage: tasks of one
        process for `MemoryTokenStore`, processes too for the file and Redis
        stores. Not reentrant. The block receives a `LockHeld`.

        Raises:
            LockTimeout: not acquired within `timeout` seconds.
        """
        ...
