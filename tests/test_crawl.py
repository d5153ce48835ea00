"""Portfolio walks and crawls, over loopback HTTP against sandboxes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from tests.support import (
    FAST_RETRY,
    CountingTransport,
    HoldingTransport,
    PassThroughTransport,
    issue,
    make_client,
    make_oauth,
    wait_until,
)
from token_stores import MemoryTokenStore
from wiser_async import AsyncWiserClient, CrawlResult, Failure, Node
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox, SandboxUrls

from .conftest import SPEC

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")

Key = tuple[str, str, str]  # (account, kind, id)


def truth(sandbox: Sandbox, account: str, customer: str) -> dict[Key, dict[str, Any]]:
    """Every node of a customer's ground truth, with its parents."""
    portfolio = sandbox.portfolio_for(customer)
    nodes: dict[Key, dict[str, Any]] = {}
    for location in portfolio.locations():
        nodes[(account, "location", location["id"])] = {}
        for site in portfolio.sites(location["id"]):
            nodes[(account, "site", site["id"])] = {"location_id": location["id"]}
            for room in portfolio.rooms(site["id"]):
                nodes[(account, "room", room["id"])] = {
                    "location_id": location["id"],
                    "site_id": site["id"],
                }
            for device in portfolio.site_devices(site["id"]):
                nodes[(account, "device", device["id"])] = {
                    "location_id": location["id"],
                    "site_id": site["id"],
                    "room_id": device["roomId"],
                }
    return nodes


def parents(node: Node) -> dict[str, Any]:
    found = {"location_id": node.location_id, "site_id": node.site_id, "room_id": node.room_id}
    return {key: value for key, value in found.items() if value is not None or key == "room_id"}


def expected_parents(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    return (
        {**entry, "room_id": entry.get("room_id")}
        if kind == "device"
        else {
            **entry,
            "room_id": None,
        }
    )


def covered(key: Key, entry: dict[str, Any], failures: list[Failure]) -> bool:
    """Whether some failure explains why this node is missing."""
    account, kind, node_id = key
    for failure in failures:
        if failure.account != account:
            continue
        if failure.resource == "*":
            return True
        collection, parent = failure.collection, failure.parent_id
        if collection == "locations":
            return True  # a page of locations, and everything under them
        if collection == "sites" and parent == entry.get("location_id", node_id):
            return True
        site = entry.get("site_id", node_id if kind == "site" else None)
        if collection in ("rooms", "site_devices", "room_devices") and site == failure.site_id:
            if collection == "rooms" and kind == "room":
                return True
            if collection in ("site_devices", "room_devices") and kind == "device":
                return True
    return False


def check_against_truth(
    result_nodes: list[Node], failures: list[Failure], expected: dict[Key, dict[str, Any]]
) -> None:
    seen = Counter((node.account, node.kind, node.id) for node in result_nodes)
    duplicates = [key for key, count in seen.items() if count > 1]
    assert not duplicates
    extra = set(seen) - set(expected)
    assert not extra
    for node in result_nodes:
        key = (node.account, node.kind, node.id)
        assert parents(node) == expected_parents(expected[key], node.kind), key
    missing = [key for key in expected if key not in seen]
    unexplained = [key for key in missing if not covered(key, expected[key], failures)]
    assert not unexplained, f"{len(unexplained)} missing nodes with no failure reported"


@asynccontextmanager
async def crawler(
    sandbox: Sandbox, urls: SandboxUrls, accounts: dict[str, str] | None = None, **options: Any
) -> AsyncIterator[AsyncWiserClient]:
    """A client for each account (account key -> customer) sharing one pool."""
    accounts = accounts or {"acct": "default"}
    store = MemoryTokenStore()
    for account, customer in accounts.items():
        await issue(sandbox, store, account, customer=customer)
    first = next(iter(accounts))
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, first, **options) as client,
    ):
        yield client


