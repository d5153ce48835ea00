"""The sandbox: an emulator of the Wiser API and its OAuth2 server.

Async tests run on asyncio and trio (see conftest.py); everything speaks HTTP
through httpx2, in-process (ASGI transport) or over loopback.
"""

from __future__ import annotations

import ast
import base64
import email.utils
import gc
import hashlib
import json
import logging
import os
import secrets
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx2
import pytest
from openapi_spec_validator import validate

import wiser_async.sandbox
from wiser_async.sandbox import (
    Faults,
    Portfolio,
    PortfolioSpec,
    Sandbox,
    SandboxProcess,
    SandboxStats,
    SandboxUrls,
)
from wiser_async.sandbox.__main__ import main as sandbox_main

REDIRECT_URI = "http://127.0.0.1:8765/callback"
CLIENT = ("sandbox-client", "sandbox-secret")


# -- helpers ------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT[0],
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "energy-monitoring:read",
        "state": "state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


def redirect_query(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = httpx2.URL(response.headers["location"])
    assert str(location).startswith(REDIRECT_URI)
    return dict(location.params)


@asynccontextmanager
async def http(sandbox: Sandbox) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=sandbox.transport()) as client:
        yield client


@asynccontextmanager
async def api(
    sandbox: Sandbox, customer: str = "default", *, lifetime: float | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the API with a fresh bearer token."""
    token = sandbox.issue_token(customer, lifetime=lifetime)
    async with httpx2.AsyncClient(
        transport=sandbox.transport(),
        base_url=sandbox.urls().api_base_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ) as client:
        yield client


async def get_code(
    client: httpx2.AsyncClient, sandbox: Sandbox, **overrides: str
) -> tuple[str, str]:
    verifier, challenge = pkce()
    response = await client.get(
        sandbox.urls().authorize_url, params=authorize_params(challenge, **overrides)
    )
    return redirect_query(response)["code"], verifier


async def exchange(
    client: httpx2.AsyncClient, sandbox: Sandbox, code: str, verifier: str
) -> httpx2.Response:
    return await client.post(
        sandbox.urls().token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=CLIENT,
    )


async def refresh(
    client: httpx2.AsyncClient, sandbox: Sandbox, refresh_token: str
) -> httpx2.Response:
    return await client.post(
        sandbox.urls().token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=CLIENT,
    )


async def api_status(client: httpx2.AsyncClient, sandbox: Sandbox, access_token: str) -> int:
    response = await client.get(
        sandbox.urls().api_base_url + "/locations",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    return response.status_code


def first_ids(portfolio: Portfolio) -> tuple[str, str, str]:
    location = next(portfolio.locations())["id"]
    site = next(portfolio.sites(location))["id"]
    room = next(portfolio.rooms(site))["id"]
    return location, site, room


# -- OAuth --------------------------------------------------------------------


async def test_code_flow_with_pkce_echoes_state_and_issues_rfc6749_tokens() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        verifier, challenge = pkce()
        answer = await client.get(sandbox.urls().authorize_url, params=authorize_params(challenge))
        query = redirect_query(answer)
        assert query["state"] == "state-123"
        response = await exchange(client, sandbox, query["code"], verifier)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        token = response.json()
        assert set(token) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["scope"] == "energy-monitoring:read"
        assert await api_status(client, sandbox, token["access_token"]) == 200
    assert sandbox.stats.token_requests == {"authorization_code": 1}


async def test_wrong_code_verifier_is_rejected_and_spends_the_code() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        wrong = await exchange(client, sandbox, code, pkce()[0])
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        retry = await exchange(client, sandbox, code, verifier)
        assert retry.json()["error"] == "invalid_grant"
    assert sandbox.stats.token_errors == {"invalid_grant": 2}


async def test_replayed_code_is_rejected_and_revokes_what_it_issued() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        first = (await exchange(client, sandbox, code, verifier)).json()
        replay = await exchange(client, sandbox, code, verifier)
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        assert await api_status(client, sandbox, first["access_token"]) == 401
        assert (await refresh(client, sandbox, first["refresh_token"])).status_code == 400


async def test_code_is_bound_to_its_redirect_uri() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        response = await client.post(
            sandbox.urls().token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "http://127.0.0.1:9999/other",
                "code_verifier": verifier,
            },
            auth=CLIENT,
        )
        assert response.json()["error"] == "invalid_grant"


async def test_denied_consent_redirects_with_access_denied_and_state() -> None:
    sandbox = Sandbox(consent="deny")
    async with http(sandbox) as client:
        response = await client.get(
            sandbox.urls().authorize_url, params=authorize_params(pkce()[1])
        )
        assert redirect_query(response) == {"error": "access_denied", "state": "state-123"}


@pytest.mark.parametrize(
    ("overrides", "allow_list"),
    [
        ({"client_id": "someone-else"}, None),
        ({"redirect_uri": "https://evil.example/callback"}, None),
        ({"redirect_uri": "http://127.0.0.1:8765/not-registered"}, [REDIRECT_URI]),
    ],
)
async def test_authorize_never_redirects_for_unknown_client_or_redirect_uri(
    overrides: dict[str, str], allow_list: list[str] | None
) -> None:
    sandbox = Sandbox(redirect_uris=allow_list)
    async with http(sandbox) as client:
        params = authorize_params(pkce()[1], **overrides)
        response = await client.get(sandbox.urls().authorize_url, params=params)
        assert response.status_code == 400
        assert "location" not in response.headers


async def test_registered_redirect_uri_is_accepted() -> None:
    sandbox = Sandbox(redirect_uris=[REDIRECT_URI])
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        assert (await exchange(client, sandbox, code, verifier)).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [{"code_challenge_method": "plain"}, {"code_challenge": ""}, {"code_challenge": "short"}],
)
async def test_authorize_without_s256_pkce_redirects_with_invalid_request(
    overrides: dict[str, str],
) -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        params = authorize_params(pkce()[1], **overrides)
        query = redirect_query(await client.get(sandbox.urls().authorize_url, params=params))
        assert query["error"] == "invalid_request"
        assert query["state"] == "state-123"
        assert "code" not in query


async def test_token_endpoint_accepts_client_secret_post_and_rejects_bad_clients() -> None:
    sandbox = Sandbox()
    url = sandbox.urls().token_url
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        posted = await client.post(
            url, data={**form, "client_id": CLIENT[0], "client_secret": CLIENT[1]}
        )
        assert posted.status_code == 200
        bad_basic = await client.post(url, data=form, auth=(CLIENT[0], "wrong"))
        assert bad_basic.status_code == 401
        assert bad_basic.json()["error"] == "invalid_client"
        assert bad_basic.headers["www-authenticate"].startswith("Basic")
        bad_post = await client.post(
            url, data={**form, "client_id": CLIENT[0], "client_secret": "wrong"}
        )
        assert bad_post.status_code == 401
        assert "wrong" not in bad_post.text
        assert "sandbox-secret" not in bad_post.text


async def test_unsupported_grant_type_is_reported() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        response = await client.post(
            sandbox.urls().token_url, data={"grant_type": "password"}, auth=CLIENT
        )
        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"
    assert sandbox.stats.token_errors == {"unsupported_grant_type": 1}


async def test_refresh_rotates_the_refresh_token_and_the_old_one_dies() -> None:
    sandbox = Sandbox(revoke_family_on_reuse=False)
    first = sandbox.issue_token()
    async with http(sandbox) as client:
        rotated = (await refresh(client, sandbox, first["refresh_token"])).json()
        assert rotated["refresh_token"] != first["refresh_token"]
        assert rotated["access_token"] != first["access_token"]
        stale = await refresh(client, sandbox, first["refresh_token"])
        assert stale.status_code == 400
        assert stale.json()["error"] == "invalid_grant"
        # Without family revocation the winner of the race keeps working.
        assert await api_status(client, sandbox, rotated["access_token"]) == 200
        assert (await refresh(client, sandbox, rotated["refresh_token"])).status_code == 200
    assert sandbox.stats.refresh_reuse_detected == 1


async def test_refresh_token_reuse_revokes_the_whole_family() -> None:
    sandbox = Sandbox()
    first = sandbox.issue_token()
    other_customer = sandbox.issue_token("other")
    async with http(sandbox) as client:
        rotated = (await refresh(client, sandbox, first["refresh_token"])).json()
        assert (await refresh(client, sandbox, first["refresh_token"])).status_code == 400
        assert await api_status(client, sandbox, rotated["access_token"]) == 401
        assert await api_status(client, sandbox, first["access_token"]) == 401
        current = await refresh(client, sandbox, rotated["refresh_token"])
        assert current.json()["error"] == "invalid_grant"
        assert await api_status(client, sandbox, other_customer["access_token"]) == 200
    stats = sandbox.stats
    assert stats.refresh_reuse_detected == 1
    assert stats.token_requests == {"refresh_token": 3}
    assert stats.token_errors == {"invalid_grant": 2}


async def test_expired_access_token_gets_401_with_www_authenticate() -> None:
    sandbox = Sandbox(access_token_lifetime=0.3)
    async with api(sandbox) as client:
        assert (await client.get("/locations")).status_code == 200
        await anyio.sleep(0.4)
        response = await client.get("/locations")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_token"


async def test_missing_or_unknown_bearer_token_gets_401() -> None:
    sandbox = Sandbox()
    async with http(sandbox) as client:
        url = sandbox.urls().api_base_url + "/locations"
        assert (await client.get(url)).status_code == 401
        unknown = await client.get(url, headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401
        assert "www-authenticate" in unknown.headers


async def test_issued_token_lifetime_is_kept_by_refreshes() -> None:
    sandbox = Sandbox()
    token = sandbox.issue_token(lifetime=1.5)
    assert token["expires_in"] == 1.5
    async with http(sandbox) as client:
        refreshed = (await refresh(client, sandbox, token["refresh_token"])).json()
    assert refreshed["expires_in"] == 1.5


async def test_revoked_access_tokens_get_401_but_refresh_still_works() -> None:
    sandbox = Sandbox()
    mine, theirs = sandbox.issue_token(), sandbox.issue_token("other")
    assert sandbox.revoke_access_tokens("default") == 1
    async with http(sandbox) as client:
        assert await api_status(client, sandbox, mine["access_token"]) == 401
        assert await api_status(client, sandbox, theirs["access_token"]) == 200
        renewed = (await refresh(client, sandbox, mine["refresh_token"])).json()
        assert await api_status(client, sandbox, renewed["access_token"]) == 200
    assert sandbox.revoke_access_tokens() == 2


@pytest.mark.parametrize(
    "options",
    [{"consent": "maybe"}, {"access_token_lifetime": 0.0}, {"redirect_uris": REDIRECT_URI}],
)
def test_sandbox_rejects_invalid_oauth_options(options: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Sandbox(**options)


def test_secrets_stay_out_of_reprs() -> None:
    sandbox = Sandbox(client_secret="s3cret-value")
    assert "s3cret-value" not in repr(sandbox)
    assert "s3cret-value" not in repr(SandboxProcess(client_secret="s3cret-value"))


# -- API: pages, routes, data --------------------------------------------------


async def test_pages_default_to_limit_100_and_report_offset_limit_total() -> None:
    sandbox = Sandbox(PortfolioSpec(locations=1, sites_per_location=1, devices_per_site=250))
    portfolio = sandbox.portfolio_for()
    _, site, _ = first_ids(portfolio)
    async with api(sandbox) as client:
        response = await client.get(f"/sites/{site}/devices")
        assert response.headers["content-type"] == "application/json"
        page = response.json()
        assert page["meta"] == {"offset": 0, "limit": 100, "total": 250}
        assert page["data"] == list(portfolio.site_devices(site, limit=100))
        last = (await client.get(f"/sites/{site}/devices?offset=200&limit=500")).json()
        assert last["meta"] == {"offset": 200, "limit": 500, "total": 250}
        assert [d["id"] for d in last["data"]] == [
            d["id"] for d in portfolio.site_devices(site, offset=200)
        ]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=-1", "limit=ten", "offset=-1", "offset=1.5", "limit=1&limit=2"],
)
async def test_bad_page_parameters_get_400_with_the_json_error_body(query: str) -> None:
    sandbox = Sandbox()
    async with api(sandbox) as client:
        response = await client.get(f"/locations?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"]
    assert error["requestId"]


async def test_offset_past_the_end_gives_an_empty_page() -> None:
    sandbox = Sandbox()
    async with api(sandbox) as client:
        page = (await client.get("/locations?offset=1000")).json()
    assert page == {"data": [], "meta": {"offset": 1000, "limit": 100, "total": 3}}


async def test_omit_total_leaves_total_out_of_pages() -> None:
    sandbox = Sandbox(faults=Faults(omit_total=True))
    async with api(sandbox) as client:
        page = (await client.get("/locations?limit=2")).json()
    assert page["meta"] == {"offset": 0, "limit": 2}
    assert len(page["data"]) == 2


async def test_every_route_serves_the_ground_truth() -> None:
    sandbox = Sandbox(PortfolioSpec(locations=2, sites_per_location=2, devices_per_site=5))
    portfolio = sandbox.portfolio_for()
    devices = 0
    async with api(sandbox) as client:
        locations = (await client.get("/locations")).json()["data"]
        assert locations == list(portfolio.locations())
        for location in locations:
            assert (await client.get(f"/locations/{location['id']}")).json() == location
            sites = (await client.get(f"/locations/{location['id']}/sites")).json()["data"]
            assert sites == list(portfolio.sites(location["id"]))
            for site in sites:
                assert (await client.get(f"/sites/{site['id']}")).json() == site
                rooms = (await client.get(f"/sites/{site['id']}/rooms")).json()["data"]
                assert rooms == list(portfolio.rooms(site["id"]))
                site_devices = (await client.get(f"/sites/{site['id']}/devices")).json()["data"]
                assert site_devices == list(portfolio.site_devices(site["id"]))
                in_rooms = []
                for room in rooms:
                    page = (await client.get(f"/rooms/{room['id']}/devices")).json()
                    assert page["meta"]["total"] == len(page["data"])
                    in_rooms += page["data"]
                assert sorted(d["id"] for d in in_rooms) == sorted(
                    d["id"] for d in site_devices if d["roomId"] is not None
                )
                for device in site_devices:
                    assert (await client.get(f"/devices/{device['id']}")).json() == device
                    devices += 1
    assert devices == portfolio.n_devices == sum(1 for _ in portfolio.devices())


async def test_ids_of_another_customer_or_out_of_range_get_404() -> None:
    sandbox = Sandbox()
    theirs = sandbox.portfolio_for("other")
    mine = sandbox.portfolio_for()
    location, site, _ = first_ids(theirs)
    async with api(sandbox) as client:
        assert (await client.get(f"/locations/{location}")).status_code == 404
        assert (await client.get(f"/sites/{site}/devices")).status_code == 404
        assert (await client.get(f"/locations/loc-{mine.tag}-3")).status_code == 404
        assert (await client.get(f"/locations/loc-{mine.tag}-01")).status_code == 404
        assert (await client.get(f"/sites/loc-{mine.tag}-0")).status_code == 404
        response = await client.get(f"/devices/dev-{mine.tag}-0-0-12")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_unknown_routes_get_404_and_other_methods_405_as_json() -> None:
    sandbox = Sandbox()
    async with api(sandbox) as client:
        unknown = await client.get("/rooms/x")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert (await client.get("http://sandbox.invalid/elsewhere")).status_code == 404
        assert (await client.delete("/locations")).status_code == 405
    assert sandbox.stats.requests_by_route == {"/locations": 1}


def test_same_seed_gives_the_same_portfolio_and_another_customer_other_ids() -> None:
    spec = PortfolioSpec(seed=7)
    again = Portfolio(PortfolioSpec(seed=7), "default")
    assert list(Portfolio(spec, "default").devices()) == list(again.devices())
    other = {d["id"] for d in Portfolio(spec, "other").devices()}
    reseeded = {d["id"] for d in Portfolio(PortfolioSpec(seed=8), "default").devices()}
    mine = {d["id"] for d in again.devices()}
    assert len(mine) == again.n_devices
    assert not mine & other
    assert not mine & reseeded


async def test_customers_get_their_own_portfolio_shape() -> None:
    sandbox = Sandbox(
        PortfolioSpec(locations=1), customers={"acme": PortfolioSpec(locations=5, seed=3)}
    )
    async with http(sandbox) as client:
        verifier, challenge = pkce()
        params = authorize_params(challenge, login_hint="acme")
        query = redirect_query(await client.get(sandbox.urls().authorize_url, params=params))
        token = (await exchange(client, sandbox, query["code"], verifier)).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        page = (
            await client.get(sandbox.urls().api_base_url + "/locations", headers=headers)
        ).json()
    assert page["meta"]["total"] == 5
    assert page["data"] == list(sandbox.portfolio_for("acme").locations())
    assert sandbox.portfolio_for().n_locations == 1


async def test_a_million_device_portfolio_costs_nothing_until_read() -> None:
    spec = PortfolioSpec(locations=10, sites_per_location=10, rooms_per_site=50)
    sandbox = Sandbox(attrs.evolve(spec, devices_per_site=10_000))
    portfolio = sandbox.portfolio_for()
    assert portfolio.n_devices == 1_000_000
    site = f"site-{portfolio.tag}-9-9"
    room = f"room-{portfolio.tag}-9-9-49"
    async with api(sandbox) as client:
        await client.get(f"/sites/{site}/devices?limit=500")  # warm up imports and caches
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            for offset in range(9_000, 9_500, 100):
                page = (await client.get(f"/sites/{site}/devices?offset={offset}&limit=500")).json()
                assert len(page["data"]) == 500
                assert page["meta"]["total"] == 10_000
            last = (await client.get(f"/rooms/{room}/devices?offset=150&limit=500")).json()
            elapsed = time.perf_counter() - started
            del page, last
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert elapsed < 5.0  # tracemalloc makes it several times slower than the ~5 ms per page
    assert grown < 256 * 1024


def test_slices_cost_their_length_not_the_collection() -> None:
    portfolio = Portfolio(
        PortfolioSpec(locations=1, sites_per_location=1, devices_per_site=10**9), "x"
    )
    site = f"site-{portfolio.tag}-0-0"
    started = time.perf_counter()
    devices = list(portfolio.site_devices(site, offset=10**9 - 3))
    assert time.perf_counter() - started < 0.5
    assert [d["id"] for d in devices] == [f"dev-{portfolio.tag}-0-0-{10**9 - n}" for n in (3, 2, 1)]


def test_portfolio_carries_what_a_robust_client_must_survive() -> None:
    portfolio = Portfolio(PortfolioSpec(), "default")
    locations = list(portfolio.locations())
    sites = [s for loc in locations for s in portfolio.sites(loc["id"])]
    rooms = [r for s in sites for r in portfolio.rooms(s["id"])]
    devices = list(portfolio.devices())
    assert all("customerReference" in loc for loc in locations)
    assert {s["type"] for s in sites} >= {"agricultural"}
    assert {r["type"] for r in rooms} >= {"garage"}
    heat_pumps = [d for d in devices if d["category"] == "heat-pump"]
    assert len(heat_pumps) == portfolio.n_sites  # device 6 of every 12-device site
    assert all(d["vendorExtension"] == {"protocol": "zigbee", "channel": 15} for d in heat_pumps)
    assert any("firmwareVersion" not in d for d in devices)
    assert any(d["lastSeenAt"] is None for d in devices)
    stamps = [d["lastSeenAt"] for d in devices if d["lastSeenAt"]]
    stamps += [loc["createdAt"] for loc in locations] + [s["updatedAt"] for s in sites]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s[-6] in "+-" for s in stamps)
    for stamp in stamps:
        assert datetime.fromisoformat(stamp).tzinfo is not None
    assert {d["phases"] for d in devices if "phases" in d} == {1, 3}
    assert all(isinstance(d["ratedCurrentA"], int | float) for d in devices if "ratedCurrentA" in d)
    assert {d["status"] for d in devices} <= {"online", "offline", "unknown"}
    assert any(d["commercialReference"] == "A9MEM1520" for d in devices)
    assert {d["usage"] for d in devices if "usage" in d} >= {"main", "heating"}
    assert all(len(loc["address"]["country"]) == 2 and "/" in loc["timezone"] for loc in locations)


def test_unassigned_devices_come_first_and_the_rest_go_round_robin() -> None:
    portfolio = Portfolio(PortfolioSpec(devices_per_site=9, unassigned_devices_per_site=3), "x")
    _, site, _ = first_ids(portfolio)
    devices = list(portfolio.site_devices(site))
    assert [d["roomId"] is None for d in devices] == [True] * 3 + [False] * 6
    assert [devices[0]["category"], devices[1]["category"]] == ["gateway", "meter"]
    assert [d["roomId"][-1] for d in devices[3:]] == list("012012")
    room = f"room-{portfolio.tag}-0-0-1"
    assert [d["id"] for d in portfolio.room_devices(room)] == [devices[4]["id"], devices[7]["id"]]
    assert [d["id"] for d in portfolio.room_devices(room, offset=1)] == [devices[7]["id"]]
    assert portfolio.count("room_devices", room) == 2
    roomless = Portfolio(PortfolioSpec(rooms_per_site=0, devices_per_site=4), "x")
    assert all(d["roomId"] is None for d in roomless.devices())


@pytest.mark.parametrize(
    "fields",
    [{"locations": -1}, {"devices_per_site": 1, "unassigned_devices_per_site": 2}],
)
def test_portfolio_spec_rejects_impossible_shapes(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        PortfolioSpec(**fields)


def test_listing_children_of_an_unknown_parent_raises_key_error() -> None:
    portfolio = Portfolio(PortfolioSpec(), "x")
    with pytest.raises(KeyError):
        portfolio.sites("loc-nope-0")
    assert portfolio.device("dev-nope-0-0-0") is None


# -- faults -------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_proxy_errors_carry_an_html_body(status: int) -> None:
    sandbox = Sandbox(faults=Faults(error_rate=1.0, error_statuses=(status,)))
    async with api(sandbox) as client:
        response = await client.get("/locations")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")


async def test_error_500_carries_the_json_error_body() -> None:
    sandbox = Sandbox(faults=Faults(error_rate=1.0, error_statuses=(500,)))
    async with api(sandbox) as client:
        response = await client.get("/locations")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


async def test_error_rate_is_a_fraction_and_repeats_for_a_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        sandbox = Sandbox(faults=Faults(error_rate=0.3, seed=seed, error_statuses=(500, 503)))
        async with api(sandbox) as client:
            return [(await client.get("/locations")).status_code for _ in range(200)]

    first = await statuses(1)
    assert first == await statuses(1)
    assert first != await statuses(2)
    assert 30 <= sum(s != 200 for s in first) <= 90
    assert {500, 503} <= set(first)


@pytest.mark.parametrize(("retry_after", "header"), [(2.0, "2"), (0.5, "0.5"), (1.25, "1.25")])
async def test_throttled_answers_are_429_with_retry_after_seconds(
    retry_after: float, header: str
) -> None:
    sandbox = Sandbox(faults=Faults(throttle_rate=1.0, retry_after=retry_after))
    async with api(sandbox) as client:
        response = await client.get("/locations")
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    assert response.json()["error"]["code"] == "rate_limited"
    assert sandbox.stats.throttled == 1


async def test_retry_after_as_http_date_is_rounded_up_to_the_second() -> None:
    sandbox = Sandbox(
        faults=Faults(throttle_rate=1.0, retry_after=2.5, retry_after_format="http-date")
    )
    async with api(sandbox) as client:
        before = time.time()
        response = await client.get("/locations")
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"])
    assert when.tzinfo == UTC
    assert before + 2.5 <= when.timestamp() <= time.time() + 3.5


async def test_throttle_bursts_answer_429_until_the_window_ends() -> None:
    sandbox = Sandbox(faults=Faults(throttle_burst_every=1.5, throttle_burst_length=0.5))
    async with api(sandbox) as client:
        throttled = await client.get("/locations")
        assert throttled.status_code == 429
        wait = float(throttled.headers["retry-after"])
        assert 0 < wait <= 0.5
        await anyio.sleep(wait + 0.05)
        assert (await client.get("/locations")).status_code == 200


async def test_rate_limit_is_a_token_bucket() -> None:
    sandbox = Sandbox(faults=Faults(rate_limit=5.0, rate_limit_burst=2.0))
    async with api(sandbox) as client:
        assert [(await client.get("/locations")).status_code for _ in range(2)] == [200, 200]
        throttled = await client.get("/locations")
        assert throttled.status_code == 429
        wait = float(throttled.headers["retry-after"])
        assert 0 < wait <= 0.2
        await anyio.sleep(wait + 0.02)
        assert (await client.get("/locations")).status_code == 200
        sandbox.faults.retry_after_format = "http-date"
        response = await client.get("/locations")
    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"]).timestamp()
    assert time.time() <= when <= time.time() + 1.5


async def test_dropped_connection_is_a_remote_protocol_error_in_process() -> None:
    sandbox = Sandbox(faults=Faults(drop_rate=1.0))
    async with api(sandbox) as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get("/locations")
        sandbox.faults.drop_rate = 0.0
        assert (await client.get("/locations")).status_code == 200
    stats = sandbox.stats
    assert (stats.dropped, stats.requests, stats.responses_by_status) == (1, 2, {200: 1})


async def test_forbidden_missing_and_malformed_cover_the_resource_and_what_is_beneath() -> None:
    sandbox = Sandbox()
    location, site, room = first_ids(sandbox.portfolio_for())
    other_location = f"loc-{sandbox.portfolio_for().tag}-1"
    async with api(sandbox) as client:
        sandbox.faults.forbidden = frozenset({location})
        for path in (f"/locations/{location}", f"/sites/{site}/rooms", f"/rooms/{room}/devices"):
            response = await client.get(path)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "consent_required"
        assert (await client.get(f"/locations/{other_location}")).status_code == 200
        assert (await client.get("/locations")).status_code == 200
        sandbox.faults.forbidden = frozenset()
        sandbox.faults.missing = frozenset({site})
        assert (await client.get(f"/sites/{site}")).status_code == 404
        assert (await client.get(f"/rooms/{room}/devices")).status_code == 404
        assert (await client.get(f"/locations/{location}")).status_code == 200
        sandbox.faults.missing = frozenset()
        sandbox.faults.malformed = frozenset({site})
        response = await client.get(f"/sites/{site}/devices")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_faults_never_touch_oauth_or_admin_routes() -> None:
    sandbox = Sandbox(faults=Faults(error_rate=1.0, drop_rate=1.0, throttle_rate=1.0))
    async with http(sandbox) as client:
        code, verifier = await get_code(client, sandbox)
        assert (await exchange(client, sandbox, code, verifier)).status_code == 200
        assert (await client.get("http://sandbox.invalid/_sandbox/stats")).status_code == 200
        assert (await client.get("http://sandbox.invalid/openapi.json")).status_code == 200
    assert sandbox.stats.requests == 0


async def test_latency_is_slept_per_request_and_peak_in_flight_counts_overlap() -> None:
    sandbox = Sandbox(faults=Faults(latency=0.3))
    async with api(sandbox) as client:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(client.get, "/locations")
        elapsed = time.perf_counter() - started
    stats = sandbox.stats
    assert 0.3 <= elapsed < 1.5
    assert (stats.requests, stats.in_flight, stats.peak_in_flight) == (8, 0, 8)


async def test_token_latency_slows_only_the_token_endpoint() -> None:
    sandbox = Sandbox(faults=Faults(token_latency=0.2))
    token = sandbox.issue_token()
    async with http(sandbox) as client:
        started = time.perf_counter()
        await refresh(client, sandbox, token["refresh_token"])
        assert time.perf_counter() - started >= 0.2


def test_faults_validate_what_is_set() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="error_rate"):
        faults.error_rate = 1.5
    with pytest.raises(ValueError, match="5xx"):
        Faults(error_statuses=(404,))
    with pytest.raises(ValueError, match="unknown fault fields: nope"):
        faults.update({"nope": 1, "latency": 1.0})
    with pytest.raises(ValueError, match="retry_after_format"):
        faults.update({"latency": 1.0, "retry_after_format": "minutes"})
    assert faults.latency == 0.0  # a rejected update changes nothing
    faults.update({"forbidden": ["a", "b"], "error_statuses": [502]})
    assert faults.forbidden == frozenset({"a", "b"})
    assert faults.error_statuses == (502,)


# -- stats and admin ----------------------------------------------------------


async def test_stats_count_routes_statuses_and_reset() -> None:
    sandbox = Sandbox()
    _, site, _ = first_ids(sandbox.portfolio_for())
    async with api(sandbox) as client:
        await client.get("/locations")
        await client.get(f"/sites/{site}/devices")
        await client.get(f"/sites/{site}/devices?limit=0")
        await client.get("/devices/nope")
    stats = sandbox.stats
    assert stats.requests == 4
    assert stats.requests_by_route == {
        "/locations": 1,
        "/sites/{siteId}/devices": 2,
        "/devices/{deviceId}": 1,
    }
    assert stats.responses_by_status == {200: 2, 400: 1, 404: 1}
    sandbox.reset_stats()
    assert sandbox.stats == SandboxStats()


async def test_admin_routes_report_stats_patch_faults_and_mint_tokens() -> None:
    sandbox = Sandbox()
    admin = "http://sandbox.invalid/_sandbox"
    async with http(sandbox) as client:
        token = (await client.post(f"{admin}/tokens", json={"lifetime": 60})).json()
        assert token["expires_in"] == 60
        assert await api_status(client, sandbox, token["access_token"]) == 200
        stats = (await client.get(f"{admin}/stats")).json()
        assert SandboxStats.from_json(stats) == sandbox.stats
        assert stats["responses_by_status"] == {"200": 1}
        patched = await client.patch(
            f"{admin}/faults", json={"missing": ["x"], "retry_after": 2, "omit_total": True}
        )
        assert patched.json()["missing"] == ["x"]
        assert sandbox.faults.missing == frozenset({"x"})
        assert sandbox.faults.omit_total is True
        bad = await client.patch(f"{admin}/faults", json={"error_rate": 7})
        assert bad.status_code == 400
        assert (await client.patch(f"{admin}/faults", content=b"[1]")).status_code == 400
        assert (await client.post(f"{admin}/reset-stats")).status_code == 204
        assert sandbox.stats.requests == 0
        revoked = await client.post(f"{admin}/revoke-access-tokens", json={})
        assert revoked.json() == {"revoked": 1}
        assert (await client.post(f"{admin}/nope")).status_code == 404


# -- serving ------------------------------------------------------------------


async def test_serve_in_thread_speaks_real_http_and_counts_from_another_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = Sandbox(faults=Faults(latency=0.2))
    token = sandbox.issue_token()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with sandbox.serve_in_thread() as urls:
        assert urls.origin.startswith("http://127.0.0.1:")
        assert not urls.origin.endswith(":0")
        async with httpx2.AsyncClient(base_url=urls.api_base_url, headers=headers) as client:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(client.get, "/locations")
            sandbox.faults.drop_rate = 1.0
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.get("/locations")
            sandbox.faults.drop_rate = 0.0
            assert (await client.get("/locations")).status_code == 200
            spec = await client.get(urls.origin + "/openapi.json")
            assert spec.json()["openapi"] == "3.1.0"
    stats = sandbox.stats
    assert (stats.requests, stats.dropped, stats.peak_in_flight) == (12, 1, 10)
    assert stats.responses_by_status == {200: 11}
    assert not [r for r in caplog.records if "Exception in ASGI" in r.getMessage()]


def test_serve_in_thread_stops_listening_on_exit() -> None:
    sandbox = Sandbox()
    with sandbox.serve_in_thread() as urls:
        assert httpx2.get(urls.origin + "/openapi.json").status_code == 200
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(urls.origin + "/openapi.json")


def test_sandbox_process_serves_until_exit_and_leaves_no_process() -> None:
    with SandboxProcess(locations=2, devices_per_site=30, token_lifetime=120) as process:
        pid = process.pid
        urls = process.urls
        token = process.issue_token(lifetime=30)
        assert token["expires_in"] == 30
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        with httpx2.Client(base_url=urls.api_base_url, headers=headers) as client:
            assert client.get("/locations").json()["meta"]["total"] == 2
            process.set_faults(throttle_rate=1.0, retry_after=3, forbidden={"x"})
            throttled = client.get("/locations")
            assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
            stats = process.stats()
            assert (stats.requests, stats.throttled) == (2, 1)
            process.reset_stats()
            assert process.stats().requests == 0
            assert process.revoke_access_tokens() == 1
            process.set_faults(throttle_rate=0.0)
            assert client.get("/locations").status_code == 401
        with pytest.raises(RuntimeError, match="unknown fault fields"):
            process.set_faults(bogus=1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sandbox_process_reports_a_child_that_fails_to_start() -> None:
    with pytest.raises(RuntimeError, match="must be >= 0"):
        SandboxProcess(locations=-1).__enter__()


def test_every_sandbox_process_option_is_a_command_line_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[Sandbox] = []
    monkeypatch.setattr(
        "wiser_async.sandbox.__main__.serve", lambda sandbox, *a, **k: served.append(sandbox)
    )
    process = SandboxProcess(
        port=0,
        seed=5,
        locations=2,
        sites_per_location=3,
        rooms_per_site=1,
        devices_per_site=7,
        unassigned_devices_per_site=1,
        latency=0.5,
        rate_limit=9.0,
        token_lifetime=10.0,
        client_id="me",
        client_secret="pw",
    )
    assert "pw" not in process.argv()  # a secret in argv is visible to every user's ps
    monkeypatch.setenv(
        "WISER_SANDBOX_CLIENT_SECRET", process.environment()["WISER_SANDBOX_CLIENT_SECRET"]
    )
    # The stdin watch is for a real child; pytest's stdin cannot be read.
    sandbox_main([arg for arg in process.argv()[3:] if arg != "--exit-with-stdin"])
    (sandbox,) = served
    assert sandbox.portfolio == PortfolioSpec(5, 2, 3, 1, 7, 1)
    assert (sandbox.faults.latency, sandbox.faults.rate_limit) == (0.5, 9.0)
    assert (sandbox.client_id, sandbox.client_secret) == ("me", "pw")
    assert sandbox.access_token_lifetime == 10.0


# -- OpenAPI and the public surface ------------------------------------------


async def test_openapi_document_is_valid_and_lists_every_route() -> None:
    from wiser_async.sandbox._app import ROUTES

    sandbox = Sandbox()
    async with http(sandbox) as client:
        document = (await client.get("http://sandbox.invalid/openapi.json")).json()
    validate(document)
    assert document == json.loads(files("wiser_async.sandbox").joinpath("openapi.json").read_text())
    assert set(document["paths"]) == {route.template for route in ROUTES}
    for path, item in document["paths"].items():
        responses = item["get"]["responses"]
        assert {"200", "401", "403", "404", "429", "5XX"} <= set(responses), path
    flows = document["components"]["securitySchemes"]["wiserOAuth"]["flows"]
    assert flows["authorizationCode"]["tokenUrl"].endswith(
        httpx2.URL(sandbox.urls().token_url).path
    )


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert wiser_async.sandbox.__all__ == [
        "Faults",
        "Portfolio",
        "PortfolioSpec",
        "Sandbox",
        "SandboxProcess",
        "SandboxStats",
        "SandboxUrls",
        "serve",
    ]
    assert SandboxUrls.for_origin("http://h:1/") == Sandbox().urls("http://h:1")


def test_sandbox_imports_nothing_else_from_wiser_async() -> None:
    package = Path(wiser_async.sandbox.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, module
                assert node.level or not (node.module or "").startswith("wiser_async"), module
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("wiser_async") for a in node.names), module


def test_drop_log_filter_only_hides_deliberate_drops() -> None:
    from wiser_async.sandbox._http import DroppedConnectionError
    from wiser_async.sandbox._serve import _HIDE_DROPS

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.error", logging.ERROR, "", 0, "x", (), (type(exc), exc, None)
        )

    assert not _HIDE_DROPS.filter(record(DroppedConnectionError("dropped")))
    assert _HIDE_DROPS.filter(record(RuntimeError("a real bug")))
