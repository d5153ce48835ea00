"""Every endpoint of the contract, over real loopback HTTP against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import issue, make_client, make_oauth
from token_stores import MemoryTokenStore
from wiser_async import (
    AsyncWiserClient,
    Device,
    DeviceCategory,
    Location,
    Room,
    Site,
)
from wiser_async._decode import Codec
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

from .conftest import SPEC

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")

CODEC = Codec()


def truth(data: dict[str, Any], cls: type[Any]) -> Any:
    return CODEC.structure(data, cls, method="GET", path="(ground truth)")


@pytest.fixture
async def client(sandbox: Sandbox, urls: SandboxUrls) -> Any:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        yield client


async def test_locations_list_crosses_page_boundaries(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    expected = [truth(d, Location) for d in sandbox.portfolio_for().locations()]
    got = await client.locations.list(page_size=2)
    assert got == expected
    assert len(got) == SPEC.locations
    # 3 locations at 2 per page: two pages, the second short.
    assert sandbox.stats.requests_by_route["/locations"] == 2


async def test_location_get_and_unknown_fields_are_kept(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    first = next(sandbox.portfolio_for().locations())
    location = await client.locations.get(first["id"])
    assert location == truth(first, Location)
    assert "customerReference" in location.extra
    assert client.to_wire(location)["customerReference"] == first["customerReference"]


async def test_sites_of_a_location_and_site_get_with_unknown_enum(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    portfolio = sandbox.portfolio_for()
    location_id = next(portfolio.locations())["id"]
    sites = await client.sites.list(location_id, page_size=3)
    assert sites == [truth(d, Site) for d in portfolio.sites(location_id)]
    assert len(sites) == SPEC.sites_per_location
    unknown_types = [site for site in sites if site.type == "agricultural"]
    assert unknown_types, "the sandbox gives every 4th site an unknown type"
    assert await client.sites.get(sites[1].id) == sites[1]


async def test_rooms_of_a_site_with_unknown_enum(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    portfolio = sandbox.portfolio_for()
    location_id = next(portfolio.locations())["id"]
    rooms: list[Room] = []
    for site in portfolio.sites(location_id):
        rooms.extend(await client.rooms.list(site["id"], page_size=2))
    expected = [
        truth(d, Room) for site in portfolio.sites(location_id) for d in portfolio.rooms(site["id"])
    ]
    assert rooms == expected
    assert any(room.type == "garage" for room in rooms)


async def test_site_devices_include_devices_in_no_room(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    devices = await client.devices.of_site(site_id).list(page_size=5)
    assert devices == [truth(d, Device) for d in portfolio.site_devices(site_id)]
    assert len(devices) == SPEC.devices_per_site
    assert sum(device.room_id is None for device in devices) == SPEC.unassigned_devices_per_site
    heat_pumps = [device for device in devices if device.category == "heat-pump"]
    assert heat_pumps
    assert not isinstance(heat_pumps[0].category, DeviceCategory)
    assert heat_pumps[0].extra["vendorExtension"] == {"protocol": "zigbee", "channel": 15}


async def test_room_devices_and_device_get(client: AsyncWiserClient, sandbox: Sandbox) -> None:
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    room_id = next(portfolio.rooms(site_id))["id"]
    devices = await client.devices.of_room(room_id).list(page_size=2)
    assert devices == [truth(d, Device) for d in portfolio.room_devices(room_id)]
    assert devices
    assert all(device.room_id == room_id for device in devices)
    assert await client.devices.get(devices[0].id) == devices[0]


async def test_pages_without_total_are_read_until_a_short_page(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    sandbox.faults = Faults(omit_total=True)
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    pages = [page async for page in client.devices.of_site(site_id).pages(page_size=5)]
    assert [len(page.items) for page in pages] == [5, 5, 2]
    assert all(page.total is None for page in pages)
    # An exact multiple of the page size costs one empty page more.
    pages = [page async for page in client.devices.of_site(site_id).pages(page_size=4)]
    assert [len(page.items) for page in pages] == [4, 4, 4, 0]


async def test_page_reports_total_when_the_api_gives_it(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    page = await client.locations.page(offset=1, limit=1)
    assert page.total == SPEC.locations
    assert page.offset == 1
    assert len(page.items) == 1
    assert not page.is_last


async def test_devices_are_listed_of_a_site_or_of_a_room_by_name(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    site = next(sandbox.portfolio_for().sites(next(sandbox.portfolio_for().locations())["id"]))
    by_site = client.devices.of_site(site["id"])
    assert by_site.path == f"/sites/{site['id']}/devices"
    room = next(sandbox.portfolio_for().rooms(site["id"]))
    assert client.devices.of_room(room["id"]).path == f"/rooms/{room['id']}/devices"
    with pytest.raises(ValueError, match="cannot be put in a URL path"):
        client.devices.of_site("")  # refused before any request
    assert sandbox.stats.requests == 0


async def test_ids_are_url_quoted_into_paths(client: AsyncWiserClient, sandbox: Sandbox) -> None:
    from wiser_async.errors import NotFound

    with pytest.raises(NotFound) as caught:
        await client.sites.get("a b?c#%")
    assert caught.value.path == "/sites/a%20b%3Fc%23%25"


@pytest.mark.httpx2_only  # the borrowed client is httpx2's own
async def test_borrowed_http_client_is_used_and_left_open(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    import httpx2

    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with httpx2.AsyncClient() as http, make_oauth(urls, store) as oauth:
        async with make_client(oauth, urls, http_client=http, timeout=5.0) as client:
            assert len(await client.locations.list()) == SPEC.locations
        assert not http.is_closed
        response = await http.get(urls.origin + "/openapi.json")
        assert response.status_code == 200


async def test_for_account_shares_the_pool_and_reads_another_customer(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "a", customer="alpha")
    await issue(sandbox, store, "b", customer="beta")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, "a") as alpha:
        beta = alpha.for_account("b")
        ids_a = {location.id for location in await alpha.locations.list()}
        ids_b = {location.id for location in await beta.locations.list()}
        assert ids_a.isdisjoint(ids_b)
        assert alpha.stats is beta.stats
        assert alpha.stats.requests == 2
        assert "b" in repr(beta)


async def test_closing_a_for_account_sibling_leaves_the_shared_pool_open(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "a")
    await issue(sandbox, store, "b")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, "a") as client:
        async with client.for_account("b") as sibling:
            assert await sibling.locations.list()
        assert await client.locations.list()  # still open


async def test_page_sizes_beyond_the_api_maximum_are_refused_before_asking(
    client: AsyncWiserClient, sandbox: Sandbox
) -> None:
    for call in (
        client.locations.list(page_size=501),
        client.locations.page(limit=0),
        client.devices.of_site("s").list(page_size=1000),
    ):
        with pytest.raises(ValueError, match="between 1 and 500"):
            await call
    assert sandbox.stats.requests == 0
