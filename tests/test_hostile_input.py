"""Hostile input: the client stays bounded, gives typed errors, and a crawl goes on past it.

Over loopback HTTP against the sandbox's hostile faults, and a small
misbehaving server of the test's own for what the sandbox does not serve
(deep error bodies and token answers). Times and memory are benchmarks
(`python -m benchmarks --only hostile`), not asserted here.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asgi_server import serve_asgi
from tests.support import issue, make_client, make_oauth, stack_transport
from token_stores import (
    CorruptTokenData,
    FileTokenStore,
    MemoryTokenStore,
    RedisTokenStore,
    Token,
)
from wiser_async import RetryPolicy, crawl_to_jsonl
from wiser_async.errors import (
    DecodeError,
    Forbidden,
    RequestTimeout,
    TokenEndpointError,
    UnexpectedRedirect,
)
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")

NO_RETRY = RetryPolicy(attempts=1)


def first_site(sandbox: Sandbox) -> str:
    portfolio = sandbox.portfolio_for()
    return str(next(portfolio.sites(next(portfolio.locations())["id"]))["id"])


async def crawl_with(sandbox: Sandbox, urls: SandboxUrls, faults: Faults, **options: Any) -> Any:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    sandbox.faults = faults
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        return await client.crawl()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        pytest.param("deep_nesting", "nests", id="deep-nesting"),
        pytest.param("oversized_pages", "JSON objects", id="oversized-page"),
        pytest.param("huge_totals", "claims 1000000000000000 items", id="huge-total"),
        pytest.param("redirects", "redirected to", id="redirect"),
        pytest.param("odd_ids", "cannot be put in a URL path", id="odd-ids"),
    ],
)
async def test_one_hostile_resource_is_a_failure_and_the_crawl_reads_the_rest(
    sandbox: Sandbox, urls: SandboxUrls, fault: str, message: str
) -> None:
    site = first_site(sandbox)
    # Odd ids matter where they would enter a path: in a location's list of sites.
    location = str(next(sandbox.portfolio_for().locations())["id"])
    target = location if fault == "odd_ids" else site
    whole = await crawl_with(sandbox, urls, Faults())
    faults = Faults(**{fault: frozenset({target})})  # type: ignore[arg-type]
    result = await crawl_with(sandbox, urls, faults)
    assert result.failures, "the hostile resource was not reported"
    assert all(target in (failure.site_id, failure.location_id) for failure in result.failures)
    assert any(message in failure.message for failure in result.failures)
    hit = {site} if fault != "odd_ids" else {s.site.id for s in whole.locations[0].sites}
    others = {device.id for device in whole.devices() if device.site_id not in hit}
    assert others <= {device.id for device in result.devices()}  # the rest is all there


async def test_a_deeply_nested_entity_is_a_decode_error(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    site = first_site(sandbox)
    sandbox.faults = Faults(deep_nesting=frozenset({site}))
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(DecodeError, match="nests"):
            await client.sites.get(site)
        # Shallower than the interpreter's limit, deeper than any kept field may be.
        sandbox.faults = Faults(deep_nesting=frozenset({site}), nesting_depth=200)
        with pytest.raises(DecodeError, match="deeper than 32 levels"):
            await client.sites.get(site)


async def test_a_page_with_more_items_than_asked_is_a_decode_error(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    sandbox.faults = Faults(oversized_pages=frozenset({"*"}), oversized_items=50)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(DecodeError, match=r"holds \d+ items at \$\.data, more than the 10"):
            await client.locations.page(limit=10)


async def test_item_errors_of_one_page_are_reported_ten_at_most_then_summed_up(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    # 30 items without a usable id in one page of 500.
    sandbox.faults = Faults(oversized_pages=frozenset({"*"}), oversized_items=30)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        result = await client.crawl(page_size=500)
    location_failures = [f for f in result.failures if f.collection == "locations"]
    assert len(location_failures) == 11
    assert "20 more items" in location_failures[-1].message


async def test_a_trickling_server_cannot_hold_a_call_past_its_timeout(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    # A byte every 0.2 s: each read is quick, the whole answer would take minutes.
    sandbox.faults = Faults(trickle=frozenset({"*"}), trickle_interval=0.2)
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, timeout=1.0, retry=NO_RETRY) as client,
    ):
        with pytest.raises(RequestTimeout, match=r"no complete answer from 127\.0\.0\.1:\d+"):
            await client.locations.page()
    assert sandbox.stats.trickles_abandoned + sandbox.stats.trickling >= 1


async def test_a_retry_after_of_a_year_fails_one_resource_and_pauses_nothing(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    site = first_site(sandbox)
    result = await crawl_with(sandbox, urls, Faults(long_retry_after=frozenset({site})))
    kinds = {failure.kind for failure in result.failures}
    assert kinds == {"rate_limited"}
    assert all(failure.site_id == site for failure in result.failures)
    assert result.stats.devices > 0  # the other sites were read, not paused for a year


async def test_a_redirect_is_a_typed_error_and_not_followed(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    sandbox.faults = Faults(redirects=frozenset({"*"}), redirect_status=307)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(UnexpectedRedirect) as caught:
            await client.locations.page()
    assert caught.value.status_code == 307
    assert caught.value.location == "https://elsewhere.invalid/"
    assert sandbox.stats.requests == 1  # not retried, not followed


async def test_ids_that_would_walk_a_path_are_refused_before_a_request(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        for bad in ("", ".", ".."):
            with pytest.raises(ValueError, match="cannot be put in a URL path"):
                await client.sites.get(bad)
        # Quoted it would still be a/../b to a server that decodes %2F before routing.
        for bad in ("a/../b", "a\\b", "a\nb"):
            with pytest.raises(ValueError, match="cannot be put in a URL path"):
                await client.sites.get(bad)
    assert sandbox.stats.requests == 0


# -- what the sandbox does not serve: a misbehaving server of the test's own -----------


DEEP = b"[" * 100_000 + b"]" * 100_000


async def misbehaving_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """403 with a 100,000-level body, and token answers nested as deep."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/token":
        status, body = (
            200,
            b'{"access_token": "abcdefgh", "token_type": "Bearer", "x": ' + DEEP + b"}",
        )
    elif path == "/token-error":
        status, body = 400, b'{"error": ' + DEEP + b"}"
    elif path == "/token-extra":
        nested = b"[" * 200 + b"]" * 200
        status = 200
        body = b'{"access_token": "abcdefgh", "token_type": "Bearer", "x": ' + nested + b"}"
    else:
        status, body = 403, DEEP
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[str]:
    """The origin of a loopback server playing `misbehaving_app`."""
    with serve_asgi(misbehaving_app) as origin:
        yield origin


