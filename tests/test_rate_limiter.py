"""`RedisRateLimiter`: one rate and one 429 pause for every process sharing a key.

Timing is asserted only as lower bounds (a loaded machine only makes things
slower): a shared schedule cannot be faster than its rate, a pause cannot end
early. Redis-backed, so asyncio only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from tests.support import free_port, issue, make_client, make_oauth, start_redis
from token_stores import MemoryTokenStore, Token
from wiser_async import RedisRateLimiter
from wiser_async.errors import RateLimiterUnavailable
from wiser_async.sandbox import Sandbox, SandboxProcess, SandboxUrls

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.asyncio_only  # redis-py is asyncio-only


@pytest.fixture
def key() -> str:
    return f"test-rate-{uuid.uuid4().hex}"


@pytest.fixture
async def limiters() -> AsyncIterator[list[RedisRateLimiter]]:
    """The limiters a test opens, closed after it."""
    opened: list[RedisRateLimiter] = []
    yield opened
    for limiter in opened:
        await limiter.aclose()


async def permits(limiter: RedisRateLimiter, count: int, *, patience: float = 30.0) -> None:
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(limiter.wait_turn, anyio.current_time() + patience)


async def test_two_limiters_on_one_key_share_one_rate(
    limiters: list[RedisRateLimiter], redis_url: str, key: str
) -> None:
    first = RedisRateLimiter(redis_url, key=key, rate=50)
    second = RedisRateLimiter(redis_url, key=key, rate=50)
    limiters.extend([first, second])
    started = anyio.current_time()
    async with anyio.create_task_group() as group:
        group.start_soon(permits, first, 15)
        group.start_soon(permits, second, 15)
    took = anyio.current_time() - started
    # 30 permits from one schedule of 50/s: the first at once, the rest 20 ms apart.
    assert took >= 29 / 50 * 0.95


async def test_a_burst_goes_at_once_and_then_the_rate_holds(
    limiters: list[RedisRateLimiter], redis_url: str, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key=key, rate=0.1, burst=5)  # a slot every 10 s
    limiters.append(limiter)
    for _ in range(5):
        assert await limiter.wait_turn(anyio.current_time() + 1.0) == 0.0
    # The sixth slot is ~10 s away: beyond what this request may wait, so it is
    # told how long instead of waiting (and reserves nothing).
    assert await limiter.wait_turn(anyio.current_time() + 1.0) > 5.0
    assert await limiter.wait_turn(anyio.current_time() + 1.0) > 5.0


async def test_a_pause_set_by_one_limiter_holds_another_on_the_key(
    limiters: list[RedisRateLimiter], redis_url: str, key: str
) -> None:
    worker_a = RedisRateLimiter(redis_url, key=key, rate=1000)
    worker_b = RedisRateLimiter(redis_url, key=key, rate=1000)
    limiters.extend([worker_a, worker_b])
    await worker_a.pause(2.0)
    # A request that may not wait that long is told what is left of the pause.
    left = await worker_b.wait_turn(anyio.current_time() + 0.2)
    assert 1.0 < left <= 2.0
    # A shorter pause never shortens a longer one.
    await worker_b.pause(0.1)
    assert await worker_b.wait_turn(anyio.current_time() + 0.2) > 1.0
    # One that may wait, waits for the end of the pause.
    started = anyio.current_time()
    assert await worker_b.wait_turn(anyio.current_time() + 10.0) == 0.0
    assert anyio.current_time() - started >= left - 1.0


async def test_other_keys_are_other_limits(redis_url: str, key: str) -> None:
    async with (
        RedisRateLimiter(redis_url, key=key, rate=1000) as paused,
        RedisRateLimiter(redis_url, key=f"{key}-other", rate=1000) as free,
    ):
        await paused.pause(5.0)
        assert await free.wait_turn(anyio.current_time() + 0.5) == 0.0
        assert await paused.wait_turn(anyio.current_time() + 0.5) > 4.0


async def test_an_unreachable_redis_is_a_typed_error_after_the_patience() -> None:
    port = free_port()
    async with RedisRateLimiter(
        f"redis://127.0.0.1:{port}/0", key="nowhere", rate=10, patience=0.3
    ) as limiter:
        started = anyio.current_time()
        with pytest.raises(RateLimiterUnavailable, match="nowhere"):
            await limiter.wait_turn(anyio.current_time() + 10.0)
        assert anyio.current_time() - started >= 0.3


async def test_a_client_on_a_lost_limiter_sends_nothing(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    try:
        async with (
            RedisRateLimiter(
                f"redis://127.0.0.1:{port}/0", key="lost", rate=100, patience=0.3
            ) as limiter,
            make_oauth(urls, store) as oauth,
            make_client(oauth, urls, rate_limit=limiter) as client,
        ):
            assert await client.locations.list()
            sent = sandbox.stats.requests
            server.kill()
            server.wait(10)
            with pytest.raises(RateLimiterUnavailable):
                await client.locations.list()
            assert sandbox.stats.requests == sent
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


async def test_a_borrowed_redis_client_is_left_open(redis_url: str, key: str) -> None:
    import redis.asyncio

    borrowed = redis.asyncio.from_url(redis_url)
    async with RedisRateLimiter(borrowed, key=key, rate=10) as limiter:
        assert await limiter.wait_turn(anyio.current_time() + 1.0) == 0.0
    assert await borrowed.ping()
    await borrowed.delete(*limiter.redis_keys)
    await borrowed.aclose()


def test_the_keys_of_a_limit_share_one_cluster_slot() -> None:
    from redis.crc import key_slot

    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", key="fleet", rate=1)
    tat, pause = limiter.redis_keys
    assert key_slot(tat.encode()) == key_slot(pause.encode())
    assert "secret" not in repr(RedisRateLimiter("redis://:secret@host/0", key="k", rate=1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "key": ""}, "key"),
    ],
)
def test_nonsense_options_are_refused(options: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"key": "k", **options}
    with pytest.raises(ValueError, match=message):
        RedisRateLimiter("redis://127.0.0.1:1/0", **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def throttling_sandbox() -> Iterator[tuple[SandboxProcess, str]]:
    with SandboxProcess(locations=2, sites_per_location=1) as process:
        token = Token.from_response(process.issue_token("default"))
        yield process, token.to_json().decode()


def worker(
    mode: str, process: SandboxProcess, redis_url: str, key: str, token: str, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.rate_worker",
            mode,
            "--api",
            process.urls.api_base_url,
            "--token-url",
            process.urls.token_url,
            "--redis",
            redis_url,
            "--key",
            key,
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "WISER_TEST_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_one_workers_429_pauses_the_other_workers_too(
    throttling_sandbox: tuple[SandboxProcess, str], redis_url: str, key: str
) -> None:
    process, token = throttling_sandbox
    import httpx2

    listed = httpx2.get(
        f"{process.urls.api_base_url}/locations",
        headers={"authorization": f"Bearer {json.loads(token)['access_token']}"},
    )
    location = listed.json()["data"][0]["id"]
    process.set_faults(long_retry_after=[location], long_retry_after_seconds=2.0)
    steady = worker("steady", process, redis_url, key, token, "--duration", "8")
    try:
        assert steady.stdout is not None
        assert json.loads(steady.stdout.readline()) == {"ready": True}, steady.stderr
        throttled = worker("throttled", process, redis_url, key, token, "--path-id", location)
        out, err = throttled.communicate(timeout=60)
        assert throttled.returncode == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])
        out, err = steady.communicate(timeout=60)
        assert steady.returncode == 0, err[-2000:]
    finally:
        steady.kill()
        process.set_faults()
    assert report["retry_after"] == 2.0
    throttled_at = report["throttled_at"]
    answers = json.loads(out.strip().splitlines()[-1])["answers"]
    # The steady worker answered before and after, and not in the second after the
    # other worker's 429 (its pause lasts 2 s; a margin on both sides for a busy machine).
    assert any(moment < throttled_at for moment in answers)
    assert any(moment > throttled_at + 2.0 for moment in answers)
    during = [moment for moment in answers if throttled_at + 0.5 < moment < throttled_at + 1.5]
    assert during == [], (throttled_at, during)
