"""Crawl outputs into databases: SQLite by default, PostgreSQL for growth (`export_snapshot`).

`source` reads the output and its checkpoint, `rows` turns records into
typed rows, `plan` says which parts the crawl read whole, `schema` and
`merge` are the tables and the set-based statements, `databases` the two
drivers, `export` ties them together.
"""

from .export import export_snapshot
from .plan import AccountOutcome, ExportResult, TableCounts, UnreconciledPart
from .schema import SCHEMA_VERSION, ExportError

__all__ = [
    "SCHEMA_VERSION",
    "AccountOutcome",
    "ExportError",
    "ExportResult",
    "TableCounts",
    "UnreconciledPart",
    "export_snapshot",
]
