"""crawl_to_jsonl's two paths: items written as the API sent them (ids read), or as models.

The default path reads of each item only the ids the crawl needs. It must
write the same records as the typed path over the sandbox's whole
portfolio, and stay honest where the data is bad: an item without a usable
id is a failure, never a record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asgi_server import serve_asgi
from tests.support import issue, make_client, make_oauth
from token_stores import MemoryTokenStore
from wiser_async import (
    ApiConfig,
    Device,
    JsonlCrawl,
    Location,
    Room,
    Site,
    Validation,
    crawl_to_jsonl,
    read_snapshot,
)
from wiser_async.sandbox import Sandbox, SandboxUrls

from .conftest import SPEC

VALIDATIONS: tuple[Validation, ...] = ("ids", "models")


def records(path: Path) -> Counter[str]:
    """The output's records as canonical JSON (keys sorted), with how often each appears."""
    return Counter(json.dumps(record, sort_keys=True) for record in read_snapshot(path))


async def crawl_both(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, **options: Any
) -> tuple[Path, Path]:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    outputs = tmp_path / "ids.jsonl", tmp_path / "models.jsonl"
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        for output, validate in zip(outputs, VALIDATIONS, strict=True):
            crawled = await crawl_to_jsonl(client, output, validate=validate, **options)
            assert crawled.complete, crawled.failures
    return outputs


MODELS = {"location": Location, "site": Site, "room": Room, "device": Device}


@pytest.mark.parametrize("devices_by", ["site", "room"])
async def test_both_paths_write_the_same_records_for_the_whole_portfolio(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, devices_by: str
) -> None:
    """The same records; the models path writes each item in its model's normal form.

    That form lists every field (null where the API left one out) and
    writes timestamps with microseconds: the ids path's records, put
    through their models, are exactly the models path's.
    """
    ids, models = await crawl_both(sandbox, urls, tmp_path, devices_by=devices_by, page_size=7)
    store = MemoryTokenStore()
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        normalised = Counter(
            json.dumps(
                {**record, "data": client.to_wire(client.from_wire(record["data"], model))},
                sort_keys=True,
            )
            for record in read_snapshot(ids)
            if (model := MODELS.get(record["type"])) is not None
        )
    written = records(models)
    assert normalised == written
    devices = SPEC.locations * SPEC.sites_per_location * SPEC.devices_per_site
    kinds = Counter(json.loads(line)["type"] for line in written.elements())
    assert kinds["device"] == devices
    assert set(written.values()) == {1}
    # The records' envelopes (type, account, parents) are the same on both paths.
    assert envelopes(ids) == envelopes(models)


def envelopes(path: Path) -> Counter[str]:
    return Counter(
        json.dumps({**record, "data": record["data"]["id"]}, sort_keys=True)
        for record in read_snapshot(path)
    )


async def test_the_ids_path_keeps_each_item_as_the_api_sent_it(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    ids, _ = await crawl_both(sandbox, urls, tmp_path)
    portfolio = sandbox.portfolio_for()
    devices = [record for record in read_snapshot(ids) if record["type"] == "device"]
    assert devices
    for record in devices:
        # The sandbox's own wire form, key for key and in its order.
        truth = portfolio.device(record["data"]["id"])
        assert truth is not None
        assert list(record["data"].items()) == list(truth.items())


# -- bad items, from a server of the test's own ------------------------------------------

DEEP = {"x": json.loads("[" * 300 + "]" * 300)}
LOCATIONS: list[Any] = [
    {"id": "L1", "name": "good"},
    {"name": "no id"},
    {"id": None},
    {"id": ["L2"]},
    "not an object",
    {"id": 42, "name": "numeric id"},
    {"id": "L3", **DEEP},
]
SITES = [{"id": "S1"}]
DEVICES = [
    {"id": "D1", "roomId": None},
    {"id": "D2", "roomId": "R1", "phases": "three"},
    {"id": "D3", "roomId": {"id": "R1"}},
]


def page(items: list[Any]) -> bytes:
    return json.dumps({"data": items, "meta": {"total": len(items)}}).encode()


def bodies(path: str) -> bytes:
    if path == "/locations":
        return page(LOCATIONS)
    if path.endswith("/sites"):
        return page(SITES if path.startswith("/locations/L1/") else [])
    if path.endswith("/devices"):
        return page(DEVICES)
    return page([])


async def bad_items_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = bodies(scope["path"])
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def bad_items() -> Iterator[str]:
    with serve_asgi(bad_items_app) as origin:
        yield origin


async def crawl_bad_items(
    sandbox: Sandbox, urls: SandboxUrls, origin: str, output: Path, validate: Validation
) -> JsonlCrawl:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, config=ApiConfig(base_url=origin)) as client,
    ):
        return await crawl_to_jsonl(client, output, validate=validate)


async def test_an_item_without_a_usable_id_is_a_failure_never_a_record(
    sandbox: Sandbox, urls: SandboxUrls, bad_items: str, tmp_path: Path
) -> None:
    output = tmp_path / "bad.jsonl"
    crawled = await crawl_bad_items(sandbox, urls, bad_items, output, "ids")
    written = [record for record in read_snapshot(output) if record["type"] != "failure"]
    locations = [record["data"] for record in written if record["type"] == "location"]
    # Kept as sent: the numeric id stays a number in data; the crawl used "42" in paths.
    assert locations == [{"id": "L1", "name": "good"}, {"id": 42, "name": "numeric id"}]
    devices = {record["data"]["id"]: record for record in written if record["type"] == "device"}
    # Fields other than the ids are not checked on this path: D2's phases is written.
    assert sorted(devices) == ["D1", "D2"]
    assert devices["D2"]["roomId"] == "R1"
    assert devices["D2"]["data"]["phases"] == "three"
    problems = sorted(failure.message.split(": ", 1)[1] for failure in crawled.failures)
    assert problems == [
        "expected a string at .id",
        "expected a string at .id",
        "expected a string at .id",
        "expected a string or null at .roomId",
        "expected an object, got a string",
        "nests deeper than JSON can be written",
    ]
    assert all(failure.kind == "decode" for failure in crawled.failures)
    assert not crawled.complete
    assert crawled.items == {"location": 2, "site": 1, "room": 0, "device": 2}


async def test_the_models_path_also_fails_fields_of_the_wrong_type(
    sandbox: Sandbox, urls: SandboxUrls, bad_items: str, tmp_path: Path
) -> None:
    output = tmp_path / "bad.jsonl"
    crawled = await crawl_bad_items(sandbox, urls, bad_items, output, "models")
    devices = [
        record["data"]["id"] for record in read_snapshot(output) if record["type"] == "device"
    ]
    assert devices == ["D1"]
    locations = [r["data"]["id"] for r in read_snapshot(output) if r["type"] == "location"]
    # The model reads a numeric id as its string, and refuses the deep unknown field.
    assert locations == ["L1", "42"]
    assert any("phases" in failure.message for failure in crawled.failures)


async def test_validate_takes_only_the_documented_values(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(ValueError, match="validate must be"):
            await crawl_to_jsonl(client, tmp_path / "x.jsonl", validate="types")  # type: ignore[arg-type]
