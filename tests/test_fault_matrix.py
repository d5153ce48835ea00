"""The fault matrix: each fault against the sandbox and against an independent server.

For odd ``expires_in`` values, a store outage during the save (an injected
failing store, and a real Redis killed with SIGKILL), a lock holder paused
past its lease, and a replayed callback: the next ``token()`` after recovery
succeeds without a new login, and the store ends with the newest token. The
independent server is authlib's RFC 6749 / 7636 implementation
(`tests.authlib_server`), with reuse detection that revokes the whole grant.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from tests.authlib_server import AuthlibServer
from tests.support import FlakyStore, consent, free_port, start_redis, wait_until
from token_stores import MemoryTokenStore, RedisTokenStore, Token, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth
from wiser_async.errors import AuthorizationReplayed
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent
REDIRECT_URI = "http://127.0.0.1:8765/callback"


@attrs.define
class Server:
    """What the matrix needs of an authorization server and its API."""

    name: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_base_url: str
    issue: Callable[[], dict[str, Any]]
    # Faults: answer_delay, drops, expires_in (JSON value) or raw_expires_in (JSON text).
    set_faults: Callable[..., None]
    refreshes: Callable[[], int]
    errors: Callable[[], dict[str, int]]
    reuse_detected: Callable[[], int]

    def oauth(self, store: TokenStore, **options: Any) -> WiserOAuth:
        return WiserOAuth(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=REDIRECT_URI,
            store=store,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            **options,
        )

    def client(self, oauth: WiserOAuth) -> AsyncWiserClient:
        return AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url=self.api_base_url),
            retry=RetryPolicy(attempts=2, wait_initial=0.01),
        )


def sandbox_server(sandbox: Sandbox, urls: SandboxUrls) -> Server:
    def set_faults(**faults: Any) -> None:
        names = {
            "answer_delay": "token_answer_delay",
            "drops": "token_answer_drops",
            "raw_expires_in": "token_expires_in_raw",
        }
        sandbox.faults = Faults(**{names.get(k, f"token_{k}"): v for k, v in faults.items()})

    return Server(
        name="sandbox",
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        authorize_url=urls.authorize_url,
        token_url=urls.token_url,
        api_base_url=urls.api_base_url,
        issue=sandbox.issue_token,
        set_faults=set_faults,
        refreshes=lambda: sandbox.stats.token_requests.get("refresh_token", 0),
        errors=lambda: dict(sandbox.stats.token_errors),
        reuse_detected=lambda: sandbox.stats.refresh_reuse_detected,
    )


def independent_server(server: AuthlibServer, urls: Any) -> Server:
    def set_faults(**faults: Any) -> None:
        server.clear_faults()
        names = {"drops": "drop_answers"}
        for name, value in faults.items():
            setattr(server, names.get(name, name), value)

    return Server(
        name="authlib",
        client_id=server.client_id,
        client_secret=server.client_secret,
        authorize_url=urls.authorize_url,
        token_url=urls.token_url,
        api_base_url=urls.api_base_url,
        issue=server.issue_token,
        set_faults=set_faults,
        refreshes=lambda: server.token_requests["refresh_token"],
        errors=lambda: dict(server.token_errors),
        reuse_detected=lambda: server.reuse_detected + server.code_reuse_detected,
    )


@pytest.fixture(scope="module")
def authlib_server() -> Iterator[tuple[AuthlibServer, Any]]:
    server = AuthlibServer()
    with server.serve_in_thread() as urls:
        yield server, urls


@pytest.fixture(params=["sandbox", "authlib"])
def server(
    request: pytest.FixtureRequest,
    served_sandbox: tuple[Sandbox, SandboxUrls],
    authlib_server: tuple[AuthlibServer, Any],
) -> Iterator[Server]:
    """Each authorization server of the matrix, with no faults and zeroed counters."""
    if request.param == "sandbox":
        sandbox, urls = served_sandbox
        sandbox.faults = Faults()
        sandbox.reset_stats()
        yield sandbox_server(sandbox, urls)
        sandbox.faults = Faults()
    else:
        independent, urls = authlib_server
        independent.reset()
        yield independent_server(independent, urls)
        independent.reset()


def expired(answer: dict[str, Any]) -> Token:
    """A stored token due for a refresh at once."""
    token = Token.from_response(answer)
    return attrs.evolve(token, expires_at=time.time() - 1, issued_at=time.time() - 3601)


async def assert_grant_works(server: Server, oauth: WiserOAuth, store: TokenStore) -> Token:
    """The next token() succeeds without a new login, the API takes it, the store has it."""
    token = await oauth.token("acct")
    async with server.client(oauth) as client:
        assert (await client.locations.page(limit=1)).items
    stored = await store.load("acct")
    assert stored is not None
    assert stored.fingerprint == token.fingerprint
    assert server.reuse_detected() == 0
    assert "invalid_grant" not in server.errors()
    return token


ODD_EXPIRES_IN = [
    pytest.param({"expires_in": "3600.5"}, id="numeric-string"),
    pytest.param({"expires_in": "soon"}, id="word"),
    pytest.param({"expires_in": [3600]}, id="list"),
    pytest.param({"expires_in": {}}, id="object"),
    pytest.param({"raw_expires_in": "1e400"}, id="1e400"),
    pytest.param({"expires_in": 0}, id="zero"),
    pytest.param({"expires_in": -5}, id="negative"),
]


@pytest.mark.parametrize("fault", ODD_EXPIRES_IN)
async def test_odd_expires_in_in_a_refresh_answer(server: Server, fault: dict[str, Any]) -> None:
    store = MemoryTokenStore()
    stale = expired(server.issue())
    await store.save("acct", stale)
    server.set_faults(**fault)
    async with server.oauth(store) as oauth:
        token = await assert_grant_works(server, oauth, store)
        assert token.fingerprint != stale.fingerprint
        assert token.lifetime is not None
        assert token.lifetime >= 3600  # never "expired at once"
        for _ in range(5):
            await oauth.token("acct")
    assert server.refreshes() == 1


async def test_a_store_that_fails_the_save_after_a_rotation(server: Server) -> None:
    inner = MemoryTokenStore()
    store = FlakyStore(inner)
    stale = expired(server.issue())
    await inner.save("acct", stale)
    async with server.oauth(store) as oauth, server.client(oauth) as client:
        store.fail_writes = True
        new = await oauth.token("acct")
        assert (await client.locations.page(limit=1)).items  # served by the token only it holds
        store.fail_writes = False
        with anyio.fail_after(10):
            while oauth.unsaved_accounts:
                await client.locations.page(limit=1)
                await anyio.sleep(0.05)
        token = await assert_grant_works(server, oauth, inner)
        assert token.fingerprint == new.fingerprint


async def test_a_replayed_callback(server: Server) -> None:
    store = MemoryTokenStore()
    async with server.oauth(store) as oauth:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        first = await oauth.complete_authorization("acct", callback, request)
        with pytest.raises(AuthorizationReplayed):
            await oauth.complete_authorization("acct", callback, request)
        token = await assert_grant_works(server, oauth, store)
        assert token.fingerprint == first.fingerprint


@pytest.mark.asyncio_only
@pytest.mark.timeout(60)
async def test_redis_killed_and_restarted_during_the_save(server: Server, tmp_path: Path) -> None:
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    store = RedisTokenStore(url, prefix="killed")
    try:
        stale = expired(server.issue())
        await store.save("acct", stale)
        server.set_faults(answer_delay=1.0)  # rotated at once, answered 1 s later
        async with server.oauth(store) as oauth, server.client(oauth) as client:
            new: list[Token] = []

            async def refresh() -> None:
                new.append(await oauth.token("acct"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(refresh)
                await wait_until(lambda: server.refreshes() == 1)
                redis_server.kill()  # SIGKILL while the answer is on its way
                redis_server.wait(5)
            assert oauth.unsaved_accounts == ["acct"]
            assert (await client.locations.page(limit=1)).items
            redis_server = start_redis(port, tmp_path)
            with anyio.fail_after(20):
                while oauth.unsaved_accounts:
                    await client.locations.page(limit=1)
                    await anyio.sleep(0.1)
            token = await assert_grant_works(server, oauth, store)
            assert token.fingerprint == new[0].fingerprint
    finally:
        await store.aclose()
        redis_server.kill()
        redis_server.wait(5)


@pytest.mark.asyncio_only
@pytest.mark.timeout(90)
async def test_a_lock_holder_paused_past_its_lease(
    server: Server, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wiser_async")
    prefix = f"paused-{uuid.uuid4().hex}"
    store = RedisTokenStore(redis_url, prefix=prefix, lease=1.0)
    await store.save("acct", Token.from_response(server.issue()))
    server.set_faults(answer_delay=2.0)  # the holder's refresh: rotated, answered 2 s later
    holder = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [
            sys.executable,
            "-m",
            "tests.token_worker",
            "refresh",
            "--store",
            redis_url,
            "--prefix",
            prefix,
            "--lease",
            "1.0",
            "--client-id",
            server.client_id,
            "--api",
            server.api_base_url,
            "--token-url",
            server.token_url,
        ],
        cwd=ROOT,
        env={**os.environ, "WISER_TEST_CLIENT_SECRET": server.client_secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until(lambda: server.refreshes() == 1)
        os.kill(holder.pid, signal.SIGSTOP)  # paused mid-refresh, holding the lock
        await anyio.sleep(1.5)  # past its lease: the lock is free for others
        server.set_faults()
        async with server.oauth(store) as oauth:
            refreshed: list[Token] = []

            async def refresh() -> None:
                refreshed.append(await oauth.refresh("acct"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(refresh)
                await wait_until(lambda: "previous holder" in caplog.text)
                os.kill(holder.pid, signal.SIGCONT)  # it wakes, gets its answer, saves
            out, err = holder.communicate(timeout=30)
            assert holder.returncode == 0, err[-2000:]
            token = await assert_grant_works(server, oauth, store)
        saved_by_holder = json.loads(out.strip().splitlines()[-1])["fingerprint"]
        # The waiter took the token the holder saved rather than re-sending the
        # refresh token the holder had spent.
        assert refreshed[0].fingerprint == saved_by_holder == token.fingerprint
        assert server.refreshes() == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait(5)
        await store.delete("acct")
        await store.aclose()


# -- RFC details a real authorization server enforces ------------------------------------


async def test_client_secret_basic_reaches_the_server_intact(server: Server) -> None:
    # The independent server's secret holds "+", "/", "%2B", ":" and a space.
    store = MemoryTokenStore()
    await store.save("acct", expired(server.issue()))
    async with server.oauth(store, token_endpoint_auth_method="client_secret_basic") as oauth:
        await assert_grant_works(server, oauth, store)
    assert server.errors() == {}


async def test_a_narrower_grant_than_asked_keeps_refreshing(server: Server) -> None:
    store = MemoryTokenStore()
    asked = ["read", "write"] if server.name == "authlib" else ["energy-monitoring:read"]
    async with server.oauth(store, scopes=asked) as oauth:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        granted = await oauth.complete_authorization("acct", callback, request)
        refreshed = await oauth.refresh("acct")
        assert refreshed.scope == granted.scope
        await assert_grant_works(server, oauth, store)
    assert server.errors() == {}
    if server.name == "authlib":
        assert granted.scope == "read"  # less than asked: a refresh asking "read write" fails


async def test_token_endpoint_errors_carry_status_and_code(server: Server) -> None:
    store = MemoryTokenStore()
    await store.save("acct", expired(server.issue()))
    async with WiserOAuth(
        client_id=server.client_id,
        client_secret="not-the-secret",
        store=store,
        token_url=server.token_url,
    ) as oauth:
        from wiser_async.errors import TokenEndpointError

        with pytest.raises(TokenEndpointError) as caught:
            await oauth.token("acct")
    assert caught.value.error == "invalid_client"
    assert caught.value.status_code in (400, 401)
