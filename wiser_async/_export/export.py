"""`export_snapshot`: a crawl output into a database's tables, with history and honest deletions.

The output is streamed into staging tables in batches (memory bounded
whatever its size), then merged table by table in set-based statements
(`merge`), all in one transaction: a failed export leaves the database as it
was. Exporting the same output twice changes nothing but the ``exports``
table: every time written is the crawl's, which the output records.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from . import merge
from .databases import Database, connect, describe_url
from .plan import AccountOutcome, ExportResult, TableCounts, UnreconciledPart, unread_parts
from .rows import RowMaker, row_makers
from .schema import RESOURCES, SCHEMA_VERSION, ExportError, create_statements, key_index
from .source import Source, format_time, open_source

__all__ = ["export_snapshot"]

BATCH: Final = 20_000
"""Rows held before they are loaded into a staging table."""
_TABLES: Final = {resource.kind: resource.table for resource in RESOURCES}
_UNIT_PARTS: Final = {
    "account": ("locations",),
    "location": ("sites",),
    "site": ("rooms", "devices"),
}


def export_snapshot(
    output: str | os.PathLike[str], *, to: str, crawled_at: datetime | None = None
) -> ExportResult:
    """Export a crawl output (JSONL or JSON) into a SQLite or PostgreSQL database.

    Tables ``locations``, ``sites``, ``rooms`` and ``devices`` hold one row
    per account and id, ``exports`` one row per export; the schema is created
    on first use and its version checked every time. A row is marked removed
    only when the crawl read its collection whole; the parts it did not are
    left as they were and named in the result (``complete`` is False).

    A synchronous function: an export is a batch job in one transaction, and
    SQLite has no other driver. From async code, run it in a worker thread
    (``await anyio.to_thread.run_sync(functools.partial(export_snapshot, ...))``).

    Args:
        output: A crawl output, with its checkpoint beside it for a JSONL one.
        to: ``sqlite:///PATH`` (or a plain path) or ``postgresql://...``
            (a libpq URL or conninfo; needs the ``postgres`` extra).
        crawled_at: When the crawl ran (an aware datetime); by default when it
            last wrote the output (the file's modification time).

    Returns:
        What the export did (`ExportResult`).

    Raises:
        ExportError: another schema version, not a crawl output, a crawl
            older than one the database holds already, or a database error.
        OSError: the output cannot be read.
        ImportError: PostgreSQL without psycopg.
    """
    source = open_source(output, crawled_at)
    with _database_errors(describe_url(to)):
        database = connect(to)
        try:
            database.begin()
            _prepare_schema(database)
            return _Export(database, source).run()
        finally:
            database.close()


@contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """A driver's error as an `ExportError` naming the database (`url`: its password masked)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise ExportError(f"{url}: {' '.join(str(exc).split())}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            raise ExportError(f"{url}: {' '.join(str(exc).split())}") from None
        raise


def _prepare_schema(database: Database) -> None:
    ours = ["meta", "exports", *_TABLES.values()]
    found = database.tables(ours)
    if "meta" in found:
        rows = database.rows("SELECT value FROM meta WHERE key = 'schema_version'")
        version = rows[0][0] if rows else "none"
        if str(version) != str(SCHEMA_VERSION):
            raise ExportError(
                f"{database.url} holds export schema version {version}; this wiser-async"
                f" writes version {SCHEMA_VERSION}: export to another database"
            )
        return
    if found:
        raise ExportError(
            f"{database.url} has tables named {', '.join(sorted(found))} but no export schema"
            " version: not a database an export made"
        )
    for statement in create_statements(database.dialect):
        database.execute(statement)


@attrs.define
class _Export:
    database: Database
    source: Source
    accounts: dict[str, AccountOutcome] = attrs.Factory(dict)
    unreconciled: dict[UnreconciledPart, None] = attrs.Factory(dict)
    # Tables empty when the export began: loaded directly, their index built after.
    direct: set[str] = attrs.Factory(set)

    def run(self) -> ExportResult:
        database, source = self.database, self.source
        for statement in merge.staging_statements(database.dialect):
            database.execute(statement)
        for table in _TABLES.values():
            if not database.rows(f"SELECT 1 FROM {table} LIMIT 1"):  # noqa: S608
                database.execute(f"DROP INDEX {table}_key")
                self.direct.add(table)
        self._load_records()
        self._load_parts()
        params = {"t": source.crawled_at}
        # Tables empty before this export hold only its rows: nothing newer, nothing gone.
        held = [table for table in _TABLES.values() if table not in self.direct]
        newer = database.rows(merge.newer_rows(held), params)[0][0] if held else None
        if newer is not None:
            raise ExportError(
                f"{source.path} was crawled at {source.crawled_at} UTC, before a crawl this"
                f" database holds ({_text_time(newer)} UTC): export crawls in the order they ran"
            )
        counts = {resource.table: self._merge(resource, params) for resource in RESOURCES}
        for resource in RESOURCES:
            if resource.table in self.direct:
                continue
            database.analyze(["settled"])
            for what, statement in merge.removal_statements(resource):
                changed = database.execute(statement, params)
                if what == "removed":
                    counts[resource.table] = attrs.evolve(counts[resource.table], removed=changed)
        return self._record(counts)

    def _load_records(self) -> None:
        times = (self.source.crawled_at, self.source.crawled_at)
        # Rows loaded straight into their (empty) table carry first_seen and last_seen.
        makers = row_makers({k: times for k, table in _TABLES.items() if table in self.direct})
        batches: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in makers}
        targets = {
            kind: table if table in self.direct else f"stage_{table}"
            for kind, table in _TABLES.items()
        }
        columns = {r.kind: merge.stage_columns(r) for r in RESOURCES}
        for kind, table in _TABLES.items():
            if table in self.direct:
                columns[kind] = [*columns[kind], "first_seen", "last_seen"]
        tally: dict[tuple[str, str], int] = {}
        self._read(makers, batches, targets, columns, tally)
        for (account, kind), count in tally.items():
            self._account(account).items[kind] = count
        self.database.analyze(list(targets.values()))

    def _read(
        self,
        makers: dict[str, RowMaker],
        batches: dict[str, list[tuple[Any, ...]]],
        targets: dict[str, str],
        columns: dict[str, list[str]],
        tally: dict[tuple[str, str], int],
    ) -> None:
        for number, record in self.source.records():
            kind = str(record.get("type"))
            maker = makers.get(kind)
            if maker is None:
                if kind == "failure":
                    self._failure(record)
                    continue
                raise ExportError(f"{self.source.path}:{number}: not a crawl record")
            try:
                row = maker(record, number)
            except ExportError as exc:
                raise ExportError(f"{self.source.path}:{exc}") from None
            key = (row[0], kind)
            tally[key] = tally.get(key, 0) + 1
            batch = batches[kind]
            batch.append(row)
            if len(batch) >= BATCH:
                self.database.load(targets[kind], columns[kind], batch)
                batch.clear()
        for kind, batch in batches.items():
            if batch:
                self.database.load(targets[kind], columns[kind], batch)

    def _account(self, account: str) -> AccountOutcome:
        outcome = self.accounts.get(account)
        if outcome is None:
            outcome = self.accounts[account] = AccountOutcome(items=dict.fromkeys(_TABLES, 0))
        return outcome

    def _failure(self, record: dict[str, Any]) -> None:
        outcome = self._account(str(record.get("account", "")))
        outcome.failures += 1
        outcome.complete = False
        for part in unread_parts(record, self.source.devices_by):
            self.unreconciled[part] = None

    def _load_parts(self) -> None:
        database, source = self.database, self.source
        for account in source.accounts:
            self._account(account)
        accounts = [(account,) for account in self.accounts]
        database.load("export_accounts", ["account"], accounts)
        part_columns = ["kind", "account", "id"]
        locations, sites = (
            table if table in self.direct else f"stage_{table}" for table in ("locations", "sites")
        )
        target = "parts_read" if source.checkpoint is None else "parts_expected"
        for statement in merge.inferred_parts(target, locations, sites):
            database.execute(statement)
        if source.checkpoint is not None:
            database.load(
                "parts_expected", part_columns, [("locations", a, "") for a in source.accounts]
            )
            batch: list[tuple[Any, ...]] = []
            for kind, account, unit_id in source.units():
                batch.extend((part, account, unit_id) for part in _UNIT_PARTS.get(kind, ()))
                if len(batch) >= BATCH:
                    database.load("parts_read", part_columns, batch)
                    batch.clear()
            database.load("parts_read", part_columns, batch)
            for kind, account, parent in database.rows(merge.UNFINISHED):
                self.unreconciled[UnreconciledPart(account, kind, parent, "unfinished")] = None
                self._account(account).complete = False
        unread = [(p.collection, p.account, p.parent_id) for p in self.unreconciled]
        database.load("parts_unread", part_columns, unread)
        database.analyze(["parts_read", "parts_unread", "parts_expected"])
        database.execute(merge.SETTLE)

    def _merge(self, resource: Any, params: dict[str, Any]) -> TableCounts:
        database, table = self.database, resource.table
        if table in self.direct:
            seen = database.rows(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608
            if database.build_key(table):
                return TableCounts(seen=int(seen), added=int(seen))
            # An (account, id) twice in the output: merged as into a table with rows.
            for statement in merge.restage(resource):
                database.execute(statement)
            database.execute(key_index(table))
        statements = merge.merge_statements(database.dialect, resource)
        done = {name: database.execute(sql, params) for name, sql in statements.items()}
        seen = database.rows(f"SELECT count(*) FROM stage_{table}")[0][0]  # noqa: S608
        return TableCounts(
            seen=int(seen),
            added=done["added"],
            changed=done["changed"],
            restored=done["restored"],
        )

    def _record(self, counts: dict[str, TableCounts]) -> ExportResult:
        database, source = self.database, self.source
        unreconciled = sorted(
            self.unreconciled, key=lambda p: (p.account, p.collection, p.parent_id, p.reason)
        )
        row: dict[str, Any] = {
            "source": str(source.path.resolve()),
            "t": source.crawled_at,
            "exported_at": format_time(datetime.now(UTC)),
            "complete": not unreconciled,
            "counts": json.dumps({table: attrs.asdict(c) for table, c in counts.items()}),
            "accounts": json.dumps(
                {name: attrs.asdict(o) for name, o in sorted(self.accounts.items())}
            ),
            "unreconciled": json.dumps([attrs.asdict(part) for part in unreconciled]),
        }
        if database.dialect.name == "sqlite":
            row["complete"] = int(row["complete"])
        export_id: int = database.rows(
            "INSERT INTO exports (source, crawled_at, exported_at, complete, counts, accounts,"
            " unreconciled) VALUES (:source, :t, :exported_at, :complete, :counts, :accounts,"
            " :unreconciled) RETURNING id",
            row,
        )[0][0]
        database.commit()
        return ExportResult(
            export_id=export_id,
            source=str(source.path),
            database=database.url,
            crawled_at=source.crawled_at,
            schema_version=SCHEMA_VERSION,
            counts=counts,
            accounts=dict(sorted(self.accounts.items())),
            unreconciled=unreconciled,
        )


def _text_time(value: Any) -> str:
    return format_time(value) if isinstance(value, datetime) else str(value)
