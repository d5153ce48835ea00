"""The two databases an export writes to, behind one small interface.

SQLite (the standard library's `sqlite3`) by default; PostgreSQL through
psycopg 3 (the ``postgres`` extra), whose ``COPY`` loads the staging tables.
Both run the same statements (`merge`), written with ``:name`` parameters.
The export is a batch job: one connection, one transaction, synchronous
drivers (SQLite has no other; psycopg's sync API is the same COPY).
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from .schema import DIALECTS, Dialect, ExportError, key_index

__all__ = ["Database", "connect", "describe_url"]

_SQLITE_MIN: Final = (3, 35, 0)  # UPDATE ... FROM, RETURNING
_PARAMETER: Final = re.compile(r"(?<![:\w]):([a-z_]+)\b")
_CONNINFO: Final = re.compile(r"\s*\w+\s*=")  # libpq's key=value form
_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# A lock id of the exports' own: one export at a time per PostgreSQL database.
_PG_LOCK: Final = 0x57495345


class Database(ABC):
    """A connection an export runs in: one transaction, begun by `begin`."""

    dialect: Dialect
    url: str  # without a password

    @abstractmethod
    def begin(self) -> None:
        """Begin the export's transaction (taking its lock)."""

    @abstractmethod
    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Run a statement; the rows it changed."""

    @abstractmethod
    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query; its rows."""

    @abstractmethod
    def load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Append rows to a staging table, in bulk."""

    @abstractmethod
    def tables(self, names: Sequence[str]) -> set[str]:
        """Which of these tables exist."""

    @abstractmethod
    def analyze(self, tables: Sequence[str]) -> None:
        """Let the planner know the staging tables' sizes."""

    @abstractmethod
    def _duplicate(self, error: Exception) -> bool:
        """Whether `error` is a unique index refusing a duplicate."""

    def build_key(self, table: str) -> bool:
        """Build a table's unique index, dropped for a first load; False on a duplicate.

        One sort of the whole table: several times faster than keeping the
        index up to date row by row. On a duplicate (account, id) the table
        is left as it was, without its index.
        """
        self.execute("SAVEPOINT build_key")
        try:
            self.execute(key_index(table))
        except Exception as exc:
            if not self._duplicate(exc):
                raise
            self.execute("ROLLBACK TO SAVEPOINT build_key")
            return False
        self.execute("RELEASE SAVEPOINT build_key")
        return True

    @abstractmethod
    def commit(self) -> None:
        """Commit the export."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (an uncommitted export is rolled back)."""


class _Sqlite(Database):
    def __init__(self, path: str, url: str) -> None:
        if sqlite3.sqlite_version_info < _SQLITE_MIN:
            raise ExportError(
                f"SQLite {sqlite3.sqlite_version} is too old for an export (3.35 or later needed)"
            )
        self.dialect = DIALECTS["sqlite"]
        self.url = url
        self._connection = sqlite3.connect(path, isolation_level=None)
        # 16 MB of cache for the tables, 8 MB for the staging ones: a load's
        # working set, within the export's memory bound.
        self._connection.execute("PRAGMA cache_size = -16384")
        self._connection.execute("PRAGMA temp.cache_size = -8192")

    def begin(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")  # the write lock now: one export at a time

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return self._connection.execute(sql, params or {}).rowcount

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, params or {}).fetchall()

    def load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        self._connection.executemany(insert, rows)

    def tables(self, names: Sequence[str]) -> set[str]:
        marks = ", ".join("?" * len(names))
        query = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"  # noqa: S608
        found = self._connection.execute(query, names)
        return {str(row[0]) for row in found}

    def analyze(self, tables: Sequence[str]) -> None:
        del tables  # SQLite drives the staging tables' joins by the tables' primary keys

    def _duplicate(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError)

    def commit(self) -> None:
        self._connection.execute("COMMIT")

    def close(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")
        self._connection.close()


class _Postgres(Database):
    def __init__(self, conninfo: str, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError(
                "exporting to PostgreSQL needs psycopg: pip install 'wiser-async[postgres]'"
            ) from None
        self.dialect = DIALECTS["postgresql"]
        self.url = url
        self._connection = psycopg.connect(conninfo, autocommit=False)

    def begin(self) -> None:
        # Times go in and out as UTC text, the form SQLite holds too.
        self._connection.execute("SET TIME ZONE 'UTC'")
        self._connection.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        self._connection.execute("SET LOCAL work_mem = '64MB'")

    def _sql(self, sql: str) -> str:
        return _PARAMETER.sub(r"%(\1)s", sql)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return self._connection.execute(self._sql(sql), params).rowcount

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self._connection.execute(self._sql(sql), params).fetchall()

    def load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self._connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def tables(self, names: Sequence[str]) -> set[str]:
        found = self._connection.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            (list(names),),
        )
        return {str(row[0]) for row in found}

    def analyze(self, tables: Sequence[str]) -> None:
        for table in tables:
            self._connection.execute(f"ANALYZE {table}")

    def _duplicate(self, error: Exception) -> bool:
        return type(error).__name__ == "UniqueViolation"

    def commit(self) -> None:
        self._connection.commit()

    def close(self) -> None:
        self._connection.close()


def describe_url(url: str) -> str:
    """The database's URL as shown: a PostgreSQL password masked."""
    if _CONNINFO.match(url):
        return _PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres") and parts.password is not None:
        user = f"{parts.username}:***@" if parts.username else ":***@"
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{user}{host}").geturl()
    if parts.scheme.startswith("postgres") and "password" in url.lower():
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path} (options hidden)"
    return url


def connect(url: str) -> Database:
    """A connection to ``sqlite:///PATH``, a plain path (SQLite), ``postgresql://...`` or a
    libpq ``key=value`` string (PostgreSQL).

    Raises:
        ExportError: an unknown scheme.
        ImportError: PostgreSQL without psycopg installed.
    """
    shown = describe_url(url)
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres") or _CONNINFO.match(url):
        return _Postgres(url, shown)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path:
            raise ExportError(f"{shown}: a SQLite URL is sqlite:///PATH (three slashes)")
        # sqlite:///relative.db, sqlite:////absolute.db (as SQLAlchemy reads them)
        return _Sqlite(unquote(parts.path.removeprefix("/")), shown)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (C:\... on Windows)
        return _Sqlite(str(Path(url)), shown)
    raise ExportError(f"{shown}: not a database URL (sqlite:///PATH or postgresql://...)")
