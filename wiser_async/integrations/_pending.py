"""Pending authorizations between a login request and its callback, server-side, one-time.

A login stores a `PendingLogin` (the account, the PKCE verifier, the redirect
URI, a digest of the browser's session cookie) under its ``state``; the
callback, on any worker, takes it once. Taking is atomic: the entry is
replaced by a short-lived "used" marker, so a replayed callback is told
apart from a foreign ``state``, and an entry past its TTL from both. The
verifier never leaves the server (no cookie, no page).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import anyio
import attrs

__all__ = [
    "DEFAULT_PENDING_TTL",
    "FilePendingStore",
    "MemoryPendingStore",
    "PendingLogin",
    "PendingStore",
    "RedisPendingStore",
    "Taken",
]

DEFAULT_PENDING_TTL = 600.0
# How long a used or expired entry is remembered, to name a replay or an expiry.
_MEMORY = 3600.0
_USED = "used"


class Taken(Enum):
    """Why `PendingStore.take` found no usable entry."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@attrs.frozen(kw_only=True)
class PendingLogin:
    """One login between its redirect and its callback (the verifier is never shown)."""

    account: str
    state: str = attrs.field(repr=False)
    code_verifier: str = attrs.field(repr=False)
    redirect_uri: str
    session_digest: str = attrs.field(repr=False)
    expires_at: float

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingLogin:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


class PendingStore(Protocol):
    """Where pending logins wait for their callback: `put`, one-time `take`, `aclose`."""

    async def put(self, pending: PendingLogin) -> None: ...

    async def take(self, state: str) -> PendingLogin | Taken: ...

    async def aclose(self) -> None: ...


def _key(state: str) -> str:
    # The state is a bearer of the login: stored by digest only.
    return hashlib.sha256(state.encode()).hexdigest()


def _judge(raw: str | bytes | None) -> PendingLogin | Taken:
    if raw is None:
        return Taken.UNKNOWN
    if raw in (_USED, _USED.encode()):
        return Taken.USED
    pending = PendingLogin.from_json(raw)
    return Taken.EXPIRED if pending.expires_at <= time.time() else pending


class MemoryPendingStore:
    """Pending logins in this process only (one worker, tests)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return f"MemoryPendingStore(entries={len(self._entries)})"

    def _prune(self) -> None:
        now = time.time()
        for key in [key for key, (until, _) in self._entries.items() if until <= now]:
            del self._entries[key]

    async def put(self, pending: PendingLogin) -> None:
        self._prune()
        self._entries[_key(pending.state)] = (pending.expires_at + _MEMORY, pending.to_json())

    async def take(self, state: str) -> PendingLogin | Taken:
        self._prune()
        key = _key(state)
        entry = self._entries.get(key)
        if entry is None:
            return Taken.UNKNOWN
        self._entries[key] = (time.time() + _MEMORY, _USED)
        return _judge(entry[1])

    async def aclose(self) -> None:
        self._entries.clear()


class FilePendingStore:
    """Pending logins as files (mode 0600) in a directory every worker of a machine shares.

    `take` renames the entry's file to a name of its own (atomic: one taker
    wins), reads it, and leaves a "used" marker behind.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FilePendingStore({str(self.directory)!r})"

    def _put(self, pending: PendingLogin) -> None:
        path = self.directory / f"{_key(pending.state)}.json"
        temporary = self.directory / f".{uuid.uuid4().hex}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(pending.to_json())
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        self._prune()

    def _prune(self) -> None:
        horizon = time.time() - _MEMORY
        for path in self.directory.glob("*.json*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < horizon:
                    path.unlink()

    def _take(self, state: str) -> PendingLogin | Taken:
        key = _key(state)
        path = self.directory / f"{key}.json"
        taking = self.directory / f"{key}.json.taking"
        used = self.directory / f"{key}.json.used"
        try:
            path.rename(taking)  # atomic: the source is gone for every other taker
        except FileNotFoundError:
            # The winner marks "used" before it lets go of "taking": look in that order.
            return Taken.USED if taking.exists() or used.exists() else Taken.UNKNOWN
        try:
            raw = taking.read_text()
        finally:
            used.touch(mode=0o600)
            taking.unlink()
        return _judge(raw)

    async def put(self, pending: PendingLogin) -> None:
        await anyio.to_thread.run_sync(self._put, pending)

    async def take(self, state: str) -> PendingLogin | Taken:
        return await anyio.to_thread.run_sync(self._take, state)

    async def aclose(self) -> None:
        return None


class RedisPendingStore:
    """Pending logins in Redis, shared by every worker: ``SET ... PX``, taken by ``SET ... GET``.

    Args:
        redis_or_url: A ``redis.asyncio`` client (never closed here) or a URL.
        prefix: Keys are ``{prefix}:pending:{sha256(state)}``.

    Asyncio only, like redis-py. Needs Redis 6.2 or later.
    """

    def __init__(self, redis_or_url: Any, *, prefix: str = "wiser") -> None:
        if isinstance(redis_or_url, str):
            import redis.asyncio

            self._redis: Any = redis.asyncio.Redis.from_url(redis_or_url)
            self._owns = True
        else:
            self._redis, self._owns = redis_or_url, False
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"RedisPendingStore(prefix={self.prefix!r})"

    def _redis_key(self, state: str) -> str:
        return f"{self.prefix}:pending:{_key(state)}"

    async def put(self, pending: PendingLogin) -> None:
        ttl = pending.expires_at - time.time() + _MEMORY
        await self._redis.set(self._redis_key(pending.state), pending.to_json(), px=int(ttl * 1000))

    async def take(self, state: str) -> PendingLogin | Taken:
        # One round trip, atomic: whoever gets the entry leaves "used" behind.
        old = await self._redis.set(self._redis_key(state), _USED, px=int(_MEMORY * 1000), get=True)
        if old is None:
            # Nothing was there: do not leave a marker that calls a foreign state "used".
            await self._redis.delete(self._redis_key(state))
        judged: PendingLogin | Taken = _judge(old)
        return judged

    async def aclose(self) -> None:
        if self._owns:
            await self._redis.aclose()
