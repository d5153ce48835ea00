"""`export`: a crawl output of 1,000,000 devices into PostgreSQL and SQLite, vs bare loads.

The output is `stream_rss`'s: ``crawl_to_jsonl()`` of its sandbox portfolio
(1,000,000 devices over 2,000 sites), crawled once per run by the same child
into a temporary directory. Each round then runs four children, interleaved
ABBA, each on an empty database of its own (a new PostgreSQL database, a new
SQLite file):

- ``export``: `export_snapshot` to PostgreSQL, and to SQLite;
- the baselines: a bare loader of the same rows into empty tables with the
  same columns and no key: each JSONL line parsed (the same parser), each
  column read with ``data.get`` (no type checks, no ``extra``), then
  ``COPY`` (PostgreSQL) or ``executemany`` (SQLite), one transaction.

Times are the child's own (``time.perf_counter`` around the work: imports
and start-up aside, alike on both sides); peak RSS is the export child's
``VmHWM``. PostgreSQL is the server at 127.0.0.1:5432 (trust auth); without
it its part is skipped with a note, unless ``WISER_REQUIRE_POSTGRES=1``.

::

    python -m benchmarks.export export|bare --output FILE --to URL   (a child)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._rss_child import peak_rss_kb
from .stream import QUICK, STREAM, _child

__all__ = ["export"]

RATIO_LIMIT = 2.0
RSS_LIMIT_MB = 150.0
_PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
_ROOT = Path(__file__).resolve().parent.parent
_CHILD_TIMEOUT = 1800.0


def _run_child(mode: str, output: Path, url: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.export", mode, "--output", str(output), "--to", url]
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, cwd=_ROOT, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(
            f"the {mode} child ({url}) exited with {completed.returncode}:"
            f" {completed.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _postgres_admin() -> Any:
    try:
        import psycopg

        return psycopg.connect(_PG_ADMIN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - no driver or no server: the part is skipped
        if os.environ.get("WISER_REQUIRE_POSTGRES") == "1":
            raise BenchmarkError(f"PostgreSQL at 127.0.0.1:5432 is required: {exc}") from None
        return None


@contextmanager
def _database(kind: str, directory: Path, admin: Any) -> Iterator[str]:
    """A new empty database, removed afterwards: its URL."""
    name = f"wiser_bench_{secrets.token_hex(5)}"
    if kind == "sqlite":
        path = directory / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            path.unlink(missing_ok=True)
        return
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@register(
    "export",
    repeat=3,
    description="export_snapshot() of 1,000,000 devices to PostgreSQL and to SQLite vs a bare"
    " COPY / executemany of the same rows into empty tables; the export's peak RSS",
)
def export(ctx: Context) -> Result:
    """Time and memory of an export into an empty database, against bare bulk loads."""
    portfolio = QUICK if ctx.quick else STREAM
    process = ctx.sandbox(portfolio, latency=0.0)
    token = process.issue_token("default")
    admin = _postgres_admin()
    kinds = ["sqlite"] + (["postgresql"] if admin is not None else [])
    labels = [f"{mode}_{kind}" for kind in kinds for mode in ("export", "bare")]
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    peaks: dict[str, list[float]] = {label: [] for label in labels}
    rows: dict[str, list[int]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory(prefix="wiser-bench-export-") as tmp:
        directory = Path(tmp)
        output = directory / "crawl.jsonl"
        crawled = _child("crawl", "httpx2", process, token, output)
        if crawled["failures"]:
            raise BenchmarkError(f"the crawl missed {crawled['failures']} part(s)")
        size = output.stat().st_size
        ctx.log(f"  crawl: {crawled['devices']:,} devices, {size / 1e6:.0f} MB of JSONL")
        try:
            for repetition, label in alternate(ctx.repeat, *labels):
                mode, _, kind = label.partition("_")
                with _database(kind, directory, admin) as url:
                    report = _run_child(mode, output, url)
                seconds[label].append(report["seconds"])
                peaks[label].append(report["peak_rss_kb"] * 1024 / 1e6)
                rows[label].append(report["rows"])
                ctx.log(
                    f"  {label} {repetition + 1}/{ctx.repeat}: {report['seconds']:.2f} s,"
                    f" {report['rows']:,} rows, peak RSS {peaks[label][-1]:.0f} MB"
                )
        finally:
            if admin is not None:
                admin.close()
    for kind in kinds:
        if rows[f"export_{kind}"] != rows[f"bare_{kind}"]:
            raise BenchmarkError(
                f"rows on {kind}: export {rows[f'export_{kind}']}, bare {rows[f'bare_{kind}']}"
            )
    runs = f"medians of {ctx.repeat}" if ctx.repeat > 1 else "1 run"
    names = {"sqlite": "SQLite vs executemany", "postgresql": "PostgreSQL vs COPY"}
    targets = [
        target(
            f"export to {names[kind]} ({runs})",
            statistics.median(seconds[f"export_{kind}"]),
            statistics.median(seconds[f"bare_{kind}"]),
            limit=RATIO_LIMIT,
            unit="s",
        )
        for kind in kinds
    ]
    worst = max(peak for kind in kinds for peak in peaks[f"export_{kind}"])
    targets.append(target("export peak RSS (worst run)", worst, RSS_LIMIT_MB, limit=1.0, unit="MB"))
    notes = [
        f"{crawled['devices']:,} devices, {rows['export_sqlite'][0]:,} rows in all,"
        f" {size / 1e6:.0f} MB of JSONL; each load into an empty database of its own"
    ]
    if admin is None:
        notes.append("PostgreSQL at 127.0.0.1:5432 did not answer: its part was skipped")
    return result(
        "export",
        figures={
            "devices": crawled["devices"],
            "jsonl_mb": size / 1e6,
            **{f"{label}_s": summarize(values) for label, values in seconds.items()},
            **{f"{label}_peak_rss_mb": summarize(values) for label, values in peaks.items()},
        },
        targets=targets,
        notes=notes,
    )


# The child: one load, timed, then its peak RSS.

_BARE_TABLES = {
    "location": ["name", "timezone", "createdAt", "updatedAt"],
    "site": ["locationId", "name", "type", "timezone", "createdAt", "updatedAt"],
    "room": ["locationId", "siteId", "name", "type", "floor"],
    "device": [
        "locationId", "siteId", "roomId", "name", "category", "model", "commercialReference",
        "serialNumber", "firmwareVersion", "status", "lastSeenAt", "ratedCurrentA", "phases",
        "usage",
    ],
}  # fmt: skip
_PARENTS = ("locationId", "siteId", "roomId")
_TYPES = {"createdAt": "time", "updatedAt": "time", "lastSeenAt": "time", "floor": "int",
          "phases": "int", "ratedCurrentA": "float"}  # fmt: skip


def _bare(output: Path, url: str) -> int:
    """A hand-written loader: parse, ``data.get`` each column, bulk insert; its row count."""
    from wiser_async._json import loads

    sqlite = url.startswith("sqlite:")
    types = {"time": "timestamptz", "int": "bigint", "float": "double precision"}
    if sqlite:
        types = {"time": "TEXT", "int": "INTEGER", "float": "REAL"}
    batches: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in _BARE_TABLES}
    count = 0

    def ddl(kind: str) -> str:
        columns = ["account text", "id text"] + [
            f"{name} {types.get(_TYPES.get(name, ''), 'text')}" for name in _BARE_TABLES[kind]
        ]
        return f"CREATE TABLE bare_{kind} ({', '.join(columns)})"

    if sqlite:
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        for kind in _BARE_TABLES:
            connection.execute(ddl(kind))

        def flush(kind: str, batch: list[tuple[Any, ...]]) -> None:
            marks = ", ".join("?" * (2 + len(_BARE_TABLES[kind])))
            connection.executemany(f"INSERT INTO bare_{kind} VALUES ({marks})", batch)  # noqa: S608

    else:
        import psycopg

        pg = psycopg.connect(url)
        for kind in _BARE_TABLES:
            pg.execute(ddl(kind))

        def flush(kind: str, batch: list[tuple[Any, ...]]) -> None:
            with pg.cursor() as cursor, cursor.copy(f"COPY bare_{kind} FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)

    with output.open("rb") as file:
        for line in file:
            record = loads(line)
            kind = record["type"]
            fields = _BARE_TABLES.get(kind)
            if fields is None:
                continue
            data = record["data"]
            batch = batches[kind]
            batch.append(
                (
                    record["account"],
                    data["id"],
                    *(record.get(f) if f in _PARENTS else data.get(f) for f in fields),
                )
            )
            count += 1
            if len(batch) >= 20_000:
                flush(kind, batch)
                batch.clear()
    for kind, batch in batches.items():
        if batch:
            flush(kind, batch)
    if sqlite:
        connection.commit()
        connection.close()
    else:
        pg.commit()
        pg.close()
    return count


def main(argv: Sequence[str] | None = None) -> None:
    """Run one load and print its JSON line: seconds, rows, peak RSS."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export")
    parser.add_argument("mode", choices=["export", "bare"])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    from wiser_async._export import export_snapshot

    started = time.perf_counter()
    if args.mode == "export":
        done = export_snapshot(args.output, to=args.to)
        count = sum(counts.seen for counts in done.counts.values())
    else:
        count = _bare(args.output, args.to)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "rows": count, "peak_rss_kb": peak_rss_kb()}))


if __name__ == "__main__":
    main()