async def test_a_deep_error_body_gives_a_readable_api_error(
    sandbox: Sandbox, urls: SandboxUrls, misbehaving: str
) -> None:
    from wiser_async import ApiConfig, AsyncWiserClient

    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with (
        make_oauth(urls, store) as oauth,
        AsyncWiserClient(
            oauth, "acct", config=ApiConfig(base_url=misbehaving), transport=stack_transport()
        ) as client,
    ):
        with pytest.raises(Forbidden, match="HTTP 403"):
            await client.locations.page()


@pytest.mark.parametrize(
    ("path", "error"),
    [("/token", "invalid_response"), ("/token-error", "invalid_response")],
)
async def test_a_deep_token_answer_is_a_typed_error(
    misbehaving: str, path: str, error: str
) -> None:
    from wiser_async import WiserOAuth

    store = MemoryTokenStore()
    await store.save("acct", Token(access_token="old-token", refresh_token="r-token", expires_at=1))
    async with WiserOAuth(
        client_id="c", client_secret="s-secret", store=store, token_url=misbehaving + path
    ) as oauth:
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.token("acct")
    assert caught.value.error == error


async def test_a_deep_unknown_field_of_a_token_answer_is_dropped_not_the_token(
    misbehaving: str, caplog: pytest.LogCaptureFixture
) -> None:
    from wiser_async import WiserOAuth

    caplog.set_level(logging.WARNING, logger="wiser_async")
    store = MemoryTokenStore()
    await store.save("acct", Token(access_token="old-token", refresh_token="r-token", expires_at=1))
    async with WiserOAuth(
        client_id="c", client_secret="s-secret", store=store, token_url=misbehaving + "/token-extra"
    ) as oauth:
        token = await oauth.token("acct")
    assert token.access_token == "abcdefgh"
    assert "x" not in token.extra
    assert "nest deeper than 32 levels, left out: x" in caplog.text
    stored = await store.load("acct")
    assert stored is not None
    assert stored.fingerprint == token.fingerprint


# -- stored tokens ----------------------------------------------------------------------


async def test_a_deeply_nested_token_file_is_corrupt_data(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    path = store.path_of("acct")
    path.write_bytes(b'{"format": 1, "key": "acct", "token": ' + DEEP + b"}")
    path.chmod(0o600)
    with pytest.raises(CorruptTokenData):
        await store.load("acct")
    path.write_bytes(
        b'{"format": 1, "key": "acct", "token": {"access_token": "a", "x": '
        + b"[" * 200
        + b"]" * 200
        + b"}}"
    )
    with pytest.raises(CorruptTokenData, match="nests"):
        await store.load("acct")


async def test_a_huge_token_file_is_corrupt_data_without_reading_it_all(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    path = store.path_of("acct")
    path.write_bytes(
        b'{"format": 1, "key": "acct", "token": {"access_token": "' + b"a" * 3_000_000 + b'"}}'
    )
    path.chmod(0o600)
    with pytest.raises(CorruptTokenData, match="bytes"):
        await store.load("acct")


async def test_a_deeply_nested_redis_value_is_corrupt_data(redis_url: str) -> None:
    import redis.asyncio as redis_asyncio

    store = RedisTokenStore(redis_url, prefix=f"deep-{uuid.uuid4().hex}")
    await store.save("acct", Token(access_token="a-token"))
    raw = redis_asyncio.from_url(redis_url)
    try:
        (key,) = [key async for key in raw.scan_iter(match=f"{store.prefix}:*:token")]
        await raw.hset(key, "data", DEEP.decode())
        with pytest.raises(CorruptTokenData):
            await store.load("acct")
        await raw.hset(key, "data", json.dumps({"access_token": "a", "x": "y" * 3_000_000}))
        with pytest.raises(CorruptTokenData, match="bytes"):
            await store.load("acct")
    finally:
        await raw.delete(key)
        await raw.aclose()
        await store.aclose()


async def test_a_hostile_page_in_a_jsonl_crawl_is_recorded_and_resume_completes_the_rest(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    site = first_site(sandbox)
    sandbox.faults = Faults(deep_nesting=frozenset({site}))
    output = tmp_path / "out.jsonl"
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        crawled = await crawl_to_jsonl(client, output)
        again = await crawl_to_jsonl(client, output, resume=True)
    assert crawled.finished  # the hostile page is a failure, not an endless resume
    assert not crawled.complete
    assert [f.kind for f in again.failures] == [f.kind for f in crawled.failures]
    assert again.run.requests == 0
