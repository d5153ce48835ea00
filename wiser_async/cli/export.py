"""``wiser-async export OUTPUT --to URL``: a crawl output into SQLite or PostgreSQL tables.

Exit code 0 when every part of the crawl was reconciled, 1 when parts were
not (the crawl did not read them whole: their rows are left as they were,
and each is named), 2 for a usage, output or database error, 130 when
interrupted (the transaction is rolled back: the database is as it was).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Final

import click

from .._export import ExportResult, export_snapshot
from ._errors import CliError, on_interrupt, reported

__all__ = ["export"]

# Parts named one per line; beyond this many, counted.
_SHOWN_PARTS: Final = 20


def _crawl_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--crawled-at {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise CliError(f"--crawled-at {value!r} needs its UTC offset (e.g. 2025-06-02T01:15Z)")
    return moment


@click.command()
@click.argument("output", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "to",
    required=True,
    envvar="WISER_EXPORT_TO",
    show_envvar=True,
    metavar="URL",
    help="The database: sqlite:///FILE (or a plain FILE path) or postgresql://... (the"
    " postgres extra).",
)
@click.option(
    "--crawled-at",
    envvar="WISER_CRAWLED_AT",
    show_envvar=True,
    metavar="TIME",
    help="When the crawl ran (ISO 8601 with offset); default: when it last wrote OUTPUT.",
)
def export(output: Path, to: str, crawled_at: str | None) -> None:
    """Export a crawl output (JSONL or JSON) into the tables of a database.

    Tables locations, sites, rooms and devices (one row per account and id,
    with first_seen, last_seen, changed_at and removed_at, all the crawl's
    times) and exports (one row per export). A row is marked removed only
    when the crawl read its collection whole. Exit code 0 when every part was
    reconciled, 1 when some were not (each is named), 2 for an error.
    """
    moment = _crawl_time(crawled_at)
    on_interrupt("Interrupted. Nothing was exported (the database is as it was).")
    with reported():
        result = export_snapshot(output, to=to, crawled_at=moment)
    _print(result)
    sys.exit(0 if result.complete else 1)


def _print(result: ExportResult) -> None:
    click.echo(
        f"{result.database}: export {result.export_id} of {result.source}"
        f" (crawled {result.crawled_at} UTC)."
    )
    for table, counts in result.counts.items():
        click.echo(
            f"{table}: {counts.seen:,} seen, {counts.added:,} added, {counts.changed:,} changed,"
            f" {counts.removed:,} removed, {counts.restored:,} back"
        )
    if result.complete:
        click.echo("Complete: every part was read, every table reconciled.")
        return
    parts = result.unreconciled
    click.echo(
        f"Not reconciled ({len(parts)} part(s) the crawl did not read whole, left as they were):"
    )
    for part in parts[:_SHOWN_PARTS]:
        click.echo(f"  {part}")
    if len(parts) > _SHOWN_PARTS:
        click.echo(f"  and {len(parts) - _SHOWN_PARTS} more (the exports table lists them all)")
