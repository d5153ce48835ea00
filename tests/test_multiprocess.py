"""Many processes sharing tokens: refresh storms, crashes, a Redis restart.

Real processes, the real file system, real Redis and the sandbox in a child
process over loopback HTTP.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests import crash_writer
from tests.support import free_port, make_client, make_oauth, start_redis
from token_stores import (
    CorruptTokenData,
    FileTokenStore,
    RedisTokenStore,
    StoreUnavailable,
    Token,
    TokenStore,
)
from wiser_async import RetryPolicy
from wiser_async.sandbox import SandboxProcess

ROOT = Path(__file__).parent.parent
PROCESSES = 8
COROUTINES = 50
LIFETIME = 2.0
DURATION = 20.0


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=2, sites_per_location=2) as process:
        yield process


def run_storm(
    process: SandboxProcess, store: str, prefix: str
) -> tuple[list[dict[str, object]], float]:
    start_at = time.time() + 4.0  # every worker imported and connected by then
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.storm_worker",
                "--store",
                store,
                "--prefix",
                prefix,
                "--api",
                process.urls.api_base_url,
                "--token-url",
                process.urls.token_url,
                "--coroutines",
                str(COROUTINES),
                "--duration",
                str(DURATION),
                "--start-at",
                str(start_at),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    reports = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=DURATION + 40)
            assert worker.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            worker.kill()
    # Workers stop calling DURATION seconds after the common start.
    return reports, DURATION


def check_storm(process: SandboxProcess, reports: list[dict[str, object]], run_time: float) -> None:
    stats = process.stats()
    refreshes = stats.token_requests.get("refresh_token", 0)
    # The leeway in use: a quarter of the lifetime plus up to 10% jitter.
    leeway = LIFETIME * 0.25 * 1.1
    interval = LIFETIME - leeway  # the shortest time between two refreshes, as clients see it
    # One more than fit in the run: the last may start just after it, as calls in
    # flight at its end still refresh, and a loaded machine delays one send more
    # than the next.
    bound = run_time / interval + 2
    # Single-flight across processes, strictly: the sandbox rotates refresh tokens, so
    # two refreshes of one token would show as a reuse and an invalid_grant.
    assert stats.token_errors == {}, stats.token_errors  # no invalid_grant, nothing refused
    assert stats.refresh_reuse_detected == 0
    assert all(report["failures"] == {} for report in reports), reports
    calls = sum(int(report["ok"]) for report in reports)  # type: ignore[call-overload]
    moments = sorted(moment for report in reports for moment in report["refreshed_at"])  # type: ignore[attr-defined]
    # Shown with `pytest -s`: the figures behind the assertions.
    print(  # noqa: T201
        f"storm: {calls} API calls in {run_time:.1f} s by {PROCESSES} processes x {COROUTINES} "
        f"coroutines; {refreshes} refreshes (bound {bound:.1f}) at {moments}; "
        f"statuses {stats.responses_by_status}; token errors {stats.token_errors}"
    )
    # Every worker called all along (on a loaded machine a call can take seconds,
    # so no rate is asserted), and tokens were refreshed throughout the run.
    assert all(int(report["ok"]) > 0 for report in reports)  # type: ignore[call-overload]
    assert calls >= PROCESSES * COROUTINES
    assert refreshes >= run_time / (2 * LIFETIME)  # tokens were refreshed all along...
    assert refreshes <= bound, f"{refreshes} refreshes, at most {bound:.1f} allowed"  # ...once each
    assert sum(int(report["refreshes"]) for report in reports) == refreshes  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_refresh_storm_across_processes_with_the_file_store(
    sandbox_process: SandboxProcess, tmp_path: Path
) -> None:
    sandbox_process.reset_stats()
    directory = tmp_path / "tokens"
    token = Token.from_response(sandbox_process.issue_token("default", lifetime=LIFETIME))
    anyio.run(FileTokenStore(directory).save, "acct", token)
    reports, run_time = run_storm(sandbox_process, f"file:{directory}", "unused")
    check_storm(sandbox_process, reports, run_time)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_refresh_storm_across_processes_with_the_redis_store(
    sandbox_process: SandboxProcess, redis_url: str
) -> None:
    sandbox_process.reset_stats()
    prefix = f"storm-{uuid.uuid4().hex}"
    token = Token.from_response(sandbox_process.issue_token("default", lifetime=LIFETIME))

    async def seed() -> None:
        store = RedisTokenStore(redis_url, prefix=prefix)
        await store.save("acct", token)
        await store.aclose()

    async def clean() -> None:
        store = RedisTokenStore(redis_url, prefix=prefix)
        await store.delete("acct")
        await store.aclose()

    anyio.run(seed)
    try:
        reports, run_time = run_storm(sandbox_process, redis_url, prefix)
    finally:
        anyio.run(clean)
    check_storm(sandbox_process, reports, run_time)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_writer_killed_at_random_points_never_leaves_a_corrupt_file_or_a_held_lock(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.crash_writer"])
    directory = str(tmp_path)
    store = FileTokenStore(directory)
    seen_generations = set()
    torn_writes = 0
    rng = random.Random(2026)
    for generation in range(200):
        writing = context.Event()
        child = context.Process(
            target=crash_writer.write_forever, args=(directory, generation, writing)
        )
        child.start()
        assert writing.wait(10), "the writer did not start writing"
        time.sleep(rng.uniform(0.0, 0.02))  # a random point of the write loop
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(5)
        torn_writes += any(Path(directory).glob(".*.tmp-*"))
        try:
            token = anyio.run(store.load, "acct")
        except CorruptTokenData:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"corrupt token file after kill {generation}")
        if token is not None:
            seen_generations.add(token.access_token.split("-")[0])

        async def lock_is_free(token: Token | None) -> None:
            async with store.lock("acct", timeout=1.0):
                pass
            # The write lock too: compare-and-set takes it.
            assert await store.compare_and_set("acct", token, token) if token else True

        anyio.run(lock_is_free, token)
    # Most children got to write; some were killed inside a write.
    print(  # noqa: T201 - the figures, with `pytest -s`
        f"crash: 200 writers killed; {len(seen_generations)} had written a token; "
        f"{torn_writes} killed with a write half done; every file loaded, every lock free"
    )
    assert len(seen_generations) > 100
    assert torn_writes > 0


@pytest.mark.timeout(60)
def test_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import anyio, sys\n"
            "from token_stores import FileTokenStore\n"
            "async def hold():\n"
            f"    async with FileTokenStore({str(tmp_path)!r}).lock('acct'):\n"
            "        print('held', flush=True)\n"
            "        await anyio.sleep(60)\n"
            "anyio.run(hold)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        store = FileTokenStore(tmp_path)

        async def try_lock(timeout: float) -> None:
            async with store.lock("acct", timeout=timeout):
                pass

        from token_stores import LockTimeout

        with pytest.raises(LockTimeout):
            anyio.run(try_lock, 0.2)
        holder.kill()
        holder.wait(5)
        anyio.run(try_lock, 1.0)
    finally:
        holder.kill()
        holder.wait(5)
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.asyncio_only
@pytest.mark.timeout(60)
async def test_redis_restart_fails_calls_with_a_store_error_then_recovers_without_losing_tokens(
    tmp_path: Path, redis_url: str
) -> None:
    if shutil.which("redis-server") is None:  # pragma: no cover - python-svc machines have it
        pytest.skip("redis-server is not installed")
    from wiser_async.sandbox import Sandbox

    port = free_port()
    server = start_redis(port, tmp_path)
    sandbox = Sandbox()
    store: TokenStore = RedisTokenStore(f"redis://127.0.0.1:{port}/0", prefix="restart")
    try:
        with sandbox.serve_in_thread() as urls:
            await store.save("acct", Token.from_response(sandbox.issue_token(lifetime=1.0)))
            async with (
                make_oauth(urls, store) as oauth,
                make_client(
                    oauth, urls, retry=RetryPolicy(attempts=2, wait_initial=0.01)
                ) as client,
            ):
                assert await client.locations.list()
                server.kill()  # SIGKILL: no goodbye
                server.wait(5)
                await anyio.sleep(1.0)  # the cached token needs a refresh now
                for _ in range(3):
                    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
                        await client.locations.list()
                server = start_redis(port, tmp_path)
                assert await client.locations.list()
                stored = await store.load("acct")
                assert stored is not None
                assert stored.fingerprint == (await oauth.token("acct")).fingerprint
                await anyio.sleep(1.0)
                assert await client.locations.list()  # and refreshes go on
            assert sandbox.stats.token_errors == {}
    finally:
        await store.aclose()
        server.kill()
        server.wait(5)
