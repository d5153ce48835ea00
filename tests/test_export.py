"""Crawl outputs exported into SQLite and PostgreSQL: history, honest deletions, schema version.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, user
postgres), a database of their own each; without it they are skipped,
unless WISER_REQUIRE_POSTGRES=1 (CI), which makes its absence a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from tests.cli_support import assert_one_line_error
from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth, crawl_to_json, crawl_to_jsonl
from wiser_async._export import ExportError, export_snapshot
from wiser_async._export.databases import describe_url
from wiser_async._export.source import format_time
from wiser_async._snapshot import checkpoint_path, diff_snapshots
from wiser_async.cli._errors import CliGroup
from wiser_async.cli.export import export
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox
from wiser_async.sandbox._portfolio import Portfolio

MONDAY = datetime(2025, 6, 2, 1, 15, tzinfo=UTC)
TUESDAY = MONDAY + timedelta(days=1)
WEDNESDAY = TUESDAY + timedelta(days=1)
SMALL = PortfolioSpec(
    locations=2,
    sites_per_location=2,
    rooms_per_site=2,
    devices_per_site=6,
    unassigned_devices_per_site=2,
)
TABLES = ("locations", "sites", "rooms", "devices")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


async def _crawl(sandbox: Sandbox, output: Path, accounts: tuple[str, ...], json_doc: bool) -> None:
    urls = sandbox.urls()
    store = MemoryTokenStore()
    for account in accounts:
        await store.save(account, Token.from_response(sandbox.issue_token(account)))
    oauth = WiserOAuth(
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        store=store,
        token_url=urls.token_url,
        transport=sandbox.transport(),
    )
    async with (
        oauth,
        AsyncWiserClient(
            oauth,
            accounts[0],
            config=ApiConfig(base_url=urls.api_base_url),
            transport=sandbox.transport(),
        ) as client,
    ):
        if json_doc:
            await crawl_to_json(client, output, accounts=list(accounts))
        else:
            await crawl_to_jsonl(client, output, accounts=list(accounts), source="sandbox")


def crawl(
    output: Path,
    spec: PortfolioSpec,
    at: datetime,
    *,
    accounts: tuple[str, ...] = ("acme",),
    forbid: Callable[[Portfolio], set[str]] | None = None,
    json_doc: bool = False,
) -> Path:
    """A sandbox crawl to `output`, as if it ran at `at` (the output's modification time)."""
    sandbox = Sandbox(spec)
    if forbid is not None:
        sandbox.faults = Faults(forbidden=frozenset(forbid(sandbox.portfolio_for(accounts[0]))))
    anyio.run(_crawl, sandbox, output, accounts, json_doc, backend="asyncio")
    stamp = int(at.timestamp() * 1e9)
    os.utime(output, ns=(stamp, stamp))
    return output


@pytest.fixture(scope="module")
def postgres_admin() -> Iterator[Any]:
    try:
        import psycopg

        connection = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - no driver or no server: either skips
        if os.environ.get("WISER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required: {exc}")
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})")
    with connection:
        yield connection


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'portfolio.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"wiser_export_{secrets.token_hex(6)}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query, times as text in the form the tables hold them."""
    rows: list[tuple[Any, ...]]
    if url.startswith("sqlite:"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = connection.execute(sql).fetchall()
        finally:
            connection.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            rows = pg.execute(sql).fetchall()
    return [tuple(format_time(v) if isinstance(v, datetime) else v for v in row) for row in rows]


def table(url: str, name: str) -> list[tuple[Any, ...]]:
    return query(url, f"SELECT * FROM {name} ORDER BY account, id")  # noqa: S608


def ids(url: str, name: str, where: str) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in query(url, f"SELECT account, id FROM {name} WHERE {where}")}  # noqa: S608


