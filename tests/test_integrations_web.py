"""The examples under several workers: login, consent, callback, devices, refused callbacks.

Real processes: the sandbox (`SandboxProcess`), ``uvicorn --workers 2`` for
FastAPI, two aiohttp processes on one port (SO_REUSEPORT), a real Redis.
Each test browser keeps one keep-alive connection to a known worker (each
answer names its worker in ``X-Worker``, added by tests/web_apps.py), so a
login and its callback land on different workers. The app user is alice
(tests/web_support.py), who may act for acme, globex and hooli.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anyio
import pytest

from tests.support import consent
from tests.web_support import LOGIN_COOKIE, Browser, fingerprints, forget, serve_app, two_workers
from token_stores import RedisTokenStore
from wiser_async.integrations._pending import PendingLogin
from wiser_async.integrations._session import cookie_digest, new_browser_id, new_cookie
from wiser_async.integrations.fastapi import RedisPendingStore
from wiser_async.sandbox import SandboxProcess

CUSTOMERS = ("acme", "globex", "hooli")
pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=1, sites_per_location=2, devices_per_site=3) as process:
        yield process


@pytest.fixture(params=["fastapi", "aiohttp"])
def server(
    request: pytest.FixtureRequest, sandbox_process: SandboxProcess, redis_url: str
) -> Iterator[tuple[str, str, str]]:
    with serve_app(request.param, sandbox_process, redis_url, "web") as (origin, prefix, _):
        yield request.param, origin, prefix


async def test_logins_callbacks_and_devices_across_workers(
    server: tuple[str, str, str], redis_url: str
) -> None:
    kind, origin, prefix = server
    a, b = await two_workers(origin, kind)
    await a.sign_in("alice")
    b.user, b.cookies = a.user, a.cookies  # the same browser, on the other worker
    store = RedisTokenStore(redis_url, prefix=prefix)
    try:
        callbacks = {}
        for account in CUSTOMERS:
            url, cookie = await a.login(account)
            callback = await consent(url)
            done = await b.get(callback)
            assert done.status_code == 302, done.text
            assert done.headers["x-worker"] == b.worker != a.worker
            assert done.headers["location"] == f"/customers/{account}/devices"
            devices = await a.get(done.headers["location"])
            assert devices.status_code == 200, devices.text
            assert devices.json()["complete"]
            assert "id" in devices.json()["devices"][0]
            callbacks[account] = (callback, cookie)
        # The portfolio covers alice's accounts: umbrella is not connected yet.
        summary = (await b.get("/portfolio")).json()
        assert set(summary["accounts"]) == {*CUSTOMERS, "umbrella"}
        assert all(summary["accounts"][account]["devices"] for account in CUSTOMERS)
        assert not summary["complete"]
        assert {failure["account"] for failure in summary["failures"]} == {"umbrella"}
        before = await fingerprints(store)
        assert set(before) == set(CUSTOMERS)

        # A replayed callback, on the other worker too.
        callback, cookie = callbacks["acme"]
        for browser in (a, b):
            replay = await browser.get(callback, cookies={LOGIN_COOKIE: cookie})
            assert replay.status_code == 409, replay.text
            assert "already" in replay.text
            assert "code=" not in replay.text
        # A state this backend never issued.
        foreign = await b.get("/wiser/callback?code=forged&state=" + uuid.uuid4().hex)
        assert foreign.status_code == 400
        assert "not known" in foreign.text
        # A callback from another browser than its login's, then without a cookie:
        # both refused, and the login is still its own browser's.
        url, _ = await a.login("globex")
        stolen = await consent(url)
        other = Browser(b.client, b.worker, kind)
        await other.sign_in("alice")
        await other.login("hooli")  # a login cookie of its own
        refused = await other.get(stolen)
        assert refused.status_code == 403
        assert "browser" in refused.text
        none = await b.get(stolen, cookies={})
        assert none.status_code == 403
        done = await b.get(stolen)
        assert done.status_code == 302, done.text
        before = await fingerprints(store)
        # A pending login past its TTL, stored as the app would have.
        cookie = new_cookie()
        pending = RedisPendingStore(redis_url, prefix=prefix)
        try:
            assert await pending.start(
                PendingLogin(
                    account="hooli",
                    state="expired-state",
                    code_verifier="v" * 64,
                    redirect_uri=f"{origin}/wiser/callback",
                    browser=new_browser_id(),
                    expires_at=time.time() - 1,
                ),
                cookie=cookie_digest(cookie),
                previous_cookie=None,
            )
        finally:
            await pending.aclose()
        expired = await a.get(
            "/wiser/callback?code=c&state=expired-state", cookies={LOGIN_COOKIE: cookie}
        )
        assert expired.status_code == 410, expired.text
        assert "expired" in expired.text
        assert await fingerprints(store) == before

        # Revocation: both workers say "log in again" soon after a delete.
        assert await store.delete("acme")
        deadline = time.monotonic() + 5
        for browser in (a, b):
            while True:
                answer = await browser.get("/customers/acme/devices")
                if answer.status_code == 401:
                    assert answer.json()["error"] == "log in again"
                    break
                assert time.monotonic() < deadline, answer.text
                await anyio.sleep(0.1)
    finally:
        await store.aclose()
        await forget(redis_url, prefix)
        for browser in (a, b):
            await browser.aclose()
