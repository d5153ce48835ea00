"""The `TokenStore` protocol every store implements."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from ._token import Token

__all__ = ["DEFAULT_LOCK_TIMEOUT", "TokenStore"]

DEFAULT_LOCK_TIMEOUT = 30.0


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
    ) -> AbstractAsyncContextManager[None]:
        """An exclusive lock on `key`, held for the duration of the block.

        Exclusive among every user of the same backing storage: tasks of one
        process for `MemoryTokenStore`, processes too for the file and Redis
        stores. Not reentrant.

        Raises:
            LockTimeout: not acquired within `timeout` seconds.
        """
        ...