def test_exporting_the_same_output_twice_changes_nothing_but_the_exports_table(
    database: str, tmp_path: Path
) -> None:
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY, accounts=("acme", "globex"))
    first = export_snapshot(output, to=database)
    assert first.complete
    assert first.counts["devices"].added == first.counts["devices"].seen == 48
    assert first.crawled_at == format_time(MONDAY)
    before = {name: table(database, name) for name in TABLES}
    second = export_snapshot(output, to=database)
    assert {name: table(database, name) for name in TABLES} == before
    assert all(
        counts.added == counts.changed == counts.removed == 0 for counts in second.counts.values()
    )
    exports = query(database, "SELECT id, crawled_at, complete FROM exports ORDER BY id")
    assert [(row[0], row[1], bool(row[2])) for row in exports] == [
        (first.export_id, format_time(MONDAY), True),
        (second.export_id, format_time(MONDAY), True),
    ]
    assert query(database, "SELECT DISTINCT first_seen, last_seen FROM devices") == [
        (format_time(MONDAY), format_time(MONDAY))
    ]


def test_monday_then_tuesday_gives_exactly_the_diff_of_the_two_crawls(
    database: str, tmp_path: Path
) -> None:
    monday = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    # Tuesday: a location gone (its sites, rooms and devices with it), a site more in
    # the other, a device fewer per site, and rooms added, which moves devices between rooms.
    tuesday_spec = PortfolioSpec(
        locations=1,
        sites_per_location=3,
        rooms_per_site=3,
        devices_per_site=5,
        unassigned_devices_per_site=2,
    )
    tuesday = crawl(tmp_path / "tuesday.jsonl", tuesday_spec, TUESDAY)
    export_snapshot(monday, to=database)
    result = export_snapshot(tuesday, to=database)
    diff = diff_snapshots(monday, tuesday, ignore=["lastSeenAt"])
    assert diff.added  # the test covers all three
    assert diff.removed
    assert diff.changed

    def key(record: dict[str, Any]) -> tuple[str, str]:
        return record["account"], record["data"]["id"]

    at = f"'{format_time(TUESDAY)}'"
    assert ids(database, "devices", f"first_seen = {at}") == {key(r) for r in diff.added}
    assert ids(database, "devices", f"removed_at = {at}") == {key(r) for r in diff.removed}
    assert ids(database, "devices", f"changed_at = {at}") == {
        (c.account, c.id) for c in diff.changed
    }
    counts = result.counts["devices"]
    assert (counts.added, counts.removed, counts.changed) == (
        len(diff.added),
        len(diff.removed),
        len(diff.changed),
    )
    # The gone location took its sites and rooms with it.
    assert len(ids(database, "locations", f"removed_at = {at}")) == 1
    assert len(ids(database, "sites", f"removed_at = {at}")) == 2
    assert result.complete
    # A changed row holds Tuesday's data.
    change = diff.changed[0]
    room = query(database, f"SELECT room_id FROM devices WHERE id = '{change.id}'")[0][0]  # noqa: S608
    assert room == change.fields["roomId"][1]


def test_a_location_that_answered_403_keeps_its_rows_and_is_named(
    database: str, tmp_path: Path
) -> None:
    monday = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    first_location: dict[str, str] = {}

    def forbid(portfolio: Portfolio) -> set[str]:
        first_location["id"] = next(portfolio.locations())["id"]
        return {first_location["id"]}

    # Tuesday a device fewer per site: the readable location's are removed, not the other's.
    tuesday_spec = PortfolioSpec(
        locations=2,
        sites_per_location=2,
        rooms_per_site=2,
        devices_per_site=5,
        unassigned_devices_per_site=2,
    )
    tuesday = crawl(tmp_path / "tuesday.jsonl", tuesday_spec, TUESDAY, forbid=forbid)
    export_snapshot(monday, to=database)
    result = export_snapshot(tuesday, to=database)
    location = first_location["id"]
    assert not result.complete
    assert [str(part) for part in result.unreconciled] == [
        f"acme: the sites of location {location} (forbidden)"
    ]
    assert result.accounts["acme"].complete is False
    for name in ("sites", "rooms", "devices"):
        assert (
            ids(database, name, f"location_id = '{location}' AND removed_at IS NOT NULL") == set()
        )
    removed = ids(database, "devices", "removed_at IS NOT NULL")
    assert len(removed) == 2  # one per site of the location that answered
    assert query(database, "SELECT complete FROM exports ORDER BY id DESC LIMIT 1")[0][0] in (
        0,
        False,
    )
    unreconciled = json.loads(
        query(database, "SELECT unreconciled FROM exports ORDER BY id DESC")[0][0]
    )
    assert unreconciled == [
        {"account": "acme", "collection": "sites", "parent_id": location, "reason": "forbidden"}
    ]


