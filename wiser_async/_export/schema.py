"""The tables an export writes, for SQLite and PostgreSQL alike, and its schema version.

Each resource table holds one row per account and id: the contract's fields
as typed columns (camelCase names in snake_case), the parents the crawl found
the item under, ``extra`` (the fields the contract does not name, and any
value not of its column's type, as a JSON object; NULL when there are none),
and four times, all the crawl's (never the export's clock): ``first_seen``,
``last_seen``, ``changed_at`` (the last crawl whose data differed from the one
before; NULL until then) and ``removed_at`` (the crawl that found it gone;
NULL while it is there).
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from ..errors import ExportError

__all__ = [
    "DIALECTS",
    "RESOURCES",
    "SCHEMA_VERSION",
    "Column",
    "Dialect",
    "ExportError",
    "Resource",
    "create_statements",
    "key_index",
]

SCHEMA_VERSION: Final = 1
"""The version of the tables below, recorded in the ``meta`` table of every database."""

ColumnType = Literal["text", "time", "int", "float"]


@attrs.frozen
class Column:
    """A data column: its name, type, and the wire field it holds (None: a parent id)."""

    name: str
    type: ColumnType
    wire: str | None = None


@attrs.frozen
class Resource:
    """A table of items of one kind (``location``, ``site``, ``room``, ``device``)."""

    kind: str
    table: str
    parents: tuple[str, ...]  # the record's parent ids, as columns, in order
    columns: tuple[Column, ...]  # the data columns, parents first
    # Columns whose change does not make a row changed (a heartbeat, new every crawl).
    volatile: tuple[str, ...] = ()


def _text(*names: str) -> tuple[Column, ...]:
    return tuple(Column(_snake(name), "text", name) for name in names)


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)


_PARENT_WIRE = {"location_id": "locationId", "site_id": "siteId", "room_id": "roomId"}


def _parents(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name, "text") for name in names)


RESOURCES: Final = (
    Resource(
        "location",
        "locations",
        (),
        (
            *_text("name"),
            Column("address_street", "text", "address.street"),
            Column("address_city", "text", "address.city"),
            Column("address_postal_code", "text", "address.postalCode"),
            Column("address_country", "text", "address.country"),
            *_text("timezone"),
            Column("created_at", "time", "createdAt"),
            Column("updated_at", "time", "updatedAt"),
        ),
    ),
    Resource(
        "site",
        "sites",
        ("location_id",),
        (
            *_parents("location_id"),
            *_text("name", "type", "timezone"),
            Column("created_at", "time", "createdAt"),
            Column("updated_at", "time", "updatedAt"),
        ),
    ),
    Resource(
        "room",
        "rooms",
        ("location_id", "site_id"),
        (
            *_parents("location_id", "site_id"),
            *_text("name", "type"),
            Column("floor", "int", "floor"),
        ),
    ),
    Resource(
        "device",
        "devices",
        ("location_id", "site_id", "room_id"),
        (
            *_parents("location_id", "site_id", "room_id"),
            *_text(
                "name",
                "category",
                "model",
                "commercialReference",
                "serialNumber",
                "firmwareVersion",
                "status",
            ),
            Column("last_seen_at", "time", "lastSeenAt"),
            Column("rated_current_a", "float", "ratedCurrentA"),
            Column("phases", "int", "phases"),
            *_text("usage"),
        ),
        volatile=("last_seen_at",),
    ),
)
"""The four resource tables, top down."""

PARENT_WIRE: Final = _PARENT_WIRE
"""A parent id column -> the wire field of the item that repeats it."""


@attrs.frozen
class Dialect:
    """What differs between the two databases: type names and a few spellings."""

    name: str
    types: dict[str, str]
    identity: str  # the exports table's id column
    distinct: str  # null-safe "differs"
    temporary: str  # CREATE ... of a staging table


DIALECTS: Final = {
    "sqlite": Dialect(
        "sqlite",
        {
            "text": "TEXT",
            "key": "TEXT",
            "time": "TEXT",
            "int": "INTEGER",
            "float": "REAL",
            "bool": "INTEGER",
        },
        "id INTEGER PRIMARY KEY",
        "IS NOT",
        "CREATE TEMP TABLE",
    ),
    "postgresql": Dialect(
        "postgresql",
        {
            "text": "text",
            # Ids compare byte by byte, as SQLite's do: an index of them is built
            # by memcmp, not by the locale's collation.
            "key": 'text COLLATE "C"',
            "time": "timestamptz",
            "int": "bigint",
            "float": "double precision",
            "bool": "boolean",
        },
        "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "IS DISTINCT FROM",
        "CREATE TEMP TABLE",
    ),
}

TIMES: Final = ("first_seen", "last_seen", "changed_at", "removed_at")


def key_index(table: str) -> str:
    """The unique index of a resource table: one row per account and id.

    An index rather than a primary key, so that a first export can drop it,
    load the table and build it again in one sort, on both databases.
    """
    return f"CREATE UNIQUE INDEX {table}_key ON {table} (account, id)"


def create_statements(dialect: Dialect) -> list[str]:
    """The DDL of the whole schema (the tables, their indexes, the version row)."""
    types = dialect.types
    statements = [
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        f"INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",  # noqa: S608
    ]
    for resource in RESOURCES:
        columns = [f"account {types['key']} NOT NULL", f"id {types['key']} NOT NULL"]
        columns += [
            f"{column.name} {types['key' if column.wire is None else column.type]}"
            + (" NOT NULL" if column.wire is None and column.name != "room_id" else "")
            for column in resource.columns
        ]
        columns.append(f"extra {types['text']}")
        columns += [
            f"{name} {types['time']}" + (" NOT NULL" if name in TIMES[:2] else "") for name in TIMES
        ]
        statements.append(f"CREATE TABLE {resource.table} ({', '.join(columns)})")
        statements.append(key_index(resource.table))
    statements.append(
        f"CREATE TABLE exports ({dialect.identity}, source {types['text']} NOT NULL, "
        f"crawled_at {types['time']} NOT NULL, exported_at {types['time']} NOT NULL, "
        f"complete {types['bool']} NOT NULL, counts {types['text']} NOT NULL, "
        f"accounts {types['text']} NOT NULL, unreconciled {types['text']} NOT NULL)"
    )
    return statements
