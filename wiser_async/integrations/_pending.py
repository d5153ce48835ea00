"""Pending logins between a login and its callback: server-side, one-time, bounded.

A login stores a `PendingLogin` (the account, the PKCE verifier, the
redirect URI, the browser it belongs to) under a digest of its ``state``.
The callback, on any worker, reads it (`PendingStore.find`: nothing
changes), checks the browser and the application's decision, then takes it
once (`PendingStore.take`: atomic; the entry becomes a "used" marker, so a
replay is told apart from a foreign ``state``). The verifier never leaves
the server.

Browsers: each login sets a new cookie; the store maps a digest of it to
the browser's record (a server-side browser id and its pending logins,
oldest first). A login bringing the browser's previous cookie moves that
record to the new cookie, so the browser's other logins stay completable,
and replaces the browser's older login of the same account.

Bounds, whoever calls:

- one pending login per (browser, account), and at most
  `LOGINS_PER_BROWSER` per browser (the oldest goes), for a browser that
  brings its cookie back;
- at most ``max_per_account`` entries of one account, and ``max_pending``
  in the store, used markers and expired entries still kept included:
  beyond either, `PendingStore.start` stores nothing and says so (the login
  route answers 503 with ``Retry-After``). A client that drops its cookie
  is a new browser at every login, so the per-account bound is what keeps
  an app user from crowding out the logins of accounts it may not act for;
- an entry, its used marker and its browser record are kept until the
  login's expiry plus `GRACE` (to answer "expired" or "replayed" rather than
  "unknown"), then leave oldest first, a few at a time: no scan of the store.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from enum import Enum
from typing import Any, Protocol

import attrs

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PER_ACCOUNT",
    "DEFAULT_PENDING_TTL",
    "GRACE",
    "LOGINS_PER_BROWSER",
    "MemoryPendingStore",
    "PendingLogin",
    "PendingStore",
    "StartPlan",
    "Taken",
    "decode_entry",
    "plan_start",
    "record_browser",
    "state_key",
]

DEFAULT_PENDING_TTL = 600.0
# 10,000 logins waiting at once is far beyond onboarding traffic, and costs
# about 11 MB in memory (measured) or 7 MB in Redis.
DEFAULT_MAX_PENDING = 10_000
# A customer consents once; 32 logins of one account waiting at once is a loop or an attack.
DEFAULT_MAX_PER_ACCOUNT = 32
GRACE = 300.0
LOGINS_PER_BROWSER = 16
USED = "used"


class Taken(Enum):
    """Why a store found no usable entry for a ``state``."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@attrs.frozen(kw_only=True)
class PendingLogin:
    """One login between its redirect and its callback (secrets never shown)."""

    account: str
    state: str = attrs.field(repr=False)
    code_verifier: str = attrs.field(repr=False)
    redirect_uri: str
    browser: str = attrs.field(repr=False)
    expires_at: float

    @property
    def keep_until(self) -> float:
        """When the store lets go of this login (its used marker too)."""
        return self.expires_at + GRACE

    def body(self) -> str:
        """The stored form, without the state (the key is its digest) or the browser."""
        return json.dumps(
            {
                "account": self.account,
                "code_verifier": self.code_verifier,
                "redirect_uri": self.redirect_uri,
                "expires_at": self.expires_at,
            }
        )


class PendingStore(Protocol):
    """Where pending logins wait for their callback.

    Cookies are passed as digests (`_session.cookie_digest`), never as values.
    """

    max_pending: int
    max_per_account: int

    async def start(self, login: PendingLogin, *, cookie: str, previous_cookie: str | None) -> bool:
        """Store `login` for the browser now holding `cookie`; False: a bound is reached.

        `previous_cookie` (the browser's earlier cookie, if it brought one)
        names its record: it moves to `cookie`, keeping its browser id and
        its other logins, and its login of the same account is replaced.
        """
        ...

    async def browser(self, cookie: str) -> str | None:
        """The browser id the cookie digest `cookie` belongs to (None: none)."""
        ...

    async def find(self, state: str) -> PendingLogin | Taken:
        """The login of `state`, changing nothing."""
        ...

    async def take(self, state: str) -> PendingLogin | Taken:
        """The login of `state`, once: it is marked used, atomically."""
        ...

    async def count(self) -> int:
        """Entries held now (used markers and expired entries still kept included)."""
        ...

    async def aclose(self) -> None: ...


def state_key(state: str) -> str:
    """The key of a login: the state is a bearer of the login, stored by digest only."""
    return hashlib.sha256(state.encode()).hexdigest()


def decode_entry(raw: str | bytes | None, state: str, *, now: float) -> PendingLogin | Taken:
    """A stored entry (``browser|body``, or the used marker) as a login or a reason."""
    if raw is None:
        return Taken.UNKNOWN
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == USED:
        return Taken.USED
    browser, _, body = text.partition("|")
    data: dict[str, Any] = json.loads(body)
    login = PendingLogin(state=state, browser=browser, **data)
    return Taken.EXPIRED if login.expires_at <= now else login


