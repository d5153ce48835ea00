"""Each row of the contract's error table, over loopback HTTP against the sandbox.

Every error names the method and path, and never shows a secret.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from tests.support import FAST_RETRY, assert_no_secret, issue, make_client, make_oauth, secrets_of
from token_stores import MemoryTokenStore, Token
from wiser_async import AsyncWiserClient, RetryPolicy
from wiser_async.errors import (
    AuthorizationRequired,
    BadRequest,
    ConnectionFailed,
    DecodeError,
    Forbidden,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
    WiserError,
)
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")


@attrs.define
class Session:
    client: AsyncWiserClient
    token: Token
    sandbox: Sandbox

    @property
    def secrets(self) -> list[str]:
        return secrets_of(self.token)

    def first_site(self) -> str:
        portfolio = self.sandbox.portfolio_for()
        return str(next(portfolio.sites(next(portfolio.locations())["id"]))["id"])


@asynccontextmanager
async def session_with(
    sandbox: Sandbox, urls: SandboxUrls, **options: Any
) -> AsyncIterator[Session]:
    """A client with these options (`make_client`'s), its token and the sandbox."""
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        yield Session(client, token, sandbox)


@pytest.fixture
async def session(sandbox: Sandbox, urls: SandboxUrls) -> AsyncIterator[Session]:
    async with session_with(sandbox, urls) as session:
        yield session


def check(error: WiserError, session: Session, path_start: str) -> None:
    assert error.method == "GET"
    assert error.path is not None
    assert error.path.startswith(path_start)
    assert str(error).startswith(f"GET {path_start}")
    assert_no_secret(error, session.secrets)


async def test_400_fails_without_retry(sandbox: Sandbox, urls: SandboxUrls) -> None:
    from wiser_async import ApiConfig, PageFormat

    # A client told the API takes pages of 1,000 asks for one; the API refuses.
    config = ApiConfig(base_url=urls.api_base_url, pages=PageFormat(max_page_size=1000))
    async with session_with(sandbox, urls, config=config) as session:
        with pytest.raises(BadRequest) as caught:
            await session.client.locations.page(limit=1000)
        check(caught.value, session, "/locations?offset=0&limit=1000")
    assert caught.value.status_code == 400
    assert caught.value.code is not None
    assert session.sandbox.stats.requests == 1


async def test_401_after_a_refresh_that_fails_requires_authorization(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct")
    # The token is revoked and its refresh token rotated away by another worker.
    async with make_oauth(urls, MemoryTokenStore()) as other:
        await other.store.save("acct", token)
        winner = await other.token("acct", rejected=token)
    sandbox.revoke_access_tokens()
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(AuthorizationRequired) as caught:
            await client.locations.list()
    assert caught.value.account == "acct"
    assert_no_secret(caught.value, secrets_of(token, winner))
    assert sandbox.stats.responses_by_status == {401: 1}


@pytest.mark.httpx2_only  # in process: a borrowed httpx2 client on a MockTransport
async def test_401_twice_fails_as_authorization_required_naming_the_path() -> None:
    """The API refuses even a freshly refreshed token: one refresh, one retry, then fail."""
    token_calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal token_calls
        if request.url.path == "/token":
            token_calls += 1
            return httpx2.Response(
                200, json={"access_token": f"A{token_calls}", "expires_in": 3600}
            )
        return httpx2.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, json={}
        )

    from wiser_async import ApiConfig, WiserOAuth

    store = MemoryTokenStore()
    await store.save("acct", Token(access_token="A0", refresh_token="R0"))
    transport = httpx2.MockTransport(handler)
    async with (
        WiserOAuth(
            client_id="c",
            client_secret="s",
            redirect_uri="http://127.0.0.1/cb",
            store=store,
            token_url="https://auth.invalid/token",
            transport=transport,
        ) as oauth,
        AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url="https://api.invalid/v1"),
            http_client=httpx2.AsyncClient(transport=transport),
        ) as client,
    ):
        with pytest.raises(AuthorizationRequired) as caught:
            await client.locations.list()
    assert caught.value.path == "/locations?offset=0&limit=500"
    assert token_calls == 1
    assert client.stats.requests == 2
    assert_no_secret(caught.value, ["A0", "A1", "R0"])


