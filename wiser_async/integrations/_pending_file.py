"""`FilePendingStore`: pending logins in one SQLite file that every worker of a machine shares.

SQLite (the standard library's) does what a directory of files cannot do
cheaply: an atomic take, a count kept by triggers in the same transaction
(no directory listing per login), and pruning by an index on the expiry
(only what expired since the last prune, at most once per `PRUNE_INTERVAL`).
Each store uses one connection, one thread at a time (its own limiter:
the threads the file token store uses stay free).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from ..errors import InsecurePermissions, StoreUnavailable
from ._pending import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PER_ACCOUNT,
    USED,
    PendingLogin,
    Taken,
    check_bounds,
    decode_entry,
    plan_start,
    record_browser,
    state_key,
)

__all__ = ["PRUNE_INTERVAL", "FilePendingStore"]

PRUNE_INTERVAL = 10.0
_FILE = "pending.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, keep_until REAL NOT NULL, body TEXT NOT NULL, account TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_keep_until ON entries (keep_until);
CREATE INDEX IF NOT EXISTS entries_account ON entries (account, keep_until);
CREATE TABLE IF NOT EXISTS browsers (
    key TEXT PRIMARY KEY, keep_until REAL NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS browsers_keep_until ON browsers (keep_until);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('entries', 0), ('pruned_at', 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'entries'; END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
    BEGIN UPDATE counters SET value = value - 1 WHERE name = 'entries'; END;
"""
T = TypeVar("T")


def _private(status: os.stat_result, path: Path) -> None:
    """Refuse a directory or file another user owns or may open."""
    if status.st_uid != os.geteuid() or status.st_mode & 0o077:
        raise InsecurePermissions(
            f"the pending-login store {path} must belong to this user with no access for "
            f"others (mode {status.st_mode & 0o777:o}); fix it or choose another directory"
        )


class FilePendingStore:
    """Pending logins in ``DIRECTORY/pending.sqlite3`` (mode 0600; the directory 0700).

    Every process of one machine may share it. Writes survive a crash of the
    process, not always of the machine (``synchronous=NORMAL``): a login lost
    with the machine is started again.

    The directory and the file must belong to this process's user and be
    closed to everyone else (`InsecurePermissions` otherwise): whoever can
    write them can read PKCE verifiers and bind their own browser to
    another's logins.

    Args:
        directory: Where the database lives (created if missing).
        max_pending: The most entries it holds (see `MemoryPendingStore`).
        max_per_account: The most entries of one account it holds.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    ) -> None:
        check_bounds(max_pending, max_per_account)
        self.directory = Path(directory)
        self.max_pending = max_pending
        self.max_per_account = max_per_account
        self._connection: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"FilePendingStore({str(self.directory)!r}, max_pending={self.max_pending})"

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(self.directory.stat(), self.directory)
            path = self.directory / _FILE
            # Created 0600 before SQLite opens it (never through a link); its -wal
            # and -shm files copy the mode.
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                _private(os.fstat(descriptor), path)
            finally:
                os.close(descriptor)
            connection = sqlite3.connect(
                path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            with connection:
                connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        def run() -> T:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                # A failed COMMIT leaves the transaction open, and its lock held.
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result

        try:
            return await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except (sqlite3.Error, OSError) as error:
            raise StoreUnavailable(
                f"the pending-login store (SQLite) failed ({type(error).__name__})"
            ) from None

    @staticmethod
    def _prune(connection: sqlite3.Connection, now: float) -> None:
        row = connection.execute("SELECT value FROM counters WHERE name = 'pruned_at'").fetchone()
        if now - row[0] < PRUNE_INTERVAL:
            return
        connection.execute("DELETE FROM entries WHERE keep_until <= ?", (now,))
        connection.execute("DELETE FROM browsers WHERE keep_until <= ?", (now,))
        connection.execute("UPDATE counters SET value = ? WHERE name = 'pruned_at'", (now,))

    @staticmethod
    def _get(connection: sqlite3.Connection, table: str, key: str, now: float) -> str | None:
        row = connection.execute(
            f"SELECT body FROM {table} WHERE key = ? AND keep_until > ?",  # noqa: S608 - our names
            (key, now),
        ).fetchone()
        return None if row is None else str(row[0])

    async def start(self, login: PendingLogin, *, cookie: str, previous_cookie: str | None) -> bool:
        key = state_key(login.state)

        def start(connection: sqlite3.Connection) -> bool:
            now = time.time()
            self._prune(connection, now)
            previous = (
                self._get(connection, "browsers", previous_cookie, now) if previous_cookie else None
            )
            plan = plan_start(login, key, previous)
            held = connection.execute("SELECT value FROM counters WHERE name = 'entries'")
            count = int(held.fetchone()[0])
            of_account = connection.execute(
                "SELECT count(*) FROM entries WHERE account = ? AND keep_until > ?",
                (login.account, now),
            ).fetchone()[0]
            present = [
                account
                for account, dropped in plan.drop
                if connection.execute("SELECT 1 FROM entries WHERE key = ?", (dropped,)).fetchone()
            ]
            freed_here = present.count(login.account)
            if (
                count - len(present) >= self.max_pending
                or of_account - freed_here >= self.max_per_account
            ):
                return False
            connection.executemany(
                "DELETE FROM entries WHERE key = ?", [(dropped,) for _, dropped in plan.drop]
            )
            if previous_cookie:
                connection.execute("DELETE FROM browsers WHERE key = ?", (previous_cookie,))
            connection.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?)",
                (key, login.keep_until, plan.entry, login.account),
            )
            connection.execute(
                "INSERT OR REPLACE INTO browsers VALUES (?, ?, ?)",
                (cookie, login.keep_until, plan.record),
            )
            return True

        return await self._run(start)

    async def browser(self, cookie: str) -> str | None:
        raw = await self._run(
            lambda connection: self._get(connection, "browsers", cookie, time.time()), write=False
        )
        return record_browser(raw)

    async def find(self, state: str) -> PendingLogin | Taken:
        now = time.time()
        key = state_key(state)
        raw = await self._run(
            lambda connection: self._get(connection, "entries", key, now), write=False
        )
        return decode_entry(raw, state, now=now)

    async def take(self, state: str) -> PendingLogin | Taken:
        key = state_key(state)

        def take(connection: sqlite3.Connection) -> PendingLogin | Taken:
            now = time.time()
            found = decode_entry(self._get(connection, "entries", key, now), state, now=now)
            if isinstance(found, PendingLogin):
                connection.execute("UPDATE entries SET body = ? WHERE key = ?", (USED, key))
            return found

        return await self._run(take)

    async def count(self) -> int:
        def count(connection: sqlite3.Connection) -> int:
            self._prune(connection, time.time())
            row = connection.execute("SELECT value FROM counters WHERE name = 'entries'")
            return int(row.fetchone()[0])

        return await self._run(count)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await anyio.to_thread.run_sync(connection.close, limiter=self._limiter)