def test_a_row_that_comes_back_is_no_longer_removed(database: str, tmp_path: Path) -> None:
    fewer = PortfolioSpec(
        locations=2,
        sites_per_location=2,
        rooms_per_site=2,
        devices_per_site=5,
        unassigned_devices_per_site=2,
    )
    export_snapshot(crawl(tmp_path / "1.jsonl", SMALL, MONDAY), to=database)
    export_snapshot(crawl(tmp_path / "2.jsonl", fewer, TUESDAY), to=database)
    assert len(ids(database, "devices", "removed_at IS NOT NULL")) == 4
    result = export_snapshot(crawl(tmp_path / "3.jsonl", SMALL, WEDNESDAY), to=database)
    assert result.counts["devices"].restored == 4
    assert ids(database, "devices", "removed_at IS NOT NULL") == set()
    back = query(database, "SELECT DISTINCT first_seen, last_seen FROM devices")
    assert back == [(format_time(MONDAY), format_time(WEDNESDAY))]


def test_another_schema_version_is_refused_naming_both(database: str, tmp_path: Path) -> None:
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    export_snapshot(output, to=database)
    if database.startswith("sqlite:"):
        connection = sqlite3.connect(database.removeprefix("sqlite:///"))
        with connection:
            connection.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        connection.close()
    else:
        import psycopg

        with psycopg.connect(database) as pg:
            pg.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(ExportError) as raised:
        export_snapshot(output, to=database)
    message = str(raised.value)
    assert "version 7" in message
    assert "version 1" in message
    assert "\n" not in message


def test_an_account_that_failed_whole_touches_nothing_of_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'p.db'}"
    monday = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY, accounts=("acme", "globex"))
    export_snapshot(monday, to=database)
    # Tuesday as a merged queue writes it: no checkpoint, acme's grant gone.
    tuesday = tmp_path / "tuesday.jsonl"
    lines = [line for line in monday.read_text().splitlines() if '"account":"acme"' not in line]
    lines = [line for line in lines if '"dev-' not in line or line.endswith('-0"}}')]
    failure = {
        "type": "failure",
        "account": "acme",
        "resource": "*",
        "kind": "authorization",
        "status": None,
        "message": "the account needs authorization",
    }
    tuesday.write_text("\n".join([*lines, json.dumps(failure)]) + "\n")
    os.utime(tuesday, (TUESDAY.timestamp(), TUESDAY.timestamp()))
    result = export_snapshot(tuesday, to=database)
    assert [str(part) for part in result.unreconciled] == ["acme: every part (authorization)"]
    assert result.accounts["acme"].complete is False
    assert result.accounts["globex"].complete
    for name in TABLES:
        assert ids(database, name, "account = 'acme' AND removed_at IS NOT NULL") == set()
    assert ids(database, "devices", "account = 'globex' AND removed_at IS NOT NULL")


