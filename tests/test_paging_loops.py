"""Paging that would not end ends its collection, and the crawl reads the rest.

A server that answers every offset with the same page (the sandbox's
``same_page_forever``), or that keeps answering full pages of new items
(``endless_pages``), ends that collection with a ``paging_loop`` failure: a
page of ids the collection gave already, or more pages or items than the
first page's total allows (without a total, ``max_items_without_total``).
What was read before is kept; the listing iterators raise `PagingLoop`.

The acceptance test runs the sandbox in another process and each crawl in a
child process of its own (this module, run as ``python -m
tests.test_paging_loops``), which measures its wall time and its peak RSS
over what it held once set up.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest

from tests.support import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, issue, make_client, make_oauth
from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, PageFormat, WiserOAuth, crawl_to_jsonl
from wiser_async.errors import PagingLoop
from wiser_async.sandbox import Faults, Sandbox, SandboxProcess, SandboxUrls

pytestmark = [pytest.mark.usefixtures("http_stack"), pytest.mark.timeout(60)]

T = TypeVar("T")


async def collect(iterator: AsyncIterator[T], into: list[T]) -> None:
    """Append what `iterator` gives to `into`, up to whatever it raises."""
    async for item in iterator:
        into.append(item)


def first_site(sandbox: Sandbox) -> str:
    portfolio = sandbox.portfolio_for()
    return str(next(portfolio.sites(next(portfolio.locations())["id"]))["id"])


@asynccontextmanager
async def client_of(
    sandbox: Sandbox, urls: SandboxUrls, max_items: int | None = None, **options: Any
) -> AsyncIterator[AsyncWiserClient]:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    if max_items is not None:
        pages = PageFormat(max_items_without_total=max_items)
        options["config"] = ApiConfig(base_url=urls.api_base_url, pages=pages)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        yield client


def site_tree_ids(result: Any, site: str) -> tuple[list[str], list[str]]:
    """The ids of a site's rooms and of all its devices, as a crawl gathered them."""
    (tree,) = [s for loc in result.locations for s in loc.sites if s.site.id == site]
    devices = [d.id for room in tree.rooms for d in room.devices] + [d.id for d in tree.devices]
    return [room.room.id for room in tree.rooms], devices