async def test_403_fails_for_that_resource_only(session: Session) -> None:
    site_id = session.first_site()
    session.sandbox.faults = Faults(forbidden=frozenset({site_id}))
    with pytest.raises(Forbidden) as caught:
        await session.client.rooms.list(site_id)
    check(caught.value, session, f"/sites/{site_id}/rooms")
    assert caught.value.code == "consent_required"
    assert session.sandbox.stats.requests == 1
    assert await session.client.locations.list()


async def test_404_for_a_deleted_resource(session: Session) -> None:
    with pytest.raises(NotFound) as caught:
        await session.client.devices.get("dev-gone")
    check(caught.value, session, "/devices/dev-gone")
    assert session.sandbox.stats.requests == 1


async def test_429_is_retried_after_retry_after_and_succeeds(session: Session) -> None:
    session.sandbox.faults = Faults(throttle_burst_every=60.0, throttle_burst_length=0.3)
    started = anyio.current_time()
    locations = await session.client.locations.list()
    assert locations
    # The burst answers 429 with the rest of its window; the client waits it out.
    assert session.client.stats.throttled >= 1
    assert session.client.stats.failures == 0
    assert anyio.current_time() - started < 5


async def test_429_pauses_the_whole_client_not_one_request(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    sandbox.faults = Faults(throttle_rate=1.0, retry_after=0.4)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        with pytest.raises(RateLimited):
            await client.locations.page()
        sandbox.faults = Faults()
        started = anyio.current_time()
        await client.locations.page()  # another call, after the 429 of the first
        waited = anyio.current_time() - started
    assert waited >= 0.3


async def test_429_after_the_allowed_attempts_is_rate_limited(session: Session) -> None:
    session.sandbox.faults = Faults(throttle_rate=1.0, retry_after=0.05)
    with pytest.raises(RateLimited) as caught:
        await session.client.locations.page()
    check(caught.value, session, "/locations")
    assert caught.value.retry_after == pytest.approx(0.05)
    assert session.sandbox.stats.requests == FAST_RETRY.attempts
    assert session.client.stats.throttled == FAST_RETRY.attempts


async def test_429_with_an_http_date_retry_after(sandbox: Sandbox, urls: SandboxUrls) -> None:
    sandbox.faults = Faults(throttle_rate=1.0, retry_after=1.0, retry_after_format="http-date")
    async with session_with(sandbox, urls, retry=RetryPolicy(attempts=1)) as session:
        with pytest.raises(RateLimited) as caught:
            await session.client.locations.page()
    assert caught.value.retry_after is not None
    assert 0 <= caught.value.retry_after <= 2


async def test_retry_after_beyond_the_time_limit_is_not_waited_for(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    sandbox.faults = Faults(throttle_rate=1.0, retry_after=30.0)
    async with session_with(sandbox, urls, retry=attrs.evolve(FAST_RETRY, timeout=1.0)) as session:
        started = anyio.current_time()
        with pytest.raises(RateLimited):
            await session.client.locations.page()
        assert anyio.current_time() - started < 1.0
    assert sandbox.stats.requests == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_then_fails_as_server_error(session: Session, status: int) -> None:
    session.sandbox.faults = Faults(error_rate=1.0, error_statuses=(status,))
    with pytest.raises(ServerError) as caught:
        await session.client.locations.page()
    check(caught.value, session, "/locations")
    assert caught.value.status_code == status
    assert session.sandbox.stats.requests == FAST_RETRY.attempts
    assert session.client.stats.retries == FAST_RETRY.attempts - 1


async def test_html_503_body_gives_a_readable_server_error(session: Session) -> None:
    session.sandbox.faults = Faults(error_rate=1.0, error_statuses=(503,))
    with pytest.raises(ServerError) as caught:
        await session.client.locations.page()
    assert "HTML page" in str(caught.value)
    assert "<html" not in str(caught.value).lower()
    assert caught.value.body_excerpt is not None


async def test_transient_5xx_and_drops_are_retried_to_success(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    sandbox.faults = Faults(error_rate=0.3, drop_rate=0.2, seed=3)
    retry = attrs.evolve(FAST_RETRY, attempts=10, budget_burst=1000)
    async with session_with(sandbox, urls, retry=retry) as session:
        for _ in range(10):
            assert len(await session.client.locations.list(page_size=1)) == 3
        assert session.client.stats.retries > 0
        assert session.client.stats.failures == 0


async def test_timeouts_are_retried_then_fail_as_request_timeout(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct")
    sandbox.faults = Faults(latency=1.0)
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, timeout=0.1, retry=attrs.evolve(FAST_RETRY, attempts=2)) as client,
    ):
        with pytest.raises(RequestTimeout) as caught:
            await client.locations.page()
    assert caught.value.path == "/locations?offset=0&limit=500"
    assert client.stats.retries == 1
    assert_no_secret(caught.value, secrets_of(token))


async def test_dropped_connections_fail_as_connection_failed(session: Session) -> None:
    session.sandbox.faults = Faults(drop_rate=1.0)
    with pytest.raises(ConnectionFailed) as caught:
        await session.client.locations.page()
    check(caught.value, session, "/locations")
    assert session.sandbox.stats.requests == FAST_RETRY.attempts


async def test_truncated_json_body_is_a_decode_error_and_not_retried(session: Session) -> None:
    site_id = session.first_site()
    session.sandbox.faults = Faults(malformed=frozenset({site_id}))
    with pytest.raises(DecodeError) as caught:
        await session.client.sites.get(site_id)
    check(caught.value, session, f"/sites/{site_id}")
    assert "not valid JSON" in str(caught.value)
    assert session.sandbox.stats.requests == 1


async def test_retry_budget_stops_retry_storms(sandbox: Sandbox, urls: SandboxUrls) -> None:
    sandbox.faults = Faults(error_rate=1.0)
    retry = attrs.evolve(FAST_RETRY, budget_burst=3, budget_ratio=0.0)
    async with session_with(sandbox, urls, retry=retry) as session:
        for _ in range(5):
            with pytest.raises(ServerError):
                await session.client.locations.page()
    # Five calls, three retries in the budget, then no more.
    assert sandbox.stats.requests == 5 + 3


async def test_huge_bodies_are_refused(sandbox: Sandbox, urls: SandboxUrls) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, max_response_bytes=1000) as client,
    ):
        portfolio = sandbox.portfolio_for()
        site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
        with pytest.raises(DecodeError, match="1000-byte limit"):
            await client.devices.of_site(site_id).page()


