"""The sandbox's hostile answers, over real HTTP on loopback.

Deep nesting, oversized pages, huge totals, trickled bodies, year-long
``Retry-After``, redirects and ids no URL path may hold: each is what the
``Faults`` docstring says, covers only the ids listed and what is beneath them,
and never reaches the OAuth or admin routes. Plain httpx2, no wiser_async
client: these tests pin the server a client must survive.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import gc
import hashlib
import json
import logging
import secrets
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

REDIRECT_URI = "http://127.0.0.1:8765/callback"
CLIENT = ("sandbox-client", "sandbox-secret")
YEAR = 31_536_000


@attrs.frozen
class Ids:
    location: str
    site: str
    room: str
    device: str
    other_location: str
    other_site: str


def ids_of(sandbox: Sandbox) -> Ids:
    portfolio = sandbox.portfolio_for()
    location, other_location = (loc["id"] for loc in portfolio.locations(limit=2))
    site = next(portfolio.sites(location))["id"]
    room = next(portfolio.rooms(site))["id"]
    device = next(portfolio.room_devices(room))["id"]
    other_site = next(portfolio.sites(other_location))["id"]
    return Ids(location, site, room, device, other_location, other_site)


@contextlib.asynccontextmanager
async def api(
    sandbox: Sandbox, urls: SandboxUrls, **options: Any
) -> AsyncIterator[httpx2.AsyncClient]:
    """A loopback client of the API with a fresh bearer token."""
    token = sandbox.issue_token()
    async with httpx2.AsyncClient(
        base_url=urls.api_base_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
        **options,
    ) as client:
        yield client


async def no_trickle_running(sandbox: Sandbox) -> None:
    """Poll: the server thread counts a trickle's end just after its last byte, or its client."""
    for _ in range(500):
        if not sandbox.stats.trickling:
            return
        await anyio.sleep(0.01)
    raise AssertionError("a trickle still runs after 5 s")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def run_length(body: bytes, start: int, byte: bytes) -> int:
    """How many times ``byte`` repeats from ``start``: depth counted in bytes, not parsed."""
    return len(body) - start - len(body[start:].lstrip(byte))


# -- deep nesting -------------------------------------------------------------