def test_an_unfinished_crawl_reconciles_only_the_units_it_finished(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'p.db'}"
    monday = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    export_snapshot(monday, to=database)
    # Tuesday stopped after its first site: the checkpoint records less than the file holds.
    tuesday = tmp_path / "tuesday.jsonl"
    tuesday.write_bytes(monday.read_bytes())
    marks = checkpoint_path(monday).read_text().splitlines()
    first_site = next(i for i, line in enumerate(marks) if '"unit":["site"' in line)
    checkpoint_path(tuesday).write_text("\n".join(marks[: first_site + 1]) + "\n")
    os.utime(tuesday, (TUESDAY.timestamp(), TUESDAY.timestamp()))
    result = export_snapshot(tuesday, to=database)
    assert not result.complete
    assert {part.reason for part in result.unreconciled} == {"unfinished"}
    assert {"rooms", "devices"} <= {part.collection for part in result.unreconciled}
    assert ids(database, "devices", "removed_at IS NOT NULL") == set()
    kept = marks[: first_site + 1]
    assert result.counts["devices"].seen == 6 * sum('"unit":["site"' in line for line in kept)


def test_values_not_of_their_column_type_are_kept_in_extra(tmp_path: Path) -> None:
    output = tmp_path / "odd.jsonl"
    records = [
        {
            "type": "location",
            "account": "a",
            "data": {
                "id": 7,
                "name": "L",
                "address": {"city": "Lyon", "floorCode": "B"},
                "createdAt": "2025-01-01T00:00:00+02:00",
            },
        },
        {
            "type": "site",
            "account": "a",
            "locationId": "7",
            "data": {"id": "s", "createdAt": "soon"},
        },
        {
            "type": "room",
            "account": "a",
            "locationId": "7",
            "siteId": "s",
            "data": {"id": "r", "floor": "2nd", "colour": None},
        },
        {
            "type": "device",
            "account": "a",
            "locationId": "7",
            "siteId": "s",
            "roomId": None,
            "data": {
                "id": "d",
                "phases": 3.0,
                "ratedCurrentA": 16,
                "name": "a\u0000b",
                "lastSeenAt": "2025-06-01T12:00:00",
                "vendor": {"x": 1},
            },
        },
    ]
    output.write_text("".join(json.dumps(record) + "\n" for record in records))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    export_snapshot(output, to=url, crawled_at=MONDAY)
    location = query(url, "SELECT id, address_city, created_at, extra FROM locations")[0]
    assert location == ("7", "Lyon", "2024-12-31 22:00:00", '{"address":{"floorCode":"B"}}')
    assert query(url, "SELECT created_at, extra FROM sites") == [(None, '{"createdAt":"soon"}')]
    assert query(url, "SELECT floor, extra FROM rooms") == [(None, '{"floor":"2nd"}')]
    device = query(url, "SELECT phases, rated_current_a, name, last_seen_at, extra FROM devices")[0]
    assert device[:4] == (3, 16.0, None, None)
    assert json.loads(device[4]) == {
        "lastSeenAt": "2025-06-01T12:00:00",
        "name": "a\u0000b",
        "vendor": {"x": 1},
    }


def test_a_crawl_older_than_one_exported_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    export_snapshot(output, to=url, crawled_at=TUESDAY)
    with pytest.raises(ExportError, match="before a crawl this database holds"):
        export_snapshot(output, to=url)
    assert len(query(url, "SELECT id FROM exports")) == 1


def test_a_database_with_tables_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE devices (x)")
    connection.close()
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    with pytest.raises(ExportError, match="no export schema version"):
        export_snapshot(output, to=str(path))


def test_a_json_document_exports_as_its_jsonl_does(tmp_path: Path) -> None:
    jsonl = crawl(tmp_path / "c.jsonl", SMALL, MONDAY)
    document = crawl(tmp_path / "c.json", SMALL, MONDAY, json_doc=True)
    export_snapshot(jsonl, to=str(tmp_path / "a.db"))
    export_snapshot(document, to=str(tmp_path / "b.db"))
    for name in TABLES:
        assert table(f"sqlite:///{tmp_path / 'a.db'}", name) == table(
            f"sqlite:///{tmp_path / 'b.db'}", name
        )