def served(spec: PortfolioSpec, **faults: Any) -> Iterator[tuple[Sandbox, SandboxUrls]]:
    sandbox = Sandbox(spec, faults=Faults(**faults))
    with sandbox.serve_in_thread() as urls:
        yield sandbox, urls


async def test_walk_yields_every_node_with_its_parents_before_children(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with crawler(sandbox, urls) as client, client.walk(page_size=5) as walk:
        nodes = [node async for node in walk]
    check_against_truth(nodes, [], truth(sandbox, "acct", "default"))
    assert len(nodes) == len(truth(sandbox, "acct", "default"))
    position = {node.id: index for index, node in enumerate(nodes)}
    for index, node in enumerate(nodes):
        for parent in (node.location_id, node.site_id):
            if parent is not None:
                assert position[parent] < index
    assert walk.failures == []
    stats = walk.stats
    assert (stats.locations, stats.sites, stats.rooms, stats.devices) == (
        SPEC.locations,
        SPEC.locations * SPEC.sites_per_location,
        SPEC.locations * SPEC.sites_per_location * SPEC.rooms_per_site,
        SPEC.locations * SPEC.sites_per_location * SPEC.devices_per_site,
    )
    assert stats.requests == sandbox.stats.requests


async def test_crawl_groups_devices_into_rooms_and_keeps_roomless_ones_under_the_site(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with crawler(sandbox, urls) as client:
        result = await client.crawl()
    assert result.complete
    portfolio = sandbox.portfolio_for()
    assert len(result.locations) == SPEC.locations
    for location_tree in result.locations:
        assert len(location_tree.sites) == SPEC.sites_per_location
        for site_tree in location_tree.sites:
            site_id = site_tree.site.id
            assert {room.room.id for room in site_tree.rooms} == {
                room["id"] for room in portfolio.rooms(site_id)
            }
            for room_tree in site_tree.rooms:
                assert {device.id for device in room_tree.devices} == {
                    device["id"] for device in portfolio.room_devices(room_tree.room.id)
                }
            assert len(site_tree.devices) == SPEC.unassigned_devices_per_site
            assert all(device.room_id is None for device in site_tree.devices)
    check_against_truth(list(result.nodes()), [], truth(sandbox, "acct", "default"))


async def test_devices_by_room_reads_the_same_portfolio(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with crawler(sandbox, urls) as client:
        result = await client.crawl(devices_by="room", page_size=3)
    check_against_truth(list(result.nodes()), [], truth(sandbox, "acct", "default"))
    assert result.stats.devices == SPEC.locations * SPEC.sites_per_location * SPEC.devices_per_site
    assert sandbox.stats.requests_by_route["/rooms/{roomId}/devices"] > 0


class SendLog(PassThroughTransport):
    """Notes in `log` each request as it reaches the HTTP stack; the first waits for `go`."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.go = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.log.append(f"sent {request.url.path.rsplit('/', 2)[-2]}")
        if len(self.log) == 1:
            await self.go.wait()
        return await self.inner.handle_async_request(request)


# trio runs a batch of woken tasks in an order it draws at random (by design),
# so which of two ready tasks goes first is defined on asyncio only.
@pytest.mark.asyncio_only
async def test_a_freed_slot_sends_its_next_request_before_the_answer_is_decoded(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    first, second = [location["id"] for location in sandbox.portfolio_for().locations()][:2]
    log: list[str] = []
    transport = SendLog(log)
    async with crawler(sandbox, urls, max_in_flight=1, transport=transport) as client:

        async def read(location_id: str) -> None:
            await client.sites.list(location_id)
            log.append(f"decoded {location_id}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, first)
            tg.start_soon(read, second)
            # The first holds the one slot; the second waits for it.
            await anyio.wait_all_tasks_blocked()
            assert log == [f"sent {first}"]
            transport.go.set()
    # The second call goes out as soon as the first answer is in, before that
    # answer is decoded, not after.
    assert log == [f"sent {first}", f"sent {second}", f"decoded {first}", f"decoded {second}"]


async def test_in_flight_requests_never_exceed_the_client_limit(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    # Requests under the 12 sites wait until 4 are out at once: the limit is
    # used to the full, and (latency keeping answers on the wire) never beyond.
    sandbox.faults = Faults(latency=0.02)
    under_sites = HoldingTransport(hold=lambda request: "/sites/" in request.url.path, together=4)
    async with crawler(sandbox, urls, max_in_flight=4, transport=under_sites) as client:
        result = await client.crawl(page_size=4)
    assert result.complete
    assert (under_sites.peak, under_sites.released_by_patience) == (4, 0)
    assert sandbox.stats.peak_in_flight == 4


async def test_pages_of_a_collection_with_a_total_are_fetched_concurrently() -> None:
    # 12 pages of devices: once the first gives the total, the 11 after it go
    # out together, 8 at once (the limit), before any of them is answered.
    later_pages = HoldingTransport(
        hold=lambda request: (
            request.url.path.endswith("/devices") and request.url.params.get("offset", "0") != "0"
        ),
        together=8,
    )
    for sandbox, urls in served(
        PortfolioSpec(locations=1, sites_per_location=1, rooms_per_site=0, devices_per_site=60)
    ):
        async with crawler(sandbox, urls, max_in_flight=8, transport=later_pages) as client:
            result = await client.crawl(page_size=5)
        assert result.stats.devices == 60
        assert sandbox.stats.requests_by_route["/sites/{siteId}/devices"] == 12
        assert (later_pages.peak, later_pages.released_by_patience) == (8, 0)


async def test_slow_consumer_slows_the_walk_instead_of_buffering(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with (
        crawler(sandbox, urls, max_in_flight=2) as client,
        client.walk(page_size=2, buffer=1) as walk,
    ):
        iterator = aiter(walk)
        await anext(iterator)
        # The consumer holds still: the workers fill the buffer and block, with
        # nothing left on the wire. A walk racing ahead would read the whole
        # portfolio (latency 0) before its requests ran out.
        await wait_until(lambda: sandbox.stats.requests > 1 and sandbox.stats.in_flight == 0)
        during_stall = sandbox.stats.requests
        rest = [node async for node in iterator]
        workers = walk.workers
    # Blocked workers hold one page each, plus the stream's buffer.
    assert during_stall <= workers + 2
    assert len(rest) + 1 == len(truth(sandbox, "acct", "default"))


async def test_forbidden_missing_and_malformed_parts_are_recorded_and_the_crawl_goes_on(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    portfolio = sandbox.portfolio_for()
    locations = [location["id"] for location in portfolio.locations()]
    sites = [site["id"] for site in portfolio.sites(locations[1])]
    rooms = [room["id"] for room in portfolio.rooms(sites[2])]
    sandbox.faults = Faults(
        forbidden=frozenset({sites[0]}),
        missing=frozenset({locations[2]}),
        malformed=frozenset({rooms[0]}),
    )
    async with crawler(sandbox, urls) as client:
        result = await client.crawl(devices_by="room")
    kinds = Counter(failure.kind for failure in result.failures)
    # The forbidden site: its rooms and its devices; the missing location:
    # its sites; the malformed room: its devices.
    assert kinds == {"forbidden": 2, "not_found": 1, "decode": 1}
    forbidden = [failure for failure in result.failures if failure.kind == "forbidden"]
    assert {failure.status for failure in forbidden} == {403}
    assert all(failure.site_id == sites[0] for failure in forbidden)
    assert all("403" in failure.message for failure in forbidden)
    decode = next(failure for failure in result.failures if failure.kind == "decode")
    assert decode.parent_id == rooms[0]
    assert decode.resource.startswith(f"/rooms/{rooms[0]}/devices")
    check_against_truth(list(result.nodes()), result.failures, truth(sandbox, "acct", "default"))
    assert result.stats.failures == 4


async def test_a_crawl_with_5xx_drops_and_429_bursts_equals_the_truth_or_reports_what_is_missing(
    anyio_backend: object,
) -> None:
    spec = PortfolioSpec(
        seed=3, locations=3, sites_per_location=6, rooms_per_site=2, devices_per_site=14
    )
    for sandbox, urls in served(
        spec,
        error_rate=0.05,
        drop_rate=0.02,
        throttle_burst_every=0.5,
        throttle_burst_length=0.05,
        retry_after=0.05,
        seed=11,
    ):
        retry = attrs.evolve(FAST_RETRY, attempts=6, budget_burst=30)
        async with crawler(sandbox, urls, retry=retry, max_in_flight=8) as client:
            with anyio.fail_after(50):
                result = await client.crawl(page_size=4)
        assert sandbox.stats.responses_by_status.get(503, 0) > 0
        assert sandbox.stats.dropped > 0
        assert sandbox.stats.throttled > 0
        check_against_truth(
            list(result.nodes()), result.failures, truth(sandbox, "acct", "default")
        )
        assert result.stats.retries > 0


async def test_cancelling_a_walk_stops_every_request_and_leaks_no_connection(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    sandbox.faults = Faults(latency=0.1)
    counted = CountingTransport()
    async with crawler(sandbox, urls, transport=counted) as client:
        # Cancelled while requests are in flight, however slow the machine is:
        # once a few have gone out, not after a fixed time.
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def cancel_when_busy() -> None:
                    await wait_until(lambda: counted.started >= 3 and counted.open > 0)
                    scope.cancel()

                group.start_soon(cancel_when_busy)
                async with client.walk(page_size=2) as walk:
                    async for _ in walk:
                        pass
        assert scope.cancelled_caught
        assert counted.started >= 3
        # Every request the walk started has ended and given back its connection.
        assert counted.open == 0
        after_cancel = counted.started
        # The client is still usable after the cancelled walk, and sends only its own request.
        assert len(await client.locations.list()) == SPEC.locations
        assert counted.started == after_cancel + 1
        assert counted.open == 0
    await wait_until(lambda: sandbox.stats.in_flight == 0)


async def test_breaking_out_of_a_walk_early_stops_it(sandbox: Sandbox, urls: SandboxUrls) -> None:
    counted = CountingTransport()
    async with crawler(sandbox, urls, transport=counted) as client:
        async with client.walk(page_size=2) as walk:
            async for node in walk:
                if node.kind == "site":
                    break
        # Leaving the walk's block ended its requests; the next call is the only one sent.
        assert counted.open == 0
        after_break = counted.started
        await client.locations.list()
        assert counted.started == after_break + 1


async def test_deadline_reports_what_was_not_read(sandbox: Sandbox, urls: SandboxUrls) -> None:
    sandbox.faults = Faults(latency=0.2)
    async with crawler(sandbox, urls) as client:
        started = anyio.current_time()
        result = await client.crawl(timeout=0.5, page_size=2)
        elapsed = anyio.current_time() - started
    assert elapsed < 2.0
    assert not result.complete
    assert {failure.kind for failure in result.failures} == {"deadline"}
    check_against_truth(list(result.nodes()), result.failures, truth(sandbox, "acct", "default"))


async def test_many_accounts_share_the_limit_fairly() -> None:
    spec = PortfolioSpec(locations=4, sites_per_location=10, rooms_per_site=1, devices_per_site=5)
    small = PortfolioSpec(locations=1, sites_per_location=2, rooms_per_site=1, devices_per_site=5)
    sandbox = Sandbox(spec, customers={"small-co": small}, faults=Faults(latency=0.01))
    with sandbox.serve_in_thread() as urls:
        accounts = {"big": "big-co", "small": "small-co"}
        async with (
            crawler(sandbox, urls, accounts, max_in_flight=4) as client,
            client.walk(accounts=list(accounts), page_size=3) as walk,
        ):
            order = [node.account async for node in walk]
        assert sandbox.stats.peak_in_flight <= 4
    last_small = max(index for index, account in enumerate(order) if account == "small")
    # Round-robin between accounts: the small one is done early, not after the big one.
    assert last_small < len(order) / 3
    expected = {**truth(sandbox, "big", "big-co"), **truth(sandbox, "small", "small-co")}
    assert len(order) == len(expected)


async def test_an_account_needing_authorization_fails_alone(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with crawler(sandbox, urls) as client:
        result = await client.crawl(accounts=["acct", "never-authorized"])
    failures = result.failures
    assert len(failures) == 1
    assert failures[0].account == "never-authorized"
    assert failures[0].kind == "authorization"
    assert failures[0].resource == "*"
    assert result.portfolios["never-authorized"] == []
    check_against_truth(
        [node for node in result.nodes() if node.account == "acct"],
        [],
        truth(sandbox, "acct", "default"),
    )


async def test_walk_options_are_validated(sandbox: Sandbox, urls: SandboxUrls) -> None:
    async with crawler(sandbox, urls) as client:
        with pytest.raises(ValueError, match="devices_by"):
            await client.crawl(devices_by="floor")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="page_size"):
            await client.crawl(page_size=501)


def test_crawl_result_of_several_accounts_has_no_single_locations() -> None:
    from wiser_async import CrawlStats

    result = CrawlResult(portfolios={"a": [], "b": []}, failures=[], stats=CrawlStats())
    with pytest.raises(ValueError, match="several accounts"):
        _ = result.locations


async def test_an_error_in_the_walk_block_comes_out_as_itself(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async def consume(client: AsyncWiserClient) -> None:
        async with client.walk() as walk:
            async for _ in walk:
                raise LookupError("the consumer failed")

    async with crawler(sandbox, urls) as client:
        with pytest.raises(LookupError, match="consumer"):
            await consume(client)


@asynccontextmanager
async def stub_api(handler: Any) -> AsyncIterator[AsyncWiserClient]:
    """A client whose API (and token endpoint) is `handler`, in process."""
    from token_stores import Token
    from wiser_async import ApiConfig, WiserOAuth

    store = MemoryTokenStore()
    await store.save("acct", Token(access_token="a", refresh_token="r", expires_at=4e9))
    transport = httpx2.MockTransport(handler)
    oauth = WiserOAuth(
        client_id="c",
        client_secret="s",
        store=store,
        token_url="https://auth.invalid/token",
        transport=transport,
    )
    async with AsyncWiserClient(
        oauth,
        "acct",
        config=ApiConfig(base_url="https://api.invalid/v1"),
        transport=transport,
        retry=FAST_RETRY,
    ) as client:
        yield client


def page_of(
    request: httpx2.Request, items: list[dict[str, Any]], *, cap: int, echo: bool
) -> httpx2.Response:
    offset = int(request.url.params["offset"])
    limit = int(request.url.params["limit"])
    served = items[offset : offset + min(limit, cap)]
    meta: dict[str, Any] = {"offset": offset, "total": len(items)}
    if echo:
        meta["limit"] = limit  # some servers echo the limit asked, not the one applied
    return httpx2.Response(200, json={"data": served, "meta": meta})


@pytest.mark.httpx2_only  # in process (a MockTransport): no HTTP stack to vary
@pytest.mark.parametrize("echo", [True, False])
async def test_a_server_serving_fewer_items_than_asked_loses_none(echo: bool) -> None:
    locations = [{"id": f"loc-{index}"} for index in range(250)]

    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path.endswith("/locations"):
            return page_of(request, locations, cap=100, echo=echo)
        return httpx2.Response(200, json={"data": [], "meta": {"total": 0}})

    async with stub_api(handler) as client:
        result = await client.crawl(page_size=500)
    assert result.complete
    assert sorted(tree.location.id for tree in result.locations) == sorted(
        location["id"] for location in locations
    )


@pytest.mark.httpx2_only  # in process (a MockTransport): no HTTP stack to vary
async def test_a_page_shorter_than_its_share_is_completed() -> None:
    sites = [{"id": f"site-{index}"} for index in range(30)]
    short_once = {"done": False}

    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path.endswith("/locations"):
            return httpx2.Response(200, json={"data": [{"id": "l"}], "meta": {"total": 1}})
        if path.endswith("/sites"):
            offset = int(request.url.params["offset"])
            if offset == 10 and not short_once["done"]:
                short_once["done"] = True  # this once, 4 of the 10 items asked
                return httpx2.Response(
                    200, json={"data": sites[10:14], "meta": {"offset": 10, "total": 30}}
                )
            return page_of(request, sites, cap=500, echo=True)
        return httpx2.Response(200, json={"data": [], "meta": {"total": 0}})

    async with stub_api(handler) as client:
        result = await client.crawl(page_size=10)
    found = [site.site.id for site in result.locations[0].sites]
    assert sorted(found) == sorted(site["id"] for site in sites)
    assert len(found) == len(set(found))  # and no item twice


@pytest.mark.httpx2_only  # in process (a MockTransport): no HTTP stack to vary
async def test_devices_read_by_room_stay_in_that_room_even_without_room_id() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        data: list[dict[str, Any]] = []
        if path.endswith("/locations"):
            data = [{"id": "l"}]
        elif path.endswith("/l/sites"):
            data = [{"id": "s"}]
        elif path.endswith("/s/rooms"):
            data = [{"id": "r"}]
        elif path.endswith("/r/devices"):
            data = [{"id": "d1"}]  # no roomId in a room's own listing
        elif path.endswith("/s/devices"):
            data = [{"id": "d1", "roomId": "r"}, {"id": "meter", "roomId": None}]
        return httpx2.Response(200, json={"data": data, "meta": {"total": len(data)}})

    async with stub_api(handler) as client:
        result = await client.crawl(devices_by="room")
    site = result.locations[0].sites[0]
    assert [device.id for device in site.rooms[0].devices] == ["d1"]
    assert [device.id for device in site.devices] == ["meter"]


@pytest.mark.httpx2_only  # in process (a MockTransport): no HTTP stack to vary
async def test_a_token_endpoint_outage_fails_parts_not_the_account() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token":
            return httpx2.Response(503, text="<html><title>down</title></html>")
        return httpx2.Response(401, json={"error": {"code": "invalid_token"}})

    async with stub_api(handler) as client:
        result = await client.crawl()
    kinds = {failure.kind for failure in result.failures}
    assert kinds == {"token_endpoint"}


async def test_two_crawls_at_once_on_one_client_each_count_only_their_own_requests() -> None:
    big = PortfolioSpec(locations=2, sites_per_location=3, rooms_per_site=2, devices_per_site=6)
    small = PortfolioSpec(locations=1, sites_per_location=2, rooms_per_site=1, devices_per_site=3)
    # Latency keeps both crawls on the wire together.
    sandbox = Sandbox(big, customers={"small-co": small}, faults=Faults(latency=0.01))
    with sandbox.serve_in_thread() as urls:
        accounts = {"big": "big-co", "small": "small-co"}
        async with crawler(sandbox, urls, accounts) as client:
            alone = {
                account: (await client.crawl(accounts=[account], page_size=2)).stats.requests
                for account in accounts
            }
            before = sandbox.stats.requests
            together: dict[str, int] = {}

            async def crawl(account: str) -> None:
                result = await client.crawl(accounts=[account], page_size=2)
                together[account] = result.stats.requests

            async with anyio.create_task_group() as group:
                for account in accounts:
                    group.start_soon(crawl, account)
            sent = sandbox.stats.requests - before
    assert alone["big"] != alone["small"]
    assert together == alone
    assert sum(together.values()) == sent