async def test_deep_nesting_puts_100_000_levels_in_the_first_item_or_the_entity(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    field = b',"nested":'
    async with api(sandbox, urls) as client:
        plain_page = (await client.get(f"/sites/{ids.site}/devices?limit=3")).content
        plain_device = (await client.get(f"/devices/{ids.device}")).content
        sandbox.faults.deep_nesting = frozenset({ids.site})
        page = await client.get(f"/sites/{ids.site}/devices?limit=3")
        device = await client.get(f"/devices/{ids.device}")
    for response, plain in ((page, plain_page), (device, plain_device)):
        assert response.status_code == 200
        body = response.content
        assert int(response.headers["content-length"]) == len(body)
        start = body.index(field) + len(field)
        assert run_length(body, start, b"[") == 100_000
        assert run_length(body, start + 100_000, b"]") == 100_000
        assert len(body) == len(plain) + len(field) + 200_000
        # Without the field the answer is the real one, byte for byte.
        assert body.replace(field + nested(100_000), b"", 1) == plain
    # The field closes the first item: the page's prefix up to it is that item.
    prefix = page.content[: page.content.index(field)]
    assert json.loads(prefix + b"}]}")["data"][0] == json.loads(plain_page)["data"][0]
    assert json.loads(device.content[: device.content.index(field)] + b"}") == json.loads(
        plain_device
    )


async def test_deep_nesting_depth_is_set_and_an_empty_page_stays_empty(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    sandbox.faults.deep_nesting = frozenset({ids.site})
    sandbox.faults.nesting_depth = 4
    async with api(sandbox, urls) as client:
        page = (await client.get(f"/rooms/{ids.room}/devices")).json()
        empty = (await client.get(f"/sites/{ids.site}/devices?offset=500")).json()
        site = (await client.get(f"/sites/{ids.site}")).json()
    assert page["data"][0]["nested"] == [[[[]]]]
    assert all("nested" not in item for item in page["data"][1:])
    assert empty["data"] == []
    assert site["nested"] == [[[[]]]]


# -- oversized pages ----------------------------------------------------------


async def test_oversized_pages_hold_1_400_000_empty_objects_after_the_real_items(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    count = 1_400_000
    async with api(sandbox, urls) as client:
        plain = (await client.get(f"/sites/{ids.site}/rooms?limit=2")).content
        sandbox.faults.oversized_pages = frozenset({ids.site})
        response = await client.get(f"/sites/{ids.site}/rooms?limit=2")
    assert response.status_code == 200
    body = response.content
    assert int(response.headers["content-length"]) == len(body)
    assert len(body) == len(plain) + 3 * count
    assert 4 * 1024 * 1024 <= len(body) < 4.1 * 1024 * 1024
    filler = b"," + b"{}," * (count - 1) + b"{}"
    assert body == plain.replace(b'],"meta":', filler + b'],"meta":', 1)


async def test_oversized_page_keeps_its_real_items_and_meta(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    async with api(sandbox, urls) as client:
        plain = (await client.get(f"/sites/{ids.site}/devices?limit=2")).json()
        sandbox.faults.oversized_pages = frozenset({ids.site})
        sandbox.faults.oversized_items = 5
        page = (await client.get(f"/sites/{ids.site}/devices?limit=2")).json()
        empty = (await client.get(f"/sites/{ids.site}/devices?offset=99")).json()
    assert page["data"] == [*plain["data"], {}, {}, {}, {}, {}]
    assert page["meta"] == plain["meta"] == {"offset": 0, "limit": 2, "total": 12}
    assert empty["data"] == [{}] * 5


# -- huge totals --------------------------------------------------------------


async def test_huge_totals_report_10_15_over_real_pages(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    async with api(sandbox, urls) as client:
        plain = (await client.get(f"/sites/{ids.site}/devices?limit=5")).json()
        sandbox.faults.huge_totals = frozenset({ids.site})
        first = (await client.get(f"/sites/{ids.site}/devices?limit=5")).json()
        past_the_end = (await client.get(f"/sites/{ids.site}/devices?offset=15&limit=5")).json()
        beneath = (await client.get(f"/rooms/{ids.room}/devices")).json()
        sandbox.faults.omit_total = True
        sandbox.faults.huge_total = 2**70
        omitted = (await client.get(f"/sites/{ids.site}/devices?limit=5")).json()
    assert first["data"] == plain["data"]
    assert len(first["data"]) == 5  # full: nothing tells the client it is the end
    assert first["meta"] == {"offset": 0, "limit": 5, "total": 10**15}
    assert past_the_end == {"data": [], "meta": {"offset": 15, "limit": 5, "total": 10**15}}
    assert beneath["meta"]["total"] == 10**15
    assert omitted["meta"]["total"] == 2**70  # huge_totals wins over omit_total


# -- trickle ------------------------------------------------------------------


async def test_trickle_sends_headers_at_once_then_a_byte_per_interval(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    interval = 0.015
    sandbox.faults.missing = frozenset({ids.device})  # a short body: an error of ~100 bytes
    sandbox.faults.trickle = frozenset({ids.device})
    sandbox.faults.trickle_interval = interval
    chunks: list[tuple[float, bytes]] = []
    # A timeout per read, far shorter than the whole answer: it never fires.
    async with api(sandbox, urls, timeout=0.25) as client:
        started = time.perf_counter()
        async with client.stream("GET", f"/devices/{ids.device}") as response:
            headers_at = time.perf_counter()
            declared = int(response.headers["content-length"])
            async with contextlib.aclosing(response.aiter_raw()) as stream:
                async for chunk in stream:
                    chunks.append((time.perf_counter(), chunk))
        finished = chunks[-1][0]
    body = b"".join(chunk for _, chunk in chunks)
    assert response.status_code == 404
    assert len(body) == declared > 80
    assert json.loads(body)["error"]["code"] == "not_found"
    assert finished - started >= len(body) * interval
    assert len(chunks) > 1
    first_byte_at = chunks[0][0]
    assert first_byte_at - headers_at < (finished - headers_at) / 2
    await no_trickle_running(sandbox)
    stats = sandbox.stats
    assert (stats.trickled, stats.trickling, stats.trickles_abandoned) == (1, 0, 0)


async def test_a_client_leaving_a_trickle_stops_it_and_the_server_serves_on(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    ids = ids_of(sandbox)
    sandbox.faults.trickle = frozenset({ids.device})
    sandbox.faults.trickle_interval = 0.05  # a ~340-byte device: 17 s if nobody stopped it
    received = b""
    async with api(sandbox, urls) as client:
        async with client.stream("GET", f"/devices/{ids.device}") as response:
            assert int(response.headers["content-length"]) > 300
            # Cancelled rather than left: a generator left unexhausted warns on trio.
            with anyio.CancelScope() as reading:
                async for chunk in response.aiter_raw():
                    received += chunk
                    if len(received) >= 2:
                        reading.cancel()
        await no_trickle_running(sandbox)
        stats = sandbox.stats
        assert (stats.trickled, stats.trickling, stats.trickles_abandoned) == (1, 0, 1)
        assert received.startswith(b'{"')
        assert (await client.get("/locations")).status_code == 200
        sandbox.faults.trickle_interval = 0.0
        device = await client.get(f"/devices/{ids.device}")
    assert device.json() == sandbox.portfolio_for().device(ids.device)
    assert sandbox.stats.trickled == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_trickle_works_in_process_too() -> None:
    sandbox = Sandbox(faults=Faults(trickle=frozenset({"*"}), trickle_interval=0.0))
    token = sandbox.issue_token()
    async with httpx2.AsyncClient(
        transport=sandbox.transport(),
        base_url=sandbox.urls().api_base_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ) as client:
        page = await client.get("/locations?limit=2")
    assert page.json()["data"] == list(sandbox.portfolio_for().locations(limit=2))
    stats = sandbox.stats
    assert (stats.trickled, stats.trickling, stats.trickles_abandoned) == (1, 0, 0)


# -- long Retry-After and redirects -------------------------------------------


async def test_long_retry_after_answers_429_a_year_away(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    sandbox.faults.long_retry_after = frozenset({ids.site})
    async with api(sandbox, urls) as client:
        throttled = await client.get(f"/rooms/{ids.room}/devices")
        sandbox.faults.retry_after_format = "http-date"
        dated = await client.get(f"/sites/{ids.site}")
        sandbox.faults.long_retry_after_seconds = 2.5
        sandbox.faults.retry_after_format = "seconds"
        short = await client.get(f"/devices/{ids.device}")
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == str(YEAR)
    assert throttled.json()["error"]["code"] == "rate_limited"
    when = email.utils.parsedate_to_datetime(dated.headers["retry-after"]).timestamp()
    assert time.time() + YEAR - 5 <= when <= time.time() + YEAR + 5
    assert short.headers["retry-after"] == "2.5"
    assert sandbox.stats.throttled == 3


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_answer_3xx_with_a_location_and_no_body(
    sandbox: Sandbox, urls: SandboxUrls, status: int
) -> None:
    ids = ids_of(sandbox)
    sandbox.faults.redirects = frozenset({ids.location})
    sandbox.faults.redirect_status = status
    async with api(sandbox, urls) as client:
        away = await client.get(f"/sites/{ids.site}/devices")
        sandbox.faults.redirect_location = "/wiser/energy-monitoring/v1/locations"
        relative = await client.get(f"/locations/{ids.location}")
    assert away.status_code == status
    assert away.headers["location"] == "https://elsewhere.invalid/"
    assert (away.content, away.headers["content-length"]) == (b"", "0")
    assert relative.status_code == status
    assert relative.headers["location"] == "/wiser/energy-monitoring/v1/locations"


# -- odd ids ------------------------------------------------------------------


async def test_odd_ids_rename_the_last_items_of_the_first_page_only(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    odd = [".", "..", "", "a/../b"]
    async with api(sandbox, urls) as client:
        plain = (await client.get(f"/sites/{ids.site}/devices?limit=6")).json()
        plain_next = (await client.get(f"/sites/{ids.site}/devices?offset=6&limit=6")).json()
        sandbox.faults.odd_ids = frozenset({ids.site})
        first = (await client.get(f"/sites/{ids.site}/devices?limit=6")).json()
        second = (await client.get(f"/sites/{ids.site}/devices?offset=6&limit=6")).json()
        short = (await client.get(f"/sites/{ids.site}/devices?limit=2")).json()
        entity = (await client.get(f"/sites/{ids.site}")).json()
    assert [item["id"] for item in first["data"]] == [
        *(item["id"] for item in plain["data"][:2]),
        *odd,
    ]
    for renamed, real in zip(first["data"], plain["data"], strict=True):
        assert {**renamed, "id": real["id"]} == real  # only the id changes
    assert first["meta"] == plain["meta"] == {"offset": 0, "limit": 6, "total": 12}
    assert second == plain_next
    assert [item["id"] for item in short["data"]] == [".", ".."]
    assert entity["id"] == ids.site  # lists only


async def test_page_faults_compose_in_the_documented_order(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    sandbox.faults.update(
        {
            "odd_ids": ["*"],
            "deep_nesting": ["*"],
            "nesting_depth": 2,
            "oversized_pages": ["*"],
            "oversized_items": 2,
            "huge_totals": ["*"],
        }
    )
    async with api(sandbox, urls) as client:
        page = (await client.get(f"/sites/{ids.site}/rooms?limit=2")).json()
    real = list(sandbox.portfolio_for().rooms(ids.site, limit=2))
    assert page == {
        "data": [{**real[0], "id": ".", "nested": [[]]}, {**real[1], "id": ".."}, {}, {}],
        "meta": {"offset": 0, "limit": 2, "total": 10**15},
    }


# -- paging that never ends -----------------------------------------------------


async def test_endless_pages_go_on_past_the_real_items_with_copies_under_new_ids(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    real = list(sandbox.portfolio_for().rooms(ids.site))  # 3 rooms
    sandbox.faults.endless_pages = frozenset({ids.site})
    async with api(sandbox, urls) as client:
        first = (await client.get(f"/sites/{ids.site}/rooms?limit=5")).json()
        far = (await client.get(f"/sites/{ids.site}/rooms?offset=100&limit=2")).json()
        copy = await client.get(f"/rooms/{real[0]['id']}~3/devices")
    assert first == {
        "data": [
            *real,
            {**real[0], "id": f"{real[0]['id']}~3"},
            {**real[1], "id": f"{real[1]['id']}~4"},
        ],
        "meta": {"offset": 0, "limit": 5},  # full, and no total: another page follows
    }
    assert far["data"] == [
        {**real[1], "id": f"{real[1]['id']}~100"},
        {**real[2], "id": f"{real[2]['id']}~101"},
    ]
    assert copy.status_code == 404  # no other route knows a copy


async def test_same_page_forever_answers_every_offset_with_the_first_page(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    ids = ids_of(sandbox)
    real = list(sandbox.portfolio_for().rooms(ids.site))  # 3 rooms
    sandbox.faults.same_page_forever = frozenset({ids.site})
    async with api(sandbox, urls) as client:
        again = (await client.get(f"/sites/{ids.site}/rooms?offset=7&limit=2")).json()
        whole = (await client.get(f"/sites/{ids.site}/rooms?offset=3&limit=5")).json()
    assert again == {"data": real[:2], "meta": {"offset": 7, "limit": 2}}
    # Fewer items than asked, and a limit that says the page is full.
    assert whole == {"data": real, "meta": {"offset": 3, "limit": 3}}


# -- scope: the ids listed, what is beneath, nothing else ----------------------

# Each fault, with settings that make it quick and visible.
HOSTILE: dict[str, dict[str, Any]] = {
    "deep_nesting": {"nesting_depth": 3},
    "oversized_pages": {"oversized_items": 3},
    "huge_totals": {},
    "trickle": {"trickle_interval": 0.0},
    "long_retry_after": {},
    "redirects": {},
    "odd_ids": {},
    "endless_pages": {},
    "same_page_forever": {},
}
PAGE_ONLY = {"oversized_pages", "huge_totals", "odd_ids", "endless_pages", "same_page_forever"}


@pytest.mark.parametrize("scope", ["site", "*"])
@pytest.mark.parametrize("fault", sorted(HOSTILE))
async def test_each_fault_touches_only_the_ids_listed_and_what_is_beneath(
    sandbox: Sandbox, urls: SandboxUrls, fault: str, scope: str
) -> None:
    ids = ids_of(sandbox)
    beneath = {
        f"/sites/{ids.site}": False,
        f"/sites/{ids.site}/rooms": True,
        f"/sites/{ids.site}/devices": True,
        f"/rooms/{ids.room}/devices": True,
        f"/devices/{ids.device}": False,
    }
    elsewhere = {
        "/locations": True,
        f"/locations/{ids.location}": False,
        f"/locations/{ids.location}/sites": True,
        f"/locations/{ids.other_location}/sites": True,
        f"/sites/{ids.other_site}": False,
        f"/sites/{ids.other_site}/devices": True,
    }
    routes = {**beneath, **elsewhere}
    covered = set(beneath) if scope == "site" else set(routes)
    expected = {
        path for path in covered if routes[path] or fault not in PAGE_ONLY
    }  # a page-only fault leaves entities alone
    async with api(sandbox, urls) as client:
        plain = {path: await client.get(path) for path in routes}
        sandbox.faults.update({fault: [ids.site if scope == "site" else "*"], **HOSTILE[fault]})
        touched = set()
        for path, before in plain.items():
            trickled = sandbox.stats.trickled
            after = await client.get(path)
            if (after.status_code, after.content) != (
                before.status_code,
                before.content,
            ) or sandbox.stats.trickled != trickled:
                touched.add(path)
    assert touched == expected
    assert all(response.status_code == 200 for response in plain.values())


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_hostile_faults_never_touch_oauth_admin_or_openapi_routes(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    every = ["*"]
    sandbox.faults.update(
        dict.fromkeys(HOSTILE, every) | {"trickle_interval": 0.5, "nesting_depth": 10}
    )
    verifier, challenge = pkce()
    started = time.perf_counter()
    async with httpx2.AsyncClient() as client:
        authorized = await client.get(
            urls.authorize_url,
            params={
                "client_id": CLIENT[0],
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "scope": "energy-monitoring:read",
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert authorized.status_code == 302
        location = httpx2.URL(authorized.headers["location"])
        assert str(location).startswith(REDIRECT_URI)
        token = await client.post(
            urls.token_url,
            data={
                "grant_type": "authorization_code",
                "code": location.params["code"],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            auth=CLIENT,
        )
        assert token.status_code == 200
        assert token.json()["token_type"] == "Bearer"
        stats = await client.get(urls.origin + "/_sandbox/stats")
        assert stats.json()["requests"] == 0
        minted = await client.post(urls.origin + "/_sandbox/tokens", json={})
        assert minted.status_code == 200
        spec = await client.get(urls.origin + "/openapi.json")
        assert spec.json()["openapi"] == "3.1.0"
    assert time.perf_counter() - started < 5  # nothing trickled: ~150 s if the token had
    assert (sandbox.stats.requests, sandbox.stats.trickled) == (0, 0)


# -- settings -----------------------------------------------------------------

NEW_FIELDS: dict[str, Any] = {
    "deep_nesting": ["b", "a"],
    "nesting_depth": 7,
    "oversized_pages": ["c"],
    "oversized_items": 9,
    "huge_totals": ["*"],
    "huge_total": 2**64,
    "trickle": ["d"],
    "trickle_interval": 0.25,
    "long_retry_after": ["e"],
    "long_retry_after_seconds": 86_400,
    "redirects": ["f"],
    "redirect_status": 308,
    "redirect_location": "http://127.0.0.1:1/loop",
    "odd_ids": ["g"],
    "endless_pages": ["h"],
    "same_page_forever": ["i"],
    "error_format": "invalidParams",
}


async def test_admin_route_sets_the_hostile_fields_all_or_none(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    faults_url = urls.origin + "/_sandbox/faults"
    async with httpx2.AsyncClient() as client:
        patched = await client.patch(faults_url, json=NEW_FIELDS)
        assert patched.status_code == 200
        assert {name: patched.json()[name] for name in NEW_FIELDS} == {
            **NEW_FIELDS,
            "deep_nesting": ["a", "b"],
        }
        assert sandbox.faults.deep_nesting == frozenset({"a", "b"})
        assert (sandbox.faults.redirect_status, sandbox.faults.huge_total) == (308, 2**64)
        for bad in (
            {"redirect_status": 304},
            {"nesting_depth": 0},
            {"oversized_items": 10**9},
            {"huge_total": -1},
            {"trickle_interval": -1},
            {"odd_ids": "abc"},
            {"redirect_location": "https://x/\r\nSet-Cookie: a=b"},
            {"redirect_location": "https://é.invalid/☃"},
            {"nesting_depth": "deep"},
            {"error_format": "xml"},
        ):
            rejected = await client.patch(faults_url, json={"trickle": ["z"], **bad})
            assert rejected.status_code == 400, bad
            assert sandbox.faults.trickle == frozenset({"d"})  # all or none


def test_hostile_fields_default_and_round_trip_through_json() -> None:
    faults = Faults()
    assert (faults.nesting_depth, faults.oversized_items, faults.huge_total) == (
        100_000,
        1_400_000,
        10**15,
    )
    assert (faults.trickle_interval, faults.long_retry_after_seconds) == (0.5, YEAR)
    assert (faults.redirect_status, faults.redirect_location) == (
        302,
        "https://elsewhere.invalid/",
    )
    faults.update(NEW_FIELDS)
    encoded = faults.to_json()
    assert json.loads(json.dumps(encoded)) == encoded
    assert encoded["deep_nesting"] == ["a", "b"]
    again = Faults()
    again.update(encoded)
    assert again == faults
    with pytest.raises(TypeError, match="not one string"):
        Faults(trickle="abc")


# -- memory -------------------------------------------------------------------


async def test_hostile_bodies_are_bytes_not_python_object_trees() -> None:
    sandbox = Sandbox(faults=Faults(oversized_pages=frozenset({"*"}), deep_nesting={"*"}))
    token = sandbox.issue_token()
    async with httpx2.AsyncClient(
        transport=sandbox.transport(),
        base_url=sandbox.urls().api_base_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ) as client:
        await client.get("/locations?limit=1")  # warm up imports and caches
        gc.collect()
        tracemalloc.start()
        try:
            response = await client.get("/locations?limit=1")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(response.content) > 4_000_000
    # The body is ~4.4 MB and exists in a few copies (server, transport, client);
    # 1.4 M dicts alone would take over 90 MB.
    assert peak < 40 * 1024 * 1024
