"""The FastAPI example under load: 2 uvicorn workers, short-lived tokens, refreshes.

Real processes: the sandbox (`SandboxProcess`, access tokens of 4 s),
``uvicorn --workers 2``, a real Redis. The app user alice connects three
customers through the app, then 8 browsers signed in as her, each on one
keep-alive connection pinned to a worker, call the devices route for 20 s.
Every answer must be a 200, and the tokens, refreshed by whichever worker
needs them, must be refreshed once each: the sandbox rotates refresh
tokens, so a second refresh would be an invalid_grant.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import anyio
import httpx2
import pytest

from tests.support import consent
from tests.test_integrations_web import CUSTOMERS
from tests.web_support import Browser, browsers, forget, serve_app, two_workers
from token_stores import RedisTokenStore
from wiser_async.sandbox import SandboxProcess

pytestmark = pytest.mark.asyncio_only
LIFETIME = 4.0  # seconds an access token lives
LOAD = 20.0  # seconds of load
BROWSERS = 8  # concurrent clients, half on each worker


@pytest.fixture
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        locations=1, sites_per_location=2, devices_per_site=3, token_lifetime=LIFETIME
    ) as process:
        yield process


@pytest.fixture
def server(sandbox_process: SandboxProcess, redis_url: str) -> Iterator[tuple[str, str]]:
    with serve_app("fastapi", sandbox_process, redis_url, "load") as (origin, prefix, _):
        yield origin, prefix


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_devices_under_load_across_workers(
    server: tuple[str, str], sandbox_process: SandboxProcess, redis_url: str
) -> None:
    origin, prefix = server
    a, b = await two_workers(origin, "fastapi")
    store = RedisTokenStore(redis_url, prefix=prefix)
    clients: list[Browser] = [a, b]
    try:
        # Three customers log in: the login on one worker, the callback on the other.
        await a.sign_in("alice")
        b.user, b.cookies = a.user, a.cookies  # the same browser, on the other worker
        for account in CUSTOMERS:
            url, _ = await a.login(account)
            done = await b.get(await consent(url))
            assert done.status_code == 302, done.text
            assert done.headers["x-worker"] == b.worker != a.worker
            assert done.headers["location"] == f"/customers/{account}/devices"
        assert set(await store.keys()) == set(CUSTOMERS)
        pinned = await browsers(origin, "fastapi", BROWSERS // 2)
        clients += [client for group in pinned.values() for client in group]
        for client in clients[2:]:
            await client.sign_in("alice")
        before = sandbox_process.stats()
        assert before.token_errors == {}, before.token_errors
        sandbox_process.reset_stats()  # count the load's refreshes only

        served: Counter[str] = Counter()
        failures: list[str] = []
        loaders = [client for group in zip(*pinned.values(), strict=True) for client in group]

        async def load(index: int, client: Browser, deadline: float) -> None:
            turn = index
            while time.monotonic() < deadline:
                account = CUSTOMERS[turn % len(CUSTOMERS)]
                turn += 1
                try:
                    answer = await client.get(f"/customers/{account}/devices")
                except httpx2.HTTPError as exc:
                    failures.append(f"{account}: {exc!r}")
                    continue
                served[answer.headers.get("x-worker", "?")] += 1
                if answer.status_code != 200 or not answer.json()["devices"]:
                    failures.append(f"{account}: {answer.status_code} {answer.text[:200]}")

        start = time.monotonic()
        async with anyio.create_task_group() as group:
            for index, client in enumerate(loaders):
                group.start_soon(load, index, client, start + LOAD)
        run_time = time.monotonic() - start

        stats = sandbox_process.stats()
        refreshes = stats.token_requests.get("refresh_token", 0)
        leeway = LIFETIME * 0.25 * 1.1  # a quarter of the lifetime plus up to 10% jitter
        interval = LIFETIME - leeway  # the shortest time between two refreshes of one family
        # As check_storm, per token family: one more than fit in the run (calls in
        # flight at its end still refresh), and one for a loaded machine's late send.
        bound = len(CUSTOMERS) * (run_time / interval + 2)
        requests = sum(served.values())
        print(  # noqa: T201
            f"load: {requests} requests in {run_time:.1f} s by {len(loaders)} clients; "
            f"per worker {dict(served)}; {len(failures)} failed; {refreshes} refreshes "
            f"(bound {bound:.1f}); token requests {stats.token_requests}; "
            f"token errors {stats.token_errors}; reuse {stats.refresh_reuse_detected}"
        )
        assert failures == [], failures[:10]
        assert set(served) == set(pinned) == {a.worker, b.worker}, served
        assert all(count > 0 for count in served.values()), served
        assert stats.token_errors == {}, stats.token_errors  # no invalid_grant
        assert stats.refresh_reuse_detected == 0
        assert refreshes >= len(CUSTOMERS), stats.token_requests  # refreshed during the run
        assert refreshes <= bound, f"{refreshes} refreshes, at most {bound:.1f} allowed"
    finally:
        await store.aclose()
        await forget(redis_url, prefix)
        for client in clients:
            await client.aclose()
