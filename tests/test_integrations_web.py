"""The examples under several workers: login, consent, callback, devices, refused callbacks.

Real processes: the sandbox (`SandboxProcess`), ``uvicorn --workers 2`` for
FastAPI, two aiohttp processes on one port (SO_REUSEPORT), a real Redis.
The test's browser pins keep-alive connections to known workers (each
answer names its worker in ``X-Worker``, added by tests/web_apps.py), so a
login and its callback land on different workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.support import CLIENT_SECRET, consent, free_port
from token_stores import RedisTokenStore
from wiser_async.integrations._pending import PendingLogin, RedisPendingStore
from wiser_async.integrations._session import SESSION_COOKIE, new_session_id, session_digest
from wiser_async.sandbox import SandboxProcess

ROOT = Path(__file__).parent.parent
CUSTOMERS = ("acme", "globex", "initech")
pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=1, sites_per_location=2, devices_per_site=3) as process:
        yield process


@contextmanager
def serve_app(
    kind: str, sandbox_process: SandboxProcess, redis_url: str, label: str
) -> Iterator[tuple[str, str]]:
    """An example app in two worker processes on one port: its origin and token-key prefix.

    ``fastapi``: ``uvicorn --workers 2``; ``aiohttp``: two processes sharing the
    port (SO_REUSEPORT). Whatever they wrote to stderr must hold no secret.
    """
    port, prefix = free_port(), f"{label}-{uuid.uuid4().hex[:12]}"
    origin = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "WISER_PREFIX": prefix,
        "WISER_SANDBOX": sandbox_process.urls.origin,
        "WISER_PUBLIC_URL": origin,
    }
    if kind == "fastapi":
        commands = [
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.web_apps:fastapi_app",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        ]
    else:
        commands = [[sys.executable, "-m", "tests.web_apps", "--port", str(port)]] * 2
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    try:
        yield origin, prefix
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                _, err = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                _, err = process.communicate()
            assert CLIENT_SECRET not in err


@pytest.fixture(params=["fastapi", "aiohttp"])
def server(
    request: pytest.FixtureRequest, sandbox_process: SandboxProcess, redis_url: str
) -> Iterator[tuple[str, str]]:
    with serve_app(request.param, sandbox_process, redis_url, "web") as served:
        yield served


async def pinned_connections(origin: str) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    """Clients of one keep-alive connection each, with the worker each one reached."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client = httpx2.AsyncClient(
            base_url=origin, limits=httpx2.Limits(max_connections=1), timeout=20
        )
        try:
            answer = await client.get("/wiser/nothing-here")
        except httpx2.TransportError:
            await client.aclose()
            await _pause()
            continue
        yield answer.headers["x-worker"], client


async def _pause() -> None:
    import anyio

    await anyio.sleep(0.1)


async def two_workers(origin: str) -> dict[str, httpx2.AsyncClient]:
    found: dict[str, httpx2.AsyncClient] = {}
    async for worker, client in pinned_connections(origin):
        if worker in found or len(found) == 2:
            await client.aclose()
        else:
            found[worker] = client
        if len(found) == 2:
            return found
    raise AssertionError("did not reach two workers")


async def login(browser: httpx2.AsyncClient, account: str) -> tuple[str, str, str]:
    """The login's authorization URL, the session cookie and the worker that answered."""
    answer = await browser.get(f"/wiser/login/{account}")
    assert answer.status_code == 302, answer.text
    cookie = answer.cookies.get(SESSION_COOKIE) or browser.cookies[SESSION_COOKIE]
    assert "code_challenge" in answer.headers["location"]
    return answer.headers["location"], cookie, answer.headers["x-worker"]


async def grants(store: RedisTokenStore) -> dict[str, str]:
    found = {}
    for key in await store.keys():
        token = await store.load(key)
        assert token is not None
        found[key] = token.fingerprint
    return found


async def test_logins_callbacks_and_devices_across_workers(server: tuple[str, str]) -> None:
    origin, prefix = server
    workers = await two_workers(origin)
    (first, a), (second, b) = workers.items()
    store = RedisTokenStore(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), prefix=prefix)
    try:
        callbacks = {}
        for account in CUSTOMERS:
            url, cookie, worker = await login(a, account)
            assert worker == first
            callback = await consent(url)
            done = await b.get(callback, headers={"cookie": f"{SESSION_COOKIE}={cookie}"})
            assert done.status_code == 302, done.text
            assert done.headers["x-worker"] == second != worker
            assert done.headers["location"] == f"/customers/{account}/devices"
            devices = await a.get(done.headers["location"])
            assert devices.status_code == 200, devices.text
            assert devices.json()
            assert "id" in devices.json()[0]
            callbacks[account] = (callback, cookie)
        summary = (await b.get("/portfolio")).json()
        assert set(summary["accounts"]) == set(CUSTOMERS)
        assert summary["complete"]
        before = await grants(store)
        assert set(before) == set(CUSTOMERS)

        # A replayed callback, on the other worker too.
        callback, cookie = callbacks["acme"]
        for browser in (a, b):
            replay = await browser.get(callback, headers={"cookie": f"{SESSION_COOKIE}={cookie}"})
            assert replay.status_code == 409, replay.text
            assert "already" in replay.text
            assert "code=" not in replay.text
        # A state this backend never issued.
        foreign = await b.get(
            "/wiser/callback?code=forged&state=" + uuid.uuid4().hex,
            headers={"cookie": f"{SESSION_COOKIE}={cookie}"},
        )
        assert foreign.status_code == 400
        assert "not known" in foreign.text
        # A callback from another browser session than its login's.
        url, _, _ = await login(a, "globex")
        stolen = await consent(url)
        other = await b.get(stolen, headers={"cookie": f"{SESSION_COOKIE}={new_session_id()}"})
        assert other.status_code == 403
        assert "another browser" in other.text
        none = await b.get(stolen)
        assert none.status_code in (403, 409)
        # A pending login past its TTL.
        session = new_session_id()
        pending = RedisPendingStore(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), prefix=prefix
        )
        await pending.put(
            PendingLogin(
                account="initech",
                state="expired-state",
                code_verifier="v" * 64,
                redirect_uri=f"{origin}/wiser/callback",
                session_digest=session_digest(session),
                expires_at=time.time() - 1,
            )
        )
        await pending.aclose()
        expired = await a.get(
            "/wiser/callback?code=c&state=expired-state",
            headers={"cookie": f"{SESSION_COOKIE}={session}"},
        )
        assert expired.status_code == 410
        assert "expired" in expired.text
        assert await grants(store) == before

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
                await _pause()
    finally:
        for key in await store.keys():
            await store.delete(key)
        await store.aclose()
        for browser in workers.values():
            await browser.aclose()
