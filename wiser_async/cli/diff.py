"""``wiser-async diff``: devices added, removed and changed between two crawls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import SnapshotDiff, diff_snapshots, read_snapshot
from ._errors import CliError, reported

__all__ = ["diff"]


@click.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ignore",
    multiple=True,
    envvar="WISER_IGNORE",
    show_envvar=True,
    help="Device field (wire name) left out of the comparison, e.g. lastSeenAt (repeat).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="WISER_JSON",
    show_envvar=True,
    help="Print the differences as JSON.",
)
def diff(old: Path, new: Path, ignore: tuple[str, ...], as_json: bool) -> None:
    """Devices added, removed and changed between two crawls (JSONL or JSON).

    The totals come first, then each account's differences under a line of
    its own totals (accounts by name, devices by id; --json lists them in
    the same order). Exit code 0 when the snapshots hold the same devices, 1 when they
    differ, 2 when a file is not a crawl output.
    """
    with reported():
        result = _diff(old, new, ignore)
    if as_json:
        click.echo(json.dumps(_as_json(result), indent=1))
    else:
        _print(result)
    sys.exit(0 if result.empty else 1)


def _diff(old: Path, new: Path, ignore: tuple[str, ...]) -> SnapshotDiff:
    try:
        return diff_snapshots(old, new, ignore=ignore)
    except ValueError as exc:
        # read_snapshot names the file and line of what is not JSON.
        raise CliError(" ".join(str(exc).split())) from None
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError):
        # JSON, but not the records of a crawl: find where, to say so.
        raise CliError(_not_a_crawl(old) or _not_a_crawl(new) or "not a crawl output") from None


def _not_a_crawl(path: Path) -> str | None:
    """What makes `path` not a crawl output, or None if nothing does."""
    number = 0
    try:
        for number, record in enumerate(read_snapshot(path), 1):
            problem = _record_problem(record)
            if problem is not None:
                return f"{path}: record {number} is not a crawl record ({problem})"
    except ValueError as exc:
        return " ".join(str(exc).split())
    except RecursionError:
        return f"{path}: record {number + 1} is nested too deeply"
    except (KeyError, TypeError, AttributeError, IndexError):
        return f"{path}: not a crawl output (not the document crawl writes)"
    return None


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("type"), str):
        return "no type"
    if record["type"] != "device":
        return None
    data = record.get("data")
    if not isinstance(data, dict):
        return "a device without data"
    if not isinstance(data.get("id"), str | int):
        return "a device without an id"
    return None


def _grouped(result: SnapshotDiff) -> SnapshotDiff:
    """The differences ordered by account, then device id: each account's together."""

    def record_key(record: dict[str, Any]) -> tuple[str, str]:
        return str(record.get("account", "")), str(record["data"]["id"])

    return SnapshotDiff(
        added=sorted(result.added, key=record_key),
        removed=sorted(result.removed, key=record_key),
        changed=sorted(result.changed, key=lambda change: (change.account, change.id)),
    )


def _as_json(result: SnapshotDiff) -> dict[str, Any]:
    grouped = _grouped(result)
    return {
        "added": grouped.added,
        "removed": grouped.removed,
        "changed": [
            {
                "account": change.account,
                "id": change.id,
                "fields": {
                    name: {"old": before, "new": after}
                    for name, (before, after) in change.fields.items()
                },
            }
            for change in grouped.changed
        ],
    }


def _counts(added: int, removed: int, changed: int) -> str:
    return f"{added} added, {removed} removed, {changed} changed"


def _print(result: SnapshotDiff) -> None:
    """The totals, then each account's differences under a line of its own totals."""
    click.echo(_counts(len(result.added), len(result.removed), len(result.changed)))
    grouped = _grouped(result)
    lines: dict[str, tuple[list[str], list[str], list[str]]] = {}

    def of(account: str) -> tuple[list[str], list[str], list[str]]:
        return lines.setdefault(account, ([], [], []))

    for index, (sign, records) in enumerate((("+", grouped.added), ("-", grouped.removed))):
        for record in records:
            data = record["data"]
            where = f"site {record.get('siteId') or data.get('siteId')}"
            room = record.get("roomId", data.get("roomId"))
            where += f", room {room}" if room else ", no room"
            of(str(record.get("account", "")))[index].append(f"  {sign} {data['id']} ({where})")
    for change in grouped.changed:
        fields = "; ".join(
            f"{name}: {before!r} -> {after!r}" for name, (before, after) in change.fields.items()
        )
        of(change.account)[2].append(f"  ~ {change.id}: {fields}")
    for account in sorted(lines):
        added, removed, changed = lines[account]
        name = account or "(no account)"
        click.echo(f"{name}: {_counts(len(added), len(removed), len(changed))}")
        for line in (*added, *removed, *changed):
            click.echo(line)