def test_errors_pickle_with_their_attributes() -> None:
    import pickle

    error = RateLimited(
        "HTTP 429", retry_after=2.0, status_code=429, method="GET", path="/locations"
    )
    copy: Any = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert str(copy) == str(error)
    assert copy.retry_after == 2.0
    assert copy.path == "/locations"


async def test_a_pause_longer_than_a_calls_deadline_fails_it_at_once(session: Session) -> None:
    # 100 s: obeyed (under max_retry_after), but beyond the call's 10 s deadline.
    session.sandbox.faults = Faults(throttle_rate=1.0, retry_after=100.0)
    with pytest.raises(RateLimited):
        await session.client.locations.page()
    session.sandbox.faults = Faults()
    requests = session.sandbox.stats.requests
    started = anyio.current_time()
    with pytest.raises(RateLimited, match="paused") as caught:
        await session.client.locations.page()  # the server is fine now, but asked for 100 s
    assert anyio.current_time() - started < 1.0  # not frozen for the pause
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 90
    assert session.sandbox.stats.requests == requests  # and it did not ask


async def test_a_retry_after_beyond_the_maximum_fails_the_call_and_pauses_nothing(
    session: Session,
) -> None:
    # A year, as a broken endpoint asked for: the call fails at once...
    session.sandbox.faults = Faults(throttle_rate=1.0, retry_after=31_536_000.0)
    started = anyio.current_time()
    with pytest.raises(RateLimited) as caught:
        await session.client.locations.page()
    assert anyio.current_time() - started < 5.0
    assert caught.value.retry_after == 31_536_000.0
    assert session.sandbox.stats.requests == 1  # not retried
    # ...and the client, every account of it, is not paused.
    session.sandbox.faults = Faults()
    assert (await session.client.locations.page()).items
