"""`MemoryTokenStore`: tokens in a dict, for one process."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._errors import LockTimeout
from ._protocol import DEFAULT_LOCK_TIMEOUT, LockHeld
from ._token import Token

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore:
    """Tokens kept in memory: lost when the process exits.

    For tests, scripts and single-process services that re-authorize on start.
    Locks are per key and shared by every task of the process.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        # Semaphores, not task-owned locks: like the file and Redis locks, the
        # lock belongs to the holder of the block, not to a task.
        self._locks: dict[str, anyio.Semaphore] = {}
        self._changes: dict[str, int] = {}
        self._change_numbers = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryTokenStore(accounts={len(self._tokens)})"

    def _changed(self, key: str) -> None:
        self._changes[key] = next(self._change_numbers)

    async def change_marker(self, key: str) -> int:
        """A counter that moves on every write or delete of `key`."""
        return self._changes.get(key, 0)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def load(self, key: str) -> Token | None:
        """The token of `key`, or None."""
        return self._tokens.get(key)

    async def save(self, key: str, token: Token) -> None:
        """Store `token` for `key`."""
        self._tokens[key] = token
        self._changed(key)

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        """Store `token` if the stored token's fingerprint is `expected`'s."""
        current = self._tokens.get(key)
        if _fingerprint(current) != _fingerprint(expected):
            return False
        self._tokens[key] = token
        self._changed(key)
        return True

    async def delete(self, key: str) -> bool:
        """Forget the token of `key`."""
        self._changed(key)
        return self._tokens.pop(key, None) is not None

    async def keys(self) -> list[str]:
        """Every key with a token, sorted."""
        return sorted(self._tokens)

    @asynccontextmanager
    async def lock(
        self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> AsyncIterator[LockHeld]:
        """A per-key lock shared by the tasks of this process."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Semaphore(1)
        with anyio.move_on_after(timeout) as scope:
            await lock.acquire()
        if scope.cancelled_caught:
            raise LockTimeout(key, timeout, "memory store")
        try:
            yield LockHeld()
        finally:
            lock.release()


def _fingerprint(token: Token | None) -> str | None:
    return None if token is None else token.fingerprint
