"""The set-based statements of an export, for a dialect: staging tables, merge, removal.

Each crawl's rows are bulk-loaded into staging tables (``stage_devices``...),
then each table is merged in a few statements that each touch only the rows
they change: restored rows, changed rows, rows only seen again, new rows.
Removal goes top down, each level restricted to the collections settled:
read whole by this crawl, or under a parent that is gone (a site missing
from a location read whole takes its rooms and devices with it).

Statements use ``:name`` parameters; the PostgreSQL backend rewrites them.
"""

from __future__ import annotations

from typing import Final

from .schema import RESOURCES, Dialect, Resource

__all__ = [
    "SETTLE",
    "UNFINISHED",
    "inferred_parts",
    "merge_statements",
    "newer_rows",
    "removal_statements",
    "restage",
    "stage_columns",
    "staging_statements",
]

# The part a table's rows hang from: (part kind, the row's column naming its parent).
_SETTLED_BY: Final = {
    "locations": ("locations", None),
    "sites": ("sites", "location_id"),
    "rooms": ("rooms", "site_id"),
    "devices": ("devices", "site_id"),
}
# The parts a gone row settles below it (its own id as their parent).
_SETTLES: Final = {"locations": ("sites",), "sites": ("rooms", "devices")}


def stage_columns(resource: Resource) -> list[str]:
    """The staging table's columns, in the order of `rows.RowMaker` rows: the ids, the
    parents, text columns, the other typed columns, nested ones (an address), ``extra``."""
    columns = [column for column in resource.columns if column.wire is not None]
    flat = [column for column in columns if "." not in column.wire]  # type: ignore[operator]
    return [
        "account",
        "id",
        *resource.parents,
        *(column.name for column in flat if column.type == "text"),
        *(column.name for column in flat if column.type != "text"),
        *(column.name for column in columns if column not in flat),
        "extra",
    ]


def staging_statements(dialect: Dialect) -> list[str]:
    """CREATE the staging tables (dropped with the transaction or the connection)."""
    types = dialect.types
    suffix = " ON COMMIT DROP" if dialect.name == "postgresql" else ""
    statements = []
    for resource in RESOURCES:
        columns = [f"account {types['key']}", f"id {types['key']}"]
        columns += [
            f"{column.name} {types['key' if column.wire is None else column.type]}"
            for column in resource.columns
        ]
        columns.append(f"extra {types['text']}")
        statements.append(
            f"{dialect.temporary} stage_{resource.table} ({', '.join(columns)}){suffix}"
        )
    text = types["key"]
    for name in ("parts_read", "parts_unread", "parts_expected"):
        statements.append(
            f"{dialect.temporary} {name} (kind {text}, account {text}, id {text}){suffix}"
        )
    statements.append(
        f"{dialect.temporary} settled (kind {text}, account {text}, id {text},"
        f" PRIMARY KEY (kind, account, id)){suffix}"
    )
    statements.append(f"{dialect.temporary} export_accounts (account {text} PRIMARY KEY){suffix}")
    return statements


def merge_statements(dialect: Dialect, resource: Resource) -> dict[str, str]:
    """restored, changed, seen and added: the merge of one table, in that order.

    ``changed`` compares every data column but the volatile ones (a device's
    ``last_seen_at``), which ``seen`` brings up to date without making the row
    changed.
    """
    table, stage = resource.table, f"stage_{resource.table}"
    match = f"{table}.account = s.account AND {table}.id = s.id"
    data = [column.name for column in resource.columns] + ["extra"]
    compared = [name for name in data if name not in resource.volatile]
    differs = " OR ".join(f"{table}.{name} {dialect.distinct} s.{name}" for name in compared)
    assign = ", ".join(f"{name} = s.{name}" for name in data)
    volatile = "".join(f", {name} = s.{name}" for name in resource.volatile)
    volatile_differs = "".join(
        f" OR {table}.{name} {dialect.distinct} s.{name}" for name in resource.volatile
    )
    names = ", ".join(["account", "id", *data])
    return {
        "restored": f"UPDATE {table} SET removed_at = NULL, last_seen = :t FROM {stage} s"  # noqa: S608
        f" WHERE {match} AND {table}.removed_at IS NOT NULL",
        "changed": f"UPDATE {table} SET {assign}, changed_at = :t, last_seen = :t"  # noqa: S608
        f" FROM {stage} s WHERE {match} AND ({differs})",
        "seen": f"UPDATE {table} SET last_seen = :t{volatile} FROM {stage} s"  # noqa: S608
        f" WHERE {match} AND ({table}.last_seen {dialect.distinct} :t{volatile_differs})",
        "added": f"INSERT INTO {table} ({names}, first_seen, last_seen)"  # noqa: S608
        f" SELECT {names}, :t, :t FROM {stage} WHERE true ON CONFLICT (account, id) DO NOTHING",
    }


