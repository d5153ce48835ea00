"""A 429's pause holds every request not yet sent: none goes inside it, in any process.

A request may already have been cleared by the rate limiter when the pause
is set: it reserved a slot in the shared schedule and waits for it, or it
waits for an in-flight slot. Either way it checks the pause once more
before it is sent. Times are asserted as lower bounds (a loaded machine only
makes things later): a request held by a pause reaches the server no
earlier than the pause's end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.asgi_server import serve_asgi
from tests.support import free_port, issue, make_client, make_oauth, start_redis, wait_until
from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, RedisRateLimiter, RetryPolicy
from wiser_async.errors import RateLimited, RateLimiterUnavailable
from wiser_async.sandbox import Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.timeout(120)

RETRY_AFTER = 1.0
SCRIPTS = ("evalsha", "eval")


class Api:
    """A loopback API server of the test's own.

    Notes when each request arrives (``time.time()``) and answers 200 with
    the location its path names; ``/locations/first`` waits for `release`
    and then answers 429 with ``Retry-After: 1``.
    """

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.release = threading.Event()
        self.throttled_at: float | None = None

    def reset(self) -> None:
        self.arrivals.clear()
        self.release.clear()
        self.throttled_at = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        self.arrivals[path] = time.time()
        if path == "/locations/first":
            # Set by the test from its own thread: waited for off this loop.
            await anyio.to_thread.run_sync(self.release.wait, 30.0)
            self.throttled_at = time.time()
            headers = [(b"retry-after", f"{RETRY_AFTER:g}".encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"id": path.rsplit("/", 1)[-1]}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Api, str]]:
    app = Api()
    with serve_asgi(app) as origin:
        yield app, origin


@pytest.mark.usefixtures("http_stack")
async def test_a_request_waiting_for_an_in_flight_slot_waits_out_the_pause_of_the_429_that_freed_it(
    sandbox: Sandbox, urls: SandboxUrls, api: tuple[Api, str]
) -> None:
    server, origin = api
    server.reset()
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    throttled: list[RateLimited] = []

    async def first() -> None:
        with pytest.raises(RateLimited) as caught:
            await client.locations.get("first")
        throttled.append(caught.value)

    async with (
        make_oauth(urls, store) as oauth,
        make_client(
            oauth,
            urls,
            config=ApiConfig(base_url=origin),
            max_in_flight=1,
            retry=RetryPolicy(attempts=1),
        ) as client,
        anyio.create_task_group() as group,
    ):
        group.start_soon(first)
        await wait_until(lambda: "/locations/first" in server.arrivals)
        group.start_soon(client.locations.get, "second")
        # The second request is now waiting for the one in-flight slot.
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    assert throttled
    assert server.throttled_at is not None
    # The 429 freed the slot and paused the client at once: the second request
    # went only after the pause, not through the slot the 429 gave back.
    assert server.arrivals["/locations/second"] - server.throttled_at >= RETRY_AFTER


# -- RedisRateLimiter: every process holds its reserved requests (asyncio only) -------


@pytest.fixture
def key() -> str:
    return f"test-pause-{uuid.uuid4().hex}"


@pytest.fixture
async def limiters() -> AsyncIterator[list[RedisRateLimiter]]:
    """The limiters a test opens, closed after it."""
    opened: list[RedisRateLimiter] = []
    yield opened
    for limiter in opened:
        await limiter.aclose()


@pytest.mark.asyncio_only
async def test_requests_that_reserved_a_slot_do_not_go_inside_a_pause_another_limiter_set(
    limiters: list[RedisRateLimiter], redis_url: str, key: str
) -> None:
    pauser = RedisRateLimiter(redis_url, key=key, rate=10)
    other = RedisRateLimiter(redis_url, key=key, rate=10)
    limiters.extend([pauser, other])
    went: list[tuple[RedisRateLimiter, float]] = []
    one_went = anyio.Event()

    async def request(limiter: RedisRateLimiter) -> None:
        assert await limiter.wait_turn(anyio.current_time() + 30.0) == 0.0
        went.append((limiter, anyio.current_time()))
        one_went.set()

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(request, pauser)
            group.start_soon(request, other)
        # 8 requests on one schedule of 10/s: one goes, the others wait for their slots.
        await one_went.wait()
        asked = anyio.current_time()
        await pauser.pause(2.0)
        set_at = anyio.current_time()
    assert len(went) == 8
    held = [(limiter, moment) for limiter, moment in went if moment >= set_at]
    # Most were waiting when the pause came, in both limiters...
    assert len(held) >= 4
    assert {limiter for limiter, _ in held} == {pauser, other}
    # ...and none of them went before its end.
    assert [moment - asked for _, moment in held if moment < asked + 2.0] == []


def wave_worker(
    origin: str, redis_url: str, key: str, name: str, *, pause: float = 0.0
) -> subprocess.Popen[str]:
    """A worker process getting 4 locations at once at a shared 10/s (see tests.rate_worker)."""
    now = time.time()
    token = Token(access_token=f"access-{uuid.uuid4().hex}", expires_at=now + 3600, issued_at=now)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.rate_worker",
            "wave",
            "--api",
            origin,
            "--token-url",
            f"{origin}/token",
            "--redis",
            redis_url,
            "--key",
            key,
            "--rate",
            "10",
            "--requests",
            "4",
            "--path-id",
            name,
            "--pause",
            str(pause),
        ],
        cwd=ROOT,
        env={**os.environ, "WISER_TEST_TOKEN": token.to_json().decode()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_no_process_sends_inside_a_pause_one_of_them_set(
    api: tuple[Api, str], redis_url: str, key: str
) -> None:
    server, origin = api
    server.reset()
    workers = [
        wave_worker(origin, redis_url, key, "pauser", pause=2.0),
        wave_worker(origin, redis_url, key, "other"),
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if json.loads(worker.stdout.readline() or "{}") != {"ready": True}:
                pytest.fail(worker.communicate(timeout=30)[1][-2000:])
        # Both go at once: 8 requests waiting on one schedule of 10/s.
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
    asked, set_at = reports[0]["paused"]
    sent: dict[str, float] = {**reports[0]["sent"], **reports[1]["sent"]}
    arrived = {path: moment for path, moment in server.arrivals.items() if "warmup" not in path}
    timeline = {
        path: (round(sent[path] - asked, 3), round(arrived[path] - asked, 3))
        for path in sorted(sent, key=sent.__getitem__)
    }
    assert sorted(arrived) == sorted(sent), timeline
    assert len(arrived) == 8, timeline
    # A request the client sent before the pause was set was in flight: it may
    # reach the server after. Every other one was waiting when the pause came.
    held = [path for path, moment in sent.items() if moment >= set_at]
    assert len(held) >= 4, timeline
    assert {path.rsplit("/", 1)[-1].split("-")[0] for path in held} == {"pauser", "other"}, timeline
    # None of them was sent, or reached the server, inside the pause: all after it.
    assert [path for path in held if sent[path] < asked + 2.0] == [], timeline
    assert [path for path in held if arrived[path] < asked + 2.0] == [], timeline
    # On the server's clock alone: after the pause was set, and the longest
    # time a request took to reach it, nothing arrived until the pause's end.
    latency = max(arrived[path] - sent[path] for path in sent)
    inside = [path for path, moment in arrived.items() if set_at + latency < moment < asked + 2.0]
    assert inside == [], timeline


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own: its command counts are this test's alone."""
    port = free_port()
    server = start_redis(port, tmp_path)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(10)


