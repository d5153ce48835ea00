"""What this process knows of one account: its token, when to look again, a token not saved yet."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Hashable

import anyio
import attrs

from token_stores import Token

__all__ = [
    "MAX_LEEWAY_FRACTION",
    "SAVE_RETRY_FIRST",
    "UNKNOWN",
    "Account",
    "Unsaved",
    "refresh_time",
]

# A refresh starts at most this fraction of a token's lifetime before expiry,
# whatever the leeway: a 60 s leeway on a 2 s token would refresh on every call.
MAX_LEEWAY_FRACTION = 0.25
# The first pause before saving again a token the store could not take (seconds).
SAVE_RETRY_FIRST = 1.0

# The marker when the store could not tell: never equal to a real one.
UNKNOWN: Hashable = object()


@attrs.define(eq=False)
class Unsaved:
    """A token only this process holds: the store could not take it yet."""

    token: Token
    # What the store held before (compare-and-set); None: save unconditionally.
    expected: Token | None
    conditional: bool
    retry_at: float
    wait: float = SAVE_RETRY_FIRST


@attrs.define(eq=False)
class Account:
    """What this process knows of one account."""

    flight: anyio.Lock
    token: Token | None = None
    # Wall-clock times: when the token is due for a refresh; when to look at
    # the store's change marker again. `fresh_until` is the earliest of those
    # (and of a pending save's retry), so the hot path makes one comparison.
    refresh_at: float = -math.inf
    check_at: float = -math.inf
    fresh_until: float = -math.inf
    marker: Hashable = None
    unsaved: Unsaved | None = None
    # Fingerprint of a token whose refresh token the server refused: not sent again.
    dead: str | None = None

    def update_fresh_until(self) -> None:
        """Set `fresh_until` from the refresh time, the next store check and a pending save."""
        until = min(self.refresh_at, self.check_at)
        if self.unsaved is not None:
            until = min(until, self.unsaved.retry_at)
        self.fresh_until = until if self.token is not None else -math.inf

    def drop(self) -> None:
        """Forget the token (and any unsaved one): the next use goes to the store."""
        self.token = None
        self.unsaved = None
        self.fresh_until = self.refresh_at = -math.inf

    def usable(self, rejected: Token | None) -> bool:
        """Whether the token is not due for a refresh and is not `rejected`."""
        token = self.token
        if token is None or time.time() >= self.refresh_at:
            return False
        return rejected is None or token.fingerprint != rejected.fingerprint


def refresh_time(token: Token, leeway: float, leeway_jitter: float) -> float:
    """When `token` is due for a refresh: `leeway` (capped, plus jitter) before it expires."""
    if token.expires_at is None:
        # No expiry known: use it until the API answers 401.
        return math.inf
    lifetime = token.lifetime
    if lifetime is not None:
        leeway = min(leeway, lifetime * MAX_LEEWAY_FRACTION)
    leeway *= 1.0 + leeway_jitter * random.random()
    return token.expires_at - leeway