def removal_statements(resource: Resource) -> list[tuple[str, str]]:
    """(what, statement): mark the table's unseen rows under settled parts removed, then
    settle the parts below the rows that are gone."""
    table = resource.table
    kind, parent = _SETTLED_BY[table]
    parent_id = f"{table}.{parent}" if parent else "''"
    statements = [
        (
            "removed",
            f"UPDATE {table} SET removed_at = :t WHERE removed_at IS NULL AND last_seen < :t"  # noqa: S608
            f" AND EXISTS (SELECT 1 FROM settled p WHERE p.kind = '{kind}'"
            f" AND p.account = {table}.account AND p.id = {parent_id})",
        )
    ]
    for below in _SETTLES.get(table, ()):
        statements.append(
            (
                "settle",
                f"INSERT INTO settled (kind, account, id) SELECT '{below}', account, id"  # noqa: S608
                f" FROM {table} WHERE removed_at IS NOT NULL AND last_seen < :t"
                f" AND EXISTS (SELECT 1 FROM settled p WHERE p.kind = '{kind}'"
                f" AND p.account = {table}.account AND p.id = {parent_id})"
                " ON CONFLICT (kind, account, id) DO NOTHING",
            )
        )
    return statements


def restage(resource: Resource) -> list[str]:
    """Move a table loaded directly (it was empty) to its staging table, to merge it."""
    names = ", ".join(stage_columns(resource))
    table = resource.table
    return [
        f"INSERT INTO stage_{table} ({names}) SELECT {names} FROM {table}",  # noqa: S608
        f"DELETE FROM {table}",  # noqa: S608
    ]


def inferred_parts(target: str, locations: str, sites: str) -> list[str]:
    """Fill `target` with the collections the records imply the crawl read.

    `locations` and `sites` are the tables holding this crawl's (staging
    tables, or the tables themselves when a first export loaded them directly).
    """
    insert = f"INSERT INTO {target} (kind, account, id)"  # every name ours: see the docstring
    return [
        f"{insert} SELECT DISTINCT 'locations', account, '' FROM stage_locations",  # noqa: S608
        f"{insert} SELECT 'sites', account, id FROM stage_locations",  # noqa: S608
        f"{insert} SELECT 'rooms', account, id FROM stage_sites",  # noqa: S608
        f"{insert} SELECT 'devices', account, id FROM stage_sites",  # noqa: S608
    ]


SETTLE: Final = (
    "INSERT INTO settled (kind, account, id) SELECT DISTINCT kind, account, id FROM parts_read r"
    " WHERE NOT EXISTS (SELECT 1 FROM parts_unread u WHERE u.account = r.account"
    " AND ((u.kind = r.kind AND u.id = r.id) OR u.kind = 'account'))"
)
"""The settled parts: read to the end, and named by no failure."""

UNFINISHED: Final = (
    "SELECT DISTINCT kind, account, id FROM parts_expected e WHERE NOT EXISTS"
    " (SELECT 1 FROM parts_read r WHERE r.kind = e.kind AND r.account = e.account"
    " AND r.id = e.id) ORDER BY account, kind, id"
)
"""The parts the records imply that the checkpoint does not record as read."""


def newer_rows(tables: list[str]) -> str:
    """The latest crawl time after this one of a row of these accounts (exports go in order)."""
    checks = " UNION ALL ".join(
        f"SELECT max(last_seen) AS m FROM {table} WHERE last_seen > :t"  # noqa: S608
        " AND account IN (SELECT account FROM export_accounts)"
        for table in tables
    )
    return f"SELECT max(m) FROM ({checks}) n"  # noqa: S608
