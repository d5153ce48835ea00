"""Token benchmarks: the valid-token hot path per store, and Redis commands per API request.

`token_hot_path` times ``await oauth.token(account)`` with a valid token,
for the memory, file and Redis stores, against the baseline a client
without WiserOAuth's in-process cache would pay: one ``store.load()`` per
call, measured in the same run.

`redis_commands` sends 1,000 API requests (over loopback HTTP to the sandbox
in another process) with a valid token held in a `RedisTokenStore`, and
counts the commands the Redis server executed meanwhile (``INFO
commandstats``), against 1,000 ``store.load()`` calls of a cache-less client.
Both talk to a redis-server of their own on a free port, so no other client's
commands are counted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio

from token_stores import FileTokenStore, MemoryTokenStore, RedisTokenStore, Token, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth
from wiser_async.sandbox import PortfolioSpec

from ._client import ACCOUNT, CLIENT_ID, CLIENT_SECRET
from ._core import BenchmarkError, Context, Result, register, result, summarize, target

__all__ = ["redis_commands", "token_hot_path"]

SMALL = PortfolioSpec(locations=1, sites_per_location=1, rooms_per_site=1, devices_per_site=2)
# A token that stays valid for the whole benchmark: only the hot path runs.
_VALID_TOKEN = Token(access_token="bench-access", refresh_token="bench-refresh", expires_at=4e9)


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of this run's own, on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchmarkError("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                        break
                except OSError:
                    time.sleep(0.025)
            else:
                raise BenchmarkError("redis-server did not start")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


@asynccontextmanager
async def open_store(kind: str, redis_url: str, directory: Path) -> AsyncIterator[TokenStore]:
    if kind == "memory":
        yield MemoryTokenStore()
    elif kind == "file":
        yield FileTokenStore(directory / "tokens")
    else:
        store = RedisTokenStore(redis_url, prefix=f"bench-{uuid.uuid4().hex}")
        try:
            yield store
        finally:
            await store.delete(ACCOUNT)
            await store.aclose()


async def _hot_path(kind: str, redis_url: str, directory: Path, calls: int) -> tuple[float, float]:
    """Microseconds per cached ``oauth.token()`` and per ``store.load()``."""
    async with open_store(kind, redis_url, directory) as store:
        await store.save(ACCOUNT, _VALID_TOKEN)
        async with WiserOAuth(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, store=store
        ) as oauth:
            await oauth.token(ACCOUNT)  # fills the cache: the first call reads the store
            started = time.perf_counter()
            for _ in range(calls):
                await oauth.token(ACCOUNT)
            cached = (time.perf_counter() - started) / calls * 1e6
        loads = max(1, calls // 20)  # store reads are slower: fewer suffice
        started = time.perf_counter()
        for _ in range(loads):
            await store.load(ACCOUNT)
        load = (time.perf_counter() - started) / loads * 1e6
    return cached, load


@register(
    "token_hot_path",
    repeat=5,
    description="await oauth.token() with a valid token, per store, vs one store.load()",
)
def token_hot_path(ctx: Context) -> Result:
    calls = 2_000 if ctx.quick else 20_000
    cached: dict[str, list[float]] = {"memory": [], "file": [], "redis": []}
    loads: dict[str, list[float]] = {"memory": [], "file": [], "redis": []}
    with redis_server() as redis_url, tempfile.TemporaryDirectory() as directory:
        for repetition in range(ctx.repeat):
            for kind in cached:
                hot, load = anyio.run(_hot_path, kind, redis_url, Path(directory), calls)
                cached[kind].append(hot)
                loads[kind].append(load)
                ctx.log(
                    f"  {kind} {repetition + 1}/{ctx.repeat}: {hot:.2f} us cached, "
                    f"{load:.1f} us per store read"
                )
    figures: dict[str, Any] = {"calls_per_run": calls}
    targets = []
    for kind in cached:
        figures[f"{kind}_cached_us"] = summarize(cached[kind])
        figures[f"{kind}_store_load_us"] = summarize(loads[kind])
        median_hot = summarize(cached[kind])["median"]
        median_load = summarize(loads[kind])["median"]
        if kind != "memory":  # a dict read is no slower than the cache in front of it
            targets.append(
                target(
                    f"{kind} store: cached token vs a store read",
                    median_hot,
                    median_load,
                    limit=0.1,
                    unit="us",
                )
            )
    return result(
        "token_hot_path",
        figures=figures,
        targets=targets,
        notes=[
            f"{calls:,} cached calls per run, medians of {ctx.repeat}; "
            + "; ".join(
                f"{kind} {summarize(cached[kind])['median']:.2f} us cached vs "
                f"{summarize(loads[kind])['median']:.1f} us per store read"
                for kind in cached
            ),
            "the cache answers without a store round trip while the token is valid; "
            "a store read is what a client without it would pay on every API request",
        ],
    )


async def _command_count(redis: Any) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config")
    )


async def _api_requests(
    redis_url: str, api_base_url: str, token_url: str, token: Token, requests: int
) -> tuple[int, int, int]:
    """Redis commands for: the first request, the next `requests`, and `requests` store reads."""
    import redis.asyncio

    counter = redis.asyncio.from_url(redis_url)
    store = RedisTokenStore(redis_url, prefix=f"bench-{uuid.uuid4().hex}")
    try:
        await store.save(ACCOUNT, token)
        async with (
            WiserOAuth(
                client_id=CLIENT_ID, client_secret=CLIENT_SECRET, store=store, token_url=token_url
            ) as oauth,
            AsyncWiserClient(oauth, ACCOUNT, config=ApiConfig(base_url=api_base_url)) as client,
        ):
            before = await _command_count(counter)
            await client.locations.page(limit=1)
            first = await _command_count(counter) - before
            before = await _command_count(counter)
            for _ in range(requests):
                await client.locations.page(limit=1)
            steady = await _command_count(counter) - before
            if client.stats.failures:
                raise BenchmarkError(f"{client.stats.failures} API requests failed")
        before = await _command_count(counter)
        for _ in range(requests):
            await store.load(ACCOUNT)
        cacheless = await _command_count(counter) - before
    finally:
        await store.delete(ACCOUNT)
        await store.aclose()
        await counter.aclose()
    return first, steady, cacheless


@register(
    "redis_commands",
    repeat=3,
    description="Redis commands per 1,000 API requests with a valid token (target 0)",
)
def redis_commands(ctx: Context) -> Result:
    requests = 100 if ctx.quick else 1_000
    process = ctx.sandbox(SMALL)
    token = Token.from_response(process.issue_token("default"))
    firsts, steadies, cacheless = [], [], []
    with redis_server() as redis_url:
        for repetition in range(ctx.repeat):
            first, steady, baseline = anyio.run(
                _api_requests,
                redis_url,
                process.urls.api_base_url,
                process.urls.token_url,
                token,
                requests,
            )
            firsts.append(first)
            steadies.append(steady * 1000 / requests)
            cacheless.append(baseline * 1000 / requests)
            ctx.log(
                f"  {repetition + 1}/{ctx.repeat}: {steady} Redis commands for {requests} API "
                f"requests (the first request: {first}); a cache-less client: {baseline}"
            )
    worst = max(steadies)
    return result(
        "redis_commands",
        figures={
            "api_requests_per_run": requests,
            "commands_per_1000_requests": summarize(steadies),
            "commands_for_the_first_request": summarize(firsts),
            "cacheless_commands_per_1000_requests": summarize(cacheless),
        },
        targets=[
            # The bound is what a client reading the store per request sends;
            # a limit of 0 means: none at all.
            target(
                "Redis commands per 1,000 requests (worst run)",
                worst,
                summarize(cacheless)["median"],
                limit=0.0,
                unit="cmds",
            )
        ],
        notes=[
            f"{worst:g} commands per 1,000 API requests with a valid token (worst of "
            f"{ctx.repeat}); the first request of a process costs "
            f"{summarize(firsts)['median']:g} (lock, read, unlock: it fills the cache); "
            f"a client reading the store per request would send "
            f"{summarize(cacheless)['median']:g}"
        ],
    )