async def test_a_page_served_again_ends_its_collection_and_the_crawl_reads_the_rest(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    async with client_of(sandbox, urls) as client:
        whole = await client.crawl(page_size=5)
        sandbox.faults = Faults(same_page_forever=frozenset({site}))
        sandbox.reset_stats()
        result = await client.crawl(page_size=5)
    assert whole.complete
    assert {(f.kind, f.collection, f.parent_id, f.offset) for f in result.failures} == {
        ("paging_loop", "rooms", site, 3),  # 3 rooms: "full" at a limit of 3
        ("paging_loop", "site_devices", site, 5),
    }
    assert all("(the page before, again)" in f.message for f in result.failures)
    # What the site's first pages held is kept, once; nothing else of it.
    rooms, devices = site_tree_ids(result, site)
    whole_rooms, whole_devices = site_tree_ids(whole, site)
    assert rooms == whole_rooms
    assert len(devices) == len(set(devices)) == 5
    assert set(devices) <= set(whole_devices)
    # Every other site is all there.
    others = {d.id for d in whole.devices() if d.site_id != site}
    assert others <= {d.id for d in result.devices()}
    # Two pages for each of the site's collections (rooms 1 page, devices 3,
    # before): the first and the one served again, and no more.
    assert sandbox.stats.requests == whole.stats.requests - 4 + 2 * 2


async def test_endless_pages_stop_at_the_items_a_collection_without_total_may_hold(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    sandbox.faults = Faults(endless_pages=frozenset({site}))
    async with client_of(sandbox, urls, max_items=40) as client:
        result = await client.crawl(page_size=10)
    failures = sorted(result.failures, key=lambda f: str(f.collection))
    assert [(f.kind, f.collection, f.offset) for f in failures] == [
        ("paging_loop", "rooms", 40),
        ("paging_loop", "site_devices", 40),
    ]
    assert all("40 items without a total (max_items_without_total)" in f.message for f in failures)
    rooms, devices = site_tree_ids(result, site)
    assert len(rooms) == len(set(rooms)) == 40  # 3 real rooms, then 37 the server made up
    assert len(devices) == len(set(devices)) == 40


async def test_a_page_served_again_under_a_total_stops_every_page_still_to_come(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    # 100,000 items claimed: 20,000 pages of 5 that would be fetched, many at once.
    sandbox.faults = Faults(
        same_page_forever=frozenset({site}), huge_totals=frozenset({site}), huge_total=100_000
    )
    async with client_of(sandbox, urls) as client:
        result = await client.crawl(page_size=5)
        workers = client.max_in_flight * 2 + 4
    kinds = Counter((f.kind, f.collection) for f in result.failures)
    # One failure per collection: pages in flight when the loop was found are dropped.
    assert kinds == {("paging_loop", "rooms"): 1, ("paging_loop", "site_devices"): 1}
    # Pages already handed out when the first repeat came back, and no more.
    assert result.stats.requests < 60 + 2 * workers


async def test_crawl_to_jsonl_records_the_loop_once_and_finishes(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    portfolio = sandbox.portfolio_for()
    location = next(portfolio.locations())["id"]
    repeating, endless = (site["id"] for site in portfolio.sites(location, limit=2))
    sandbox.faults = Faults(
        same_page_forever=frozenset({repeating}), endless_pages=frozenset({endless})
    )
    output = tmp_path / "out.jsonl"
    async with client_of(sandbox, urls, max_items=30) as client:
        crawled = await crawl_to_jsonl(client, output, page_size=10)
    assert crawled.finished
    records = [json.loads(line) for line in output.read_text().splitlines()]
    failures = [r for r in records if r["type"] == "failure"]
    assert Counter((r["kind"], r["collection"], r["parent_id"]) for r in failures) == {
        ("paging_loop", "rooms", endless): 1,
        ("paging_loop", "rooms", repeating): 1,
        ("paging_loop", "site_devices", endless): 1,
        ("paging_loop", "site_devices", repeating): 1,
    }
    by_site = Counter((r["type"], r["siteId"]) for r in records if r["type"] in ("room", "device"))
    assert by_site[("room", repeating)] == 3
    assert by_site[("device", repeating)] == 10  # the first page, once
    assert by_site[("room", endless)] == by_site[("device", endless)] == 30
    ids = [r["data"]["id"] for r in records if r["type"] != "failure"]
    assert len(ids) == len(set(ids))


async def test_listing_a_collection_served_again_raises_paging_loop_after_its_first_page(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    sandbox.faults = Faults(same_page_forever=frozenset({site}))
    got: list[Any] = []
    async with client_of(sandbox, urls) as client:
        with pytest.raises(PagingLoop) as caught:
            await collect(client.rooms.iter(site, page_size=2), got)
    assert len(got) == len({room.id for room in got}) == 2
    error = caught.value
    assert error.kind == "paging_loop"
    assert (error.method, error.path) == ("GET", f"/sites/{site}/rooms?offset=2&limit=2")
    assert "only ids this collection gave already (the page before, again)" in str(error)


async def test_listing_endless_pages_raises_paging_loop_at_the_item_bound(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    portfolio = sandbox.portfolio_for()
    location = next(portfolio.locations())["id"]
    site, other_site = (s["id"] for s in portfolio.sites(location, limit=2))
    sandbox.faults = Faults(endless_pages=frozenset({site}))
    got: list[Any] = []
    async with client_of(sandbox, urls, max_items=25) as client:
        with pytest.raises(PagingLoop, match=r"max_items_without_total"):
            await collect(client.devices.of_site(site).iter(page_size=5), got)
        other = await client.devices.of_site(other_site).list(page_size=5)
    assert len(got) == len({device.id for device in got}) == 25
    assert len(other) == 12  # a listing that ends is read whole


async def test_a_total_beyond_max_pages_is_a_paging_loop_after_the_first_page(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    sandbox.faults = Faults(huge_totals=frozenset({site}))
    async with client_of(sandbox, urls) as client:
        result = await client.crawl(page_size=5)
        pages: list[Any] = []
        with pytest.raises(PagingLoop, match=r"claims 1000000000000000 items"):
            await collect(client.devices.of_site(site).pages(page_size=5), pages)
    assert {(f.kind, f.collection) for f in result.failures} == {
        ("paging_loop", "rooms"),
        ("paging_loop", "site_devices"),
    }
    assert len(pages) == 1


# -- pages a sandbox does not serve: a server of the test's own ----------------------


def pages_server(pages: dict[int, tuple[list[str], int]]) -> httpx2.MockTransport:
    """Serves ``/locations`` from ``{offset: (ids, limit applied)}``, without a total."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        offset = int(request.url.params.get("offset", "0"))
        ids, limit = pages.get(offset, ([], 1))
        data = [{"id": item} for item in ids]
        return httpx2.Response(200, json={"data": data, "meta": {"offset": offset, "limit": limit}})

    return httpx2.MockTransport(handler)


@pytest.mark.httpx2_only
async def test_pages_that_overlap_are_no_loop(sandbox: Sandbox, urls: SandboxUrls) -> None:
    # An item inserted at the front between two pages: the second starts with
    # the last of the first. Only a page of nothing but ids read already is a loop.
    transport = pages_server({0: (["a", "b"], 2), 2: (["b", "c"], 2), 4: (["d"], 2)})
    async with client_of(sandbox, urls, transport=transport) as client:
        listed = [location.id for location in await client.locations.list(page_size=2)]
    assert listed == ["a", "b", "b", "c", "d"]


@pytest.mark.httpx2_only
async def test_pages_that_shrink_for_ever_stop_at_the_page_bound(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    # 10 items, then one new item per page, each page "full" at a limit of 1:
    # the item bound (40) is far; the pages 40 items take at 10 a page (4,
    # and slack: 14) are not.
    served = {0: ([f"x{i}" for i in range(10)], 10)}
    served |= {offset: ([f"x{offset}"], 1) for offset in range(10, 100)}
    async with client_of(sandbox, urls, max_items=40, transport=pages_server(served)) as client:
        got: list[Any] = []
        with pytest.raises(PagingLoop, match=r"or 14 pages \(page 15, 24 items\)"):
            await collect(client.locations.iter(page_size=10), got)
    assert len(got) == 23


# -- acceptance: a real server in another process, each crawl in a child -----------

ACCEPTANCE_SECONDS = 10.0
ACCEPTANCE_RSS_MB = 50.0


def run_child(process: SandboxProcess, mode: str, output: Path) -> dict[str, Any]:
    urls = process.urls
    command = [
        sys.executable,
        "-m",
        "tests.test_paging_loops",
        mode,
        urls.api_base_url,
        urls.token_url,
        str(output),
    ]
    token = json.dumps(process.issue_token())
    # The crawl's own bound is what is judged; this one only stops a crawl that never ends.
    done = subprocess.run(
        command, input=token, capture_output=True, text=True, timeout=45, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["crawl", "jsonl"])
@pytest.mark.parametrize("fault", ["endless_pages", "same_page_forever"])
def test_a_server_that_keeps_answering_is_left_within_10_s_and_50_mb(
    fault: str, mode: str, tmp_path: Path
) -> None:
    with SandboxProcess(seed=7) as process:
        portfolio_sites = 3 * 4  # the default portfolio: 3 locations of 4 sites
        if fault == "endless_pages":
            # One site's rooms and devices go on for ever; the rest is as it is.
            first = process.issue_token()  # a customer's grant, to find a site id
            site = first_site_of(process, first)
            process.set_faults(endless_pages=[site])
        else:
            process.set_faults(same_page_forever=["*"])  # every collection, every level
        report = run_child(process, mode, tmp_path / "out.jsonl")
    kinds = Counter(report["failure_kinds"])
    assert set(kinds) == {"paging_loop"}, report
    if fault == "endless_pages":
        assert kinds["paging_loop"] == 2, report  # the site's rooms and devices
        assert report["rooms"] >= 10_000, report
        assert report["devices"] >= 10_000, report
    else:
        # Locations, each location's sites, each site's rooms and devices.
        assert kinds["paging_loop"] == 1 + 3 + 2 * portfolio_sites, report
        assert report["devices"] == 12 * portfolio_sites, report
    assert report["seconds"] < ACCEPTANCE_SECONDS, report
    assert report["rss_growth_mb"] < ACCEPTANCE_RSS_MB, report


def first_site_of(process: SandboxProcess, token: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx2.Client(base_url=process.urls.api_base_url, headers=headers) as http:
        location = http.get("/locations").json()["data"][0]["id"]
        site: str = http.get(f"/locations/{location}/sites").json()["data"][0]["id"]
    return site


# -- the child ---------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> bool:
    """Start ``VmHWM`` again from the current RSS (Linux, ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _child(args: argparse.Namespace, token: dict[str, Any]) -> dict[str, Any]:
    store = MemoryTokenStore()
    await store.save("acct", Token.from_response(token))
    async with (
        WiserOAuth(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=REDIRECT_URI,
            store=store,
            token_url=args.token_url,
        ) as oauth,
        AsyncWiserClient(oauth, "acct", config=ApiConfig(base_url=args.api_base_url)) as client,
    ):
        await client.locations.page(limit=1)  # connections opened, lazy imports done
        gc.collect()
        baseline = _status_kb("VmRSS")
        reset = _reset_peak()
        started = time.perf_counter()
        if args.mode == "crawl":
            result = await client.crawl()
            seconds = time.perf_counter() - started
            failures = result.failures
            stats = result.stats
        else:
            crawled = await crawl_to_jsonl(client, Path(args.output))
            seconds = time.perf_counter() - started
            failures, stats = crawled.failures, crawled.run
        peak = _status_kb("VmHWM")
    return {
        "seconds": seconds,
        "baseline_kb": baseline,
        "peak_kb": peak,
        # Without a reset, VmHWM may hold a peak of the setup: the growth is then overstated.
        "peak_reset": reset,
        "rss_growth_mb": (peak - baseline) / 1024,
        "requests": stats.requests,
        "rooms": stats.rooms,
        "devices": stats.devices,
        "failure_kinds": dict(Counter(f.kind for f in failures)),
        "messages": sorted({f.message for f in failures})[:3],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["crawl", "jsonl"])
    parser.add_argument("api_base_url")
    parser.add_argument("token_url")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    token = json.loads(sys.stdin.read())  # on stdin: never on a command line ps shows
    report = anyio.run(_child, args, token)
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
