"""Crawl outputs: resumable JSONL, JSON documents, and snapshot diffs."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from tests.support import issue, make_client, make_oauth, stack_transport
from token_stores import MemoryTokenStore
from wiser_async import (
    ApiConfig,
    AsyncWiserClient,
    Failure,
    crawl_to_json,
    crawl_to_jsonl,
    diff_snapshots,
    read_snapshot,
)
from wiser_async._snapshot import checkpoint_path
from wiser_async.errors import CrawlOutputError
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

from .conftest import SPEC

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")

TOTAL_NODES = SPEC.locations * (
    1 + SPEC.sites_per_location * (1 + SPEC.rooms_per_site + SPEC.devices_per_site)
)


@asynccontextmanager
async def connected(
    sandbox: Sandbox, urls: SandboxUrls, **options: Any
) -> AsyncIterator[AsyncWiserClient]:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    # Two requests at a time: sites finish one after another, so a crawl can
    # be interrupted between them.
    options.setdefault("max_in_flight", 2)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        yield client


def node_keys(path: Path) -> Counter[tuple[str, str]]:
    return Counter(
        (record["type"], record["data"]["id"])
        for record in read_snapshot(path)
        if record["type"] != "failure"
    )


async def test_jsonl_holds_every_node_once_with_parents_and_a_complete_mark(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        crawled = await crawl_to_jsonl(client, output, page_size=5)
    failures, stats = crawled.failures, crawled.run
    assert failures == []
    assert crawled.complete
    keys = node_keys(output)
    assert len(keys) == TOTAL_NODES
    assert set(keys.values()) == {1}
    devices = [record for record in read_snapshot(output) if record["type"] == "device"]
    portfolio = sandbox.portfolio_for()
    for record in devices[:20]:
        truth = portfolio.device(record["data"]["id"])
        assert truth is not None
        assert record["siteId"] == truth["siteId"]
        assert record["roomId"] == truth["roomId"]
        assert record["locationId"] is not None
        assert record["account"] == "acct"
    assert stats.devices == len(devices)
    marks = checkpoint_path(output).read_text().splitlines()
    assert json.loads(marks[-1]) == {"complete": True}


async def interrupt(
    client: AsyncWiserClient, sandbox: Sandbox, output: Path, faults: Faults | None = None
) -> None:
    """Start a crawl and cancel it, as Ctrl-C would, once two sites are written."""
    checkpoint = checkpoint_path(output)
    sandbox.faults = attrs.evolve(faults or Faults(), latency=0.02)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(crawl_to_jsonl, client, output, page_size=5))
        # Polling a file another task writes: no event to wait on.
        while not (checkpoint.exists() and checkpoint.read_text().count('["site"') >= 2):  # noqa: ASYNC110
            await anyio.sleep(0.002)
        tg.cancel_scope.cancel()
    sandbox.faults = faults or Faults()
    written = node_keys(output)
    assert 0 < len(written) < TOTAL_NODES
    if faults is None:  # forbidden sites, first to finish, have no devices
        assert any(kind == "device" for kind, _ in written)


async def test_interrupted_crawl_resumes_to_the_same_set_without_duplicates(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.jsonl"
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        full = (await crawl_to_jsonl(client, reference, page_size=5)).run
        await interrupt(client, sandbox, output)
        resumed = (await crawl_to_jsonl(client, output, page_size=5, resume=True)).run
    assert node_keys(output) == node_keys(reference)
    assert resumed.requests < full.requests  # finished sites were not read again
    assert resumed.devices < full.devices  # nor counted


async def test_resume_cuts_a_half_written_unit_and_a_torn_checkpoint_line(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.jsonl"
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await crawl_to_jsonl(client, reference, page_size=5)
        await interrupt(client, sandbox, output)
        # What a SIGKILL in the middle of both writes leaves behind.
        with output.open("ab") as file:
            file.write(b'{"type":"device","account":"acct","data":{"id":"torn')
        with checkpoint_path(output).open("ab") as file:
            file.write(b'{"unit":["site","acct","x"],"off')
        await crawl_to_jsonl(client, output, page_size=5, resume=True)
    assert node_keys(output) == node_keys(reference)


async def test_resuming_a_complete_crawl_reads_nothing(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await crawl_to_jsonl(client, output)
        before = output.read_bytes()
        sandbox.reset_stats()
        crawled = await crawl_to_jsonl(client, output, resume=True)
    assert crawled.failures == []
    assert crawled.complete
    assert sandbox.stats.requests == 0
    assert output.read_bytes() == before


async def test_a_deadline_leaves_a_resumable_crawl(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        sandbox.faults = Faults(latency=0.05)
        cut = await crawl_to_jsonl(client, output, page_size=5, timeout=0.3)
        assert {failure.kind for failure in cut.failures} == {"deadline"}
        assert not cut.finished
        assert not cut.complete
        assert '"complete"' not in checkpoint_path(output).read_text()
        sandbox.faults = Faults()
        resumed = await crawl_to_jsonl(client, output, page_size=5, resume=True)
    assert resumed.failures == []
    assert resumed.complete
    assert len(node_keys(output)) == TOTAL_NODES


async def test_failures_are_written_with_their_unit(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    sandbox.faults = Faults(forbidden=frozenset({site_id}))
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        failures = (await crawl_to_jsonl(client, output)).failures
    written = [record for record in read_snapshot(output) if record["type"] == "failure"]
    assert len(written) == len(failures) == 2
    assert {record["kind"] for record in written} == {"forbidden"}
    assert all(record["site_id"] == site_id for record in written)


async def test_resume_without_a_checkpoint_is_refused(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    output.write_text('{"type":"location"}\n')
    async with connected(sandbox, urls) as client:
        with pytest.raises(CrawlOutputError, match="no checkpoint"):
            await crawl_to_jsonl(client, output, resume=True)


async def test_json_document_and_jsonl_hold_the_same_portfolio(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    document = tmp_path / "crawl.json"
    lines = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        result = await crawl_to_json(client, document)
        await crawl_to_jsonl(client, lines)
    parsed = json.loads(document.read_text())
    assert set(parsed) == {"accounts", "failures", "stats"}
    assert parsed["stats"]["devices"] == result.stats.devices
    assert node_keys(document) == node_keys(lines)
    assert diff_snapshots(document, lines).empty


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def device(device_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "device",
        "account": "a",
        "siteId": "s",
        "roomId": None,
        "data": {"id": device_id, "siteId": "s", "status": "online", **fields},
    }


def test_diff_reports_added_removed_and_changed_devices(tmp_path: Path) -> None:
    old = write_records(
        tmp_path / "old.jsonl",
        [
            {"type": "site", "account": "a", "data": {"id": "s"}},
            device("d1"),
            device("d2", firmwareVersion="1.0"),
            device("d3"),
        ],
    )
    new = write_records(
        tmp_path / "new.jsonl",
        [device("d2", firmwareVersion="1.1", status="offline"), device("d3"), device("d4")],
    )
    diff = diff_snapshots(old, new)
    assert [record["data"]["id"] for record in diff.added] == ["d4"]
    assert [record["data"]["id"] for record in diff.removed] == ["d1"]
    assert len(diff.changed) == 1
    change = diff.changed[0]
    assert (change.account, change.id) == ("a", "d2")
    assert change.fields == {"firmwareVersion": ("1.0", "1.1"), "status": ("online", "offline")}
    assert not diff.empty


def test_diff_ignores_the_fields_asked_and_matches_by_account(tmp_path: Path) -> None:
    old = write_records(tmp_path / "old.jsonl", [device("d1", lastSeenAt="2026-01-01T00:00:00Z")])
    new = write_records(tmp_path / "new.jsonl", [device("d1", lastSeenAt="2026-01-02T00:00:00Z")])
    assert not diff_snapshots(old, new).empty
    assert diff_snapshots(old, new, ignore=["lastSeenAt"]).empty
    other_account = write_records(tmp_path / "b.jsonl", [{**device("d1"), "account": "b"}])
    diff = diff_snapshots(old, other_account, ignore=["lastSeenAt"])
    assert len(diff.added) == len(diff.removed) == 1


def test_diff_of_two_sandbox_portfolios(tmp_path: Path) -> None:
    def snapshot(name: str, devices_per_site: int) -> Path:
        sandbox = Sandbox(
            SPEC.__class__(locations=1, sites_per_location=1, devices_per_site=devices_per_site)
        )
        portfolio = sandbox.portfolio_for()
        return write_records(
            tmp_path / name,
            [{"type": "device", "account": "a", "data": record} for record in portfolio.devices()],
        )

    diff = diff_snapshots(snapshot("old.jsonl", 10), snapshot("new.jsonl", 12))
    assert len(diff.added) == 2
    assert diff.removed == []
    assert diff.changed == []


def test_unreadable_snapshot_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "device", "data": {"id": "d"}}\n{broken\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        list(read_snapshot(path))


async def test_parts_lost_to_a_passing_outage_are_read_again_on_resume(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    from wiser_async import RetryPolicy

    reference = tmp_path / "reference.jsonl"
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await crawl_to_jsonl(client, reference, page_size=5)
    # No retries: the failures show.
    async with connected(sandbox, urls, retry=RetryPolicy(attempts=1)) as client:
        sandbox.faults = Faults(error_rate=0.3, seed=5)
        cut = await crawl_to_jsonl(client, output, page_size=5)
        assert cut.failures
        assert {failure.kind for failure in cut.failures} == {"server_error"}
        assert not cut.complete
        assert '"complete"' not in checkpoint_path(output).read_text()
        assert node_keys(output) != node_keys(reference)
        sandbox.faults = Faults()
        resumed = await crawl_to_jsonl(client, output, page_size=5, resume=True)
    assert resumed.failures == []
    assert resumed.complete
    assert node_keys(output) == node_keys(reference)
    # No failure record stays behind for a part that was read in the end.
    assert all(record["type"] != "failure" for record in read_snapshot(output))


def failure_keys(failures: list[Failure]) -> set[tuple[str, str, str]]:
    return {(failure.account, failure.resource, failure.kind) for failure in failures}


async def test_a_resume_of_a_finished_output_with_failures_is_not_complete(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    sandbox.faults = Faults(forbidden=frozenset({site_id}))
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        first = await crawl_to_jsonl(client, output)
        assert first.finished
        assert not first.complete
        sandbox.reset_stats()
        again = await crawl_to_jsonl(client, output, resume=True)
    assert sandbox.stats.requests == 0  # nothing left to read...
    assert not again.complete  # ...and still not all there
    assert failure_keys(again.failures) == failure_keys(first.failures)
    assert again.items == first.items
    assert again.run_failures == []


async def test_a_resumed_crawl_reports_the_whole_output_as_an_uninterrupted_one_does(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    portfolio = sandbox.portfolio_for()
    location_ids = [location["id"] for location in portfolio.locations()]
    forbidden = {next(portfolio.sites(location_id))["id"] for location_id in location_ids}
    reference, output = tmp_path / "reference.jsonl", tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        faults = Faults(forbidden=frozenset(forbidden))
        sandbox.faults = faults
        whole = await crawl_to_jsonl(client, reference, page_size=5)
        await interrupt(client, sandbox, output, faults)
        resumed = await crawl_to_jsonl(client, output, page_size=5, resume=True)
    assert node_keys(output) == node_keys(reference)
    assert failure_keys(resumed.failures) == failure_keys(whole.failures)
    assert resumed.items == whole.items
    assert (resumed.finished, resumed.complete) == (whole.finished, whole.complete) == (True, False)
    # This run alone read less than the whole.
    assert resumed.run.requests < whole.run.requests


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"page_size": 10}, "page_size 5 (now 10)"),
        ({"devices_by": "room"}, "devices_by 'site' (now 'room')"),
        ({"accounts": ["acct", "other"]}, "accounts ['acct'] (now ['acct', 'other'])"),
    ],
)
async def test_a_resume_with_other_parameters_is_refused_naming_what_differs(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, changed: dict[str, Any], named: str
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await interrupt(client, sandbox, output)
        before = output.read_bytes()
        options: dict[str, Any] = {"page_size": 5, **changed}
        with pytest.raises(CrawlOutputError, match=re.escape(named)):
            await crawl_to_jsonl(client, output, resume=True, **options)
    assert output.read_bytes() == before  # nothing cut, nothing written


async def test_a_resume_against_another_api_is_refused(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await interrupt(client, sandbox, output)
    store = MemoryTokenStore()
    async with (
        make_oauth(urls, store) as oauth,
        AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url=urls.origin + "/v2"),
            transport=stack_transport(),
        ) as other,
    ):
        with pytest.raises(CrawlOutputError, match="source"):
            await crawl_to_jsonl(other, output, resume=True, page_size=5)


async def test_a_damaged_checkpoint_is_a_clear_error(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    output = tmp_path / "crawl.jsonl"
    async with connected(sandbox, urls) as client:
        await interrupt(client, sandbox, output)
        checkpoint = checkpoint_path(output)
        lines = checkpoint.read_bytes().splitlines(keepends=True)
        checkpoint.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
        with pytest.raises(CrawlOutputError, match=r"damaged at line 2"):
            await crawl_to_jsonl(client, output, resume=True, page_size=5)
        checkpoint.write_bytes(b'{"unit": ["site", "acct", "s"], "offset": 0}\n')
        with pytest.raises(CrawlOutputError, match="not written by this version"):
            await crawl_to_jsonl(client, output, resume=True, page_size=5)


async def test_outputs_and_snapshots_take_string_paths(
    wiser_client: AsyncWiserClient, tmp_path: Path
) -> None:
    jsonl, document = str(tmp_path / "crawl.jsonl"), str(tmp_path / "crawl.json")
    assert (await crawl_to_jsonl(wiser_client, jsonl)).complete
    assert (await crawl_to_json(wiser_client, document)).complete
    records = list(read_snapshot(jsonl))
    assert any(record["type"] == "device" for record in records)
    diff = diff_snapshots(jsonl, document)
    assert (diff.added, diff.removed, diff.changed) == ([], [], [])