def run(*args: str) -> Any:
    group = CliGroup(commands={"export": export})
    return CliRunner().invoke(group, ["export", *args], catch_exceptions=False)


def test_the_command_names_what_it_could_not_reconcile_and_exits_1(tmp_path: Path) -> None:
    monday = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    done = run(str(monday), "--to", f"sqlite:///{tmp_path / 'p.db'}")
    assert done.exit_code == 0, done.output
    assert "devices: 24 seen, 24 added, 0 changed, 0 removed, 0 back" in done.stdout
    assert "Complete" in done.stdout
    tuesday = crawl(
        tmp_path / "tuesday.jsonl",
        SMALL,
        TUESDAY,
        forbid=lambda portfolio: {next(portfolio.locations())["id"]},
    )
    partial = run(str(tuesday), "--to", str(tmp_path / "p.db"))
    assert partial.exit_code == 1, partial.output
    assert "Not reconciled (1 part(s)" in partial.stdout
    assert "acme: the sites of location loc-" in partial.stdout


def test_the_command_refuses_another_version_in_one_line(tmp_path: Path) -> None:
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    assert run(str(output), "--to", str(tmp_path / "p.db")).exit_code == 0
    connection = sqlite3.connect(tmp_path / "p.db")
    with connection:
        connection.execute("UPDATE meta SET value = '2'")
    connection.close()
    assert_one_line_error(
        run(str(output), "--to", str(tmp_path / "p.db")), "version 2", "version 1"
    )
    assert_one_line_error(run(str(output), "--to", "mysql://x/y"), "not a database URL")
    assert_one_line_error(
        run(str(output), "--to", "x.db", "--crawled-at", "2025-06-01"), "UTC offset"
    )


def test_a_postgresql_password_is_never_shown() -> None:
    assert describe_url("postgresql://u:s3cret@db:5432/p") == "postgresql://u:***@db:5432/p"
    assert "s3cret" not in describe_url("postgresql://db/p?password=s3cret")


@pytest.mark.parametrize(
    ("failure", "parts"),
    [
        ({"collection": "sites", "parent_id": "L"}, ["sites L"]),
        ({"collection": "rooms", "parent_id": "S", "site_id": "S"}, ["rooms S", "devices S"]),
        ({"collection": "site_devices", "parent_id": "S", "site_id": "S"}, ["devices S"]),
        ({"collection": "room_devices", "parent_id": "R", "site_id": "S"}, ["devices S"]),
        ({"collection": "room_devices", "parent_id": "R"}, ["account "]),
        ({"collection": "locations"}, ["locations "]),
        ({"resource": "*", "kind": "authorization"}, ["account "]),
        ({"collection": "something new", "parent_id": "X"}, ["account "]),
    ],
)
def test_each_failure_leaves_its_collection_unreconciled(
    failure: dict[str, Any], parts: list[str]
) -> None:
    from wiser_async._export.plan import unread_parts

    found = unread_parts({"account": "a", "resource": "/x", "kind": "forbidden", **failure}, None)
    assert [f"{part.collection} {part.parent_id}" for part in found] == parts


def test_an_item_listed_twice_is_one_row(database: str, tmp_path: Path) -> None:
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    lines = output.read_text().splitlines()
    twice = tmp_path / "twice.jsonl"
    twice.write_text("\n".join([*lines, next(line for line in lines if '"dev-' in line)]) + "\n")
    result = export_snapshot(twice, to=database, crawled_at=MONDAY)
    assert result.counts["devices"].seen == 25
    assert result.counts["devices"].added == 24
    assert len(table(database, "devices")) == 24


def test_a_database_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    output = crawl(tmp_path / "monday.jsonl", SMALL, MONDAY)
    url = "host=127.0.0.1 port=1 user=postgres password=s3cret connect_timeout=2"
    with pytest.raises(ExportError) as raised:
        export_snapshot(output, to=url)
    assert "s3cret" not in str(raised.value)
    assert "password=***" in str(raised.value)