def record_browser(raw: str | bytes | None) -> str | None:
    """The browser id of a stored browser record."""
    if raw is None:
        return None
    browser = json.loads(raw).get("browser")
    return browser if isinstance(browser, str) else None


@attrs.frozen
class StartPlan:
    """What a login changes: the entry and the record to write, the (account, key)s to drop."""

    entry: str
    record: str
    drop: tuple[tuple[str, str], ...]


def plan_start(login: PendingLogin, key: str, previous_record: str | bytes | None) -> StartPlan:
    """The writes of `PendingStore.start`, for the stores that run them in Python.

    `RedisPendingStore` runs the same steps in a server-side script.
    """
    browser, logins = login.browser, []
    if previous_record is not None:
        record = json.loads(previous_record)
        browser, logins = record["browser"], record["logins"]
    kept = [pair for pair in logins if pair[0] != login.account]
    drop = [(pair[0], pair[1]) for pair in logins if pair[0] == login.account]
    while len(kept) >= LOGINS_PER_BROWSER:
        account, dropped = kept.pop(0)
        drop.append((account, dropped))
    kept.append([login.account, key])
    return StartPlan(
        entry=f"{browser}|{login.body()}",
        record=json.dumps({"browser": browser, "logins": kept}),
        drop=tuple(drop),
    )


def check_bounds(max_pending: int, max_per_account: int) -> None:
    """Refuse bounds a store cannot keep."""
    if max_pending < 1 or max_per_account < 1:
        raise ValueError("max_pending and max_per_account must be at least 1")


class _Expiring:
    """A table whose entries leave in the order they were added, once their time has come.

    Logins share one TTL, so insertion order is expiry order: pruning pops
    from the front and stops at the first live entry. Times are monotonic
    (a wall clock stepped back would stall the pruning).
    """

    def __init__(self) -> None:
        self.items: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        self.per_account: dict[str, int] = {}

    def add(self, key: str, until: float, value: str, account: str = "") -> None:
        if key not in self.items:
            self.per_account[account] = self.per_account.get(account, 0) + 1
        self.items[key] = (until, value, account)

    def remove(self, key: str) -> None:
        found = self.items.pop(key, None)
        if found is not None:
            left = self.per_account[found[2]] - 1
            if left:
                self.per_account[found[2]] = left
            else:
                del self.per_account[found[2]]

    def prune(self, now: float) -> None:
        items = self.items
        while items:
            key, (until, _, _) = next(iter(items.items()))
            if until > now:
                return
            self.remove(key)

    def get(self, key: str, now: float) -> str | None:
        found = self.items.get(key)
        return found[1] if found is not None and found[0] > now else None


def _monotonic(wall: float) -> float:
    """The monotonic time of the wall-clock time `wall`."""
    return time.monotonic() + (wall - time.time())


class MemoryPendingStore:
    """Pending logins in this process only (one worker, tests).

    Args:
        max_pending: The most entries it holds (see the module's bounds).
        max_per_account: The most entries of one account it holds.
    """

    def __init__(
        self,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    ) -> None:
        check_bounds(max_pending, max_per_account)
        self.max_pending = max_pending
        self.max_per_account = max_per_account
        self._entries = _Expiring()
        self._browsers = _Expiring()

    def __repr__(self) -> str:
        return f"MemoryPendingStore(entries={len(self._entries.items)}, max={self.max_pending})"

    def _prune(self) -> float:
        now = time.monotonic()
        self._entries.prune(now)
        self._browsers.prune(now)
        return now

    async def start(self, login: PendingLogin, *, cookie: str, previous_cookie: str | None) -> bool:
        now = self._prune()
        previous = self._browsers.get(previous_cookie, now) if previous_cookie else None
        key = state_key(login.state)
        plan = plan_start(login, key, previous)
        entries = self._entries
        held = [pair for pair in plan.drop if pair[1] in entries.items]
        freed_here = sum(1 for account, _ in held if account == login.account)
        if len(entries.items) - len(held) >= self.max_pending or (
            entries.per_account.get(login.account, 0) - freed_here >= self.max_per_account
        ):
            return False
        for _, dropped in plan.drop:
            entries.remove(dropped)
        if previous_cookie:
            self._browsers.remove(previous_cookie)
        until = _monotonic(login.keep_until)
        entries.add(key, until, plan.entry, login.account)
        self._browsers.add(cookie, until, plan.record)
        return True

    async def browser(self, cookie: str) -> str | None:
        return record_browser(self._browsers.get(cookie, self._prune()))

    async def find(self, state: str) -> PendingLogin | Taken:
        found = self._entries.get(state_key(state), self._prune())
        return decode_entry(found, state, now=time.time())

    async def take(self, state: str) -> PendingLogin | Taken:
        key = state_key(state)
        entry = self._entries.items.get(key) if self._entries.get(key, self._prune()) else None
        found = decode_entry(entry[1] if entry else None, state, now=time.time())
        if entry is not None and isinstance(found, PendingLogin):
            self._entries.add(key, entry[0], USED, entry[2])
        return found

    async def count(self) -> int:
        self._prune()
        return len(self._entries.items)

    async def aclose(self) -> None:
        self._entries.items.clear()
        self._entries.per_account.clear()
        self._browsers.items.clear()