async def script_calls(url: str) -> int:
    """How many scripts (``EVALSHA``, ``EVAL``) the Redis at `url` has run."""
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


@pytest.mark.asyncio_only
async def test_the_check_after_a_wait_costs_about_no_extra_round_trip(
    limiters: list[RedisRateLimiter], own_redis: str
) -> None:
    first = RedisRateLimiter(own_redis, key="fleet", rate=200)
    second = RedisRateLimiter(own_redis, key="fleet", rate=200)
    limiters.extend([first, second])
    await first.wait_turn(anyio.current_time() + 10.0)  # the scripts are loaded
    before = await script_calls(own_redis)
    per_limiter = 12

    async def request(limiter: RedisRateLimiter) -> None:
        assert await limiter.wait_turn(anyio.current_time() + 30.0) == 0.0

    async with anyio.create_task_group() as group:
        for _ in range(per_limiter):
            group.start_soon(request, first)
            group.start_soon(request, second)
    calls = await script_calls(own_redis) - before
    # One call per request, as when nothing was checked after a wait: each
    # check reserves the slots of the requests that came meanwhile; a wave of
    # requests costs one call more per limiter.
    assert calls <= 2 * per_limiter + 2


@pytest.mark.asyncio_only
async def test_cancelled_waiting_requests_leave_the_others_served(
    limiters: list[RedisRateLimiter], redis_url: str, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key=key, rate=50)
    limiters.append(limiter)
    went = 0

    async def request(cancel_after: float | None) -> None:
        nonlocal went
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                scope.deadline = anyio.current_time() + cancel_after
            assert await limiter.wait_turn(anyio.current_time() + 30.0) == 0.0
            went += 1

    async with anyio.create_task_group() as group:
        # Cancelled while waiting for a slot, for another's call, or at once.
        for number in range(12):
            group.start_soon(request, None if number % 3 else 0.03 * number)
    assert went >= 8
    # The limiter is left as it was: a later request is served.
    with anyio.fail_after(10):
        assert await limiter.wait_turn(anyio.current_time() + 10.0) == 0.0


@pytest.mark.asyncio_only
async def test_requests_waiting_on_an_unreachable_redis_each_fail_after_their_patience() -> None:
    port = free_port()
    async with RedisRateLimiter(
        f"redis://127.0.0.1:{port}/0", key="nowhere", rate=10, patience=0.3
    ) as limiter:
        took: list[float] = []

        async def request() -> None:
            started = anyio.current_time()
            with pytest.raises(RateLimiterUnavailable, match="nowhere"):
                await limiter.wait_turn(started + 10.0)
            took.append(anyio.current_time() - started)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(request)
        # Each one failed, none before its patience: those that waited for
        # another's call were not failed by it.
        assert len(took) == 5
        assert min(took) >= 0.3
        # A later request is not left waiting for a call that never comes.
        with pytest.raises(RateLimiterUnavailable):
            await limiter.wait_turn(anyio.current_time() + 10.0)
