"""The OAuth2 flow against the sandbox's authorization server, over loopback HTTP."""

from __future__ import annotations

import time

import anyio
import httpx2
import pytest

from tests.support import (
    CLIENT_SECRET,
    REDIRECT_URI,
    assert_no_secret,
    consent,
    issue,
    make_client,
    make_oauth,
    secrets_of,
)
from token_stores import MemoryTokenStore, Token
from wiser_async import WiserOAuth
from wiser_async.errors import (
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationRequired,
    StateMismatch,
    TokenEndpointError,
)
from wiser_async.sandbox import Sandbox, SandboxUrls


async def test_authorization_code_flow_stores_a_working_token(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    async with make_oauth(urls, store, scopes=["portfolio.read"]) as oauth:
        request = oauth.authorization_request(login_hint="acme")
        assert "code_challenge_method=S256" in request.url
        assert f"state={request.state}" in request.url
        assert request.code_verifier not in request.url
        callback = await consent(request.url)
        assert callback.startswith(REDIRECT_URI)
        token = await oauth.complete_authorization("acme-account", callback, request)
        stored = await store.load("acme-account")
        assert stored is not None
        assert stored.fingerprint == token.fingerprint
        assert token.lifetime == pytest.approx(3600, abs=1)
        async with make_client(oauth, urls, "acme-account") as client:
            locations = await client.locations.list()
    expected = [d["id"] for d in sandbox.portfolio_for("acme").locations()]
    assert [location.id for location in locations] == expected
    assert sandbox.stats.token_requests == {"authorization_code": 1}


async def test_state_mismatch_is_rejected_before_any_token_request(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with make_oauth(urls) as oauth:
        request = oauth.authorization_request()
        other = oauth.authorization_request()
        callback = await consent(request.url)
        with pytest.raises(StateMismatch):
            await oauth.complete_authorization("acct", callback, other)
        missing_state = callback.split("&state=")[0].split("?state=")[0]
        with pytest.raises(StateMismatch):
            await oauth.complete_authorization("acct", missing_state, request)
    assert sandbox.stats.token_requests == {}


async def test_denied_consent_raises_authorization_denied(urls: SandboxUrls) -> None:
    denying = Sandbox(consent="deny")
    with denying.serve_in_thread() as deny_urls:
        async with make_oauth(deny_urls) as oauth:
            request = oauth.authorization_request()
            callback = await consent(request.url)
            assert "error=access_denied" in callback
            with pytest.raises(AuthorizationDenied, match="denied"):
                await oauth.complete_authorization("acct", callback, request)


async def test_other_callback_errors_raise_authorization_failed(urls: SandboxUrls) -> None:
    async with make_oauth(urls) as oauth:
        request = oauth.authorization_request()
        callback = (
            f"{REDIRECT_URI}?error=invalid_scope&error_description=unknown+scope"
            f"&state={request.state}"
        )
        with pytest.raises(AuthorizationFailed, match="invalid_scope") as caught:
            await oauth.complete_authorization("acct", callback, request)
        assert caught.value.error == "invalid_scope"
        with pytest.raises(AuthorizationFailed, match="no code"):
            await oauth.complete_authorization(
                "acct", f"{REDIRECT_URI}?state={request.state}", request
            )


async def test_sandbox_rejects_a_wrong_pkce_verifier(sandbox: Sandbox, urls: SandboxUrls) -> None:
    async with make_oauth(urls) as oauth:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        code = httpx2.URL(callback).params["code"]
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.exchange_code("acct", code, code_verifier="x" * 64)
        assert caught.value.error == "invalid_grant"
        assert_no_secret(caught.value, [code, "x" * 64, CLIENT_SECRET])
        assert await oauth.store.load("acct") is None


async def test_hundred_waiters_on_an_expired_token_cause_one_refresh(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    expired = await issue(sandbox, store, "acct", expired=True)
    tokens: list[Token] = []
    async with make_oauth(urls, store) as oauth:

        async def need_token() -> None:
            tokens.append(await oauth.token("acct"))

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(need_token)
    assert sandbox.stats.token_requests == {"refresh_token": 1}
    assert len({token.fingerprint for token in tokens}) == 1
    assert tokens[0].fingerprint != expired.fingerprint
    stored = await store.load("acct")
    assert stored is not None
    assert stored.fingerprint == tokens[0].fingerprint


async def test_hundred_api_calls_on_an_expired_token_cause_one_refresh(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(100):
            tg.start_soon(client.locations.page)
    assert sandbox.stats.token_requests == {"refresh_token": 1}
    assert sandbox.stats.responses_by_status == {200: 100}


async def test_refresh_with_a_rotated_away_refresh_token_requires_authorization(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    # Another worker refreshed with the same refresh token and kept the result
    # to itself: the server rotated the refresh token we hold away.
    other_store = MemoryTokenStore()
    await other_store.save("acct", stale)
    async with make_oauth(urls, other_store) as other:
        winner = await other.token("acct")
    async with make_oauth(urls, store) as oauth:
        with pytest.raises(AuthorizationRequired) as caught:
            await oauth.token("acct")
        assert caught.value.account == "acct"
        assert "'acct'" in str(caught.value)
        assert "invalid_grant" in str(caught.value)
        assert_no_secret(caught.value, secrets_of(stale, winner))
        # The dead grant is not sent to the token endpoint again.
        calls = sandbox.stats.token_requests["refresh_token"]
        with pytest.raises(AuthorizationRequired):
            await oauth.token("acct")
        assert sandbox.stats.token_requests["refresh_token"] == calls


async def test_invalid_grant_rereads_the_store_and_uses_a_newer_token(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    async with make_oauth(urls, store) as oauth:
        # Another worker refreshed and saved without this one seeing it under
        # the lock (as when a lock lease expired): the server rotated away the
        # refresh token this one is about to use.
        other_store = MemoryTokenStore()
        await other_store.save("acct", stale)
        async with make_oauth(urls, other_store) as other:
            fresh = await other.token("acct")
        original_load = store.load
        loads = 0

        async def load(key: str) -> Token | None:
            nonlocal loads
            loads += 1
            return stale if loads == 1 else fresh

        store.load = load  # type: ignore[method-assign]
        try:
            assert (await oauth.token("acct")).fingerprint == fresh.fingerprint
        finally:
            store.load = original_load  # type: ignore[method-assign]
    assert loads == 2


async def test_401_mid_session_refreshes_once_and_the_calls_succeed(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        await client.locations.list()
        assert sandbox.revoke_access_tokens() >= 1
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.locations.page)
        assert sandbox.stats.token_requests == {"refresh_token": 1}
        statuses = sandbox.stats.responses_by_status
        # Requests already in flight with the revoked token get 401 (at most
        # the 16 in flight); the others leave after the refresh.
        assert 1 <= statuses[401] <= client.max_in_flight
        assert statuses[200] == 1 + 20
        assert client.stats.failures == 0


async def test_no_token_stored_requires_authorization(urls: SandboxUrls) -> None:
    async with make_oauth(urls) as oauth, make_client(oauth, urls, "nobody") as client:
        with pytest.raises(AuthorizationRequired, match=r"'nobody'.*no token"):
            await client.locations.list()


async def test_wrong_client_secret_is_a_token_endpoint_error(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct", expired=True)
    async with WiserOAuth(
        client_id="sandbox-client",
        client_secret="WRONG-SECRET",
        redirect_uri=REDIRECT_URI,
        store=store,
        token_url=urls.token_url,
    ) as oauth:
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.token("acct")
    assert caught.value.error == "invalid_client"
    assert_no_secret(caught.value, [*secrets_of(token), "WRONG-SECRET"])


async def test_short_lived_tokens_are_not_refreshed_on_every_call(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", lifetime=2.0)
    async with make_oauth(urls, store) as oauth:  # leeway 60 s by default
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            await oauth.token("acct")
            await anyio.sleep(0.01)
    # A 60 s leeway on a 2 s token would refresh on every call; capped at a
    # quarter of the lifetime, about one refresh per 1.5 s.
    assert 1 <= sandbox.stats.token_requests.get("refresh_token", 0) <= 3


def test_repr_of_oauth_objects_hides_secrets(urls: SandboxUrls) -> None:
    oauth = make_oauth(urls)
    request = oauth.authorization_request()
    assert request.code_verifier not in repr(request)
    assert CLIENT_SECRET not in repr(oauth)


class CountingStore(MemoryTokenStore):
    """A memory store that counts the round trips a slow store would make."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, key: str) -> Token | None:
        self.loads += 1
        return await super().load(key)


async def test_a_valid_cached_token_costs_no_store_round_trip_and_a_401_rereads_it(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = CountingStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        await client.locations.page()
        first_loads = store.loads
        for _ in range(100):
            await client.locations.page()
        assert store.loads == first_loads == 1
        sandbox.revoke_access_tokens()
        await client.locations.page()  # 401: the store is read again before refreshing
        assert store.loads == first_loads + 1
        assert sandbox.stats.token_requests == {"refresh_token": 1}


async def test_a_refresh_cancelled_by_its_caller_still_saves_the_rotated_token(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    from wiser_async.sandbox import Faults

    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    sandbox.faults = Faults(token_latency=0.3)  # the server rotates, then answers slowly
    async with make_oauth(urls, store) as oauth:
        with anyio.move_on_after(0.1):  # the caller gives up after 0.1 s
            await oauth.token("acct")
        saved = await store.load("acct")
        assert saved is not None
        assert saved.fingerprint != stale.fingerprint  # the rotated token was kept
        sandbox.faults = Faults()
        assert (await oauth.token("acct")).fingerprint == saved.fingerprint
    assert sandbox.stats.token_requests == {"refresh_token": 1}
    assert sandbox.stats.token_errors == {}


async def test_redis_store_lets_authorization_required_out_as_itself(
    sandbox: Sandbox, urls: SandboxUrls, redis_url: str
) -> None:
    import uuid

    from token_stores import RedisTokenStore

    store = RedisTokenStore(redis_url, prefix=f"test-{uuid.uuid4().hex}")
    try:
        stale = await issue(sandbox, store, "acct", expired=True)
        other = MemoryTokenStore()
        await other.save("acct", stale)
        async with make_oauth(urls, other) as rotating:
            await rotating.token("acct")  # the refresh token in Redis is now dead
        async with make_oauth(urls, store) as oauth:
            with pytest.raises(AuthorizationRequired, match="invalid_grant"):
                await oauth.token("acct")
            async with make_client(oauth, urls) as client:
                result = await client.crawl()
        assert [failure.kind for failure in result.failures] == ["authorization"]
    finally:
        await store.delete("acct")
        await store.aclose()
