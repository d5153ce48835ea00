"""Queue workers through a Redis restart: waited out within --redis-patience, one line beyond.

Real worker processes on a redis-server of the test's own (AOF, fsync
always: the queue survives a SIGKILL), killed while the workers crawl and
started again on the same port. Whether the workers wait the outage out or
stop and are started again, the merged output is the one a single process
crawls. Redis-py is asyncio-only: everything here that touches Redis runs
in worker processes or through the command line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from click.testing import CliRunner, Result

from tests.cli_support import assert_one_line_error
from tests.support import (
    CLIENT_ID,
    CLIENT_SECRET,
    free_port,
    issue,
    make_client,
    make_oauth,
    start_redis,
)
from token_stores import FileTokenStore, MemoryTokenStore, Token
from wiser_async import WorkerRun, crawl_to_jsonl, enqueue, run_worker
from wiser_async._distributed import QueueKeys
from wiser_async.cli import main
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox, SandboxProcess, SandboxUrls

ROOT = Path(__file__).parent.parent
SPEC = PortfolioSpec(
    seed=5, locations=2, sites_per_location=3, rooms_per_site=2, devices_per_site=8
)
ACCOUNTS = [f"acct-{number:02d}" for number in range(12)]
WORKERS = ("w1", "w2", "w3", "w4")
PAGE_SIZE = "5"
OUTAGE = 2.0
"""Seconds Redis is away in the restart the workers wait out."""
REQUEST_ID = re.compile(r" \(request id [^)]*\)")
CLEAN = {name: None for name in os.environ if name.startswith("WISER_")}


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(
        main, list(args), env={**CLEAN, **(env or {})}, catch_exceptions=False
    )


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for `condition` (checked every 20 ms) or fail after `timeout` seconds."""
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def canonical(path: Path) -> Counter[str]:
    """Each record of a JSONL file in one spelling (keys sorted, request ids aside), counted."""
    with path.open() as file:
        return Counter(
            REQUEST_ID.sub("", json.dumps(json.loads(line), sort_keys=True)) for line in file
        )


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    # Slow enough that the workers are still at it when Redis goes.
    with SandboxProcess(
        seed=SPEC.seed,
        locations=SPEC.locations,
        sites_per_location=SPEC.sites_per_location,
        rooms_per_site=SPEC.rooms_per_site,
        devices_per_site=SPEC.devices_per_site,
        latency=0.03,
    ) as process:
        yield process


@pytest.fixture(scope="module")
def reference(sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process crawls every account: what the workers' merge must equal."""
    tokens = tmp_path_factory.mktemp("reference") / "tokens"
    output = tokens.parent / "reference.jsonl"
    urls = sandbox_process.urls

    async def crawl() -> None:
        store = FileTokenStore(tokens)
        for account in ACCOUNTS:
            await store.save(account, Token.from_response(sandbox_process.issue_token(account)))
        async with (
            make_oauth(urls, store) as oauth,
            make_client(oauth, urls, ACCOUNTS[0], transport=None) as client,
        ):
            crawled = await crawl_to_jsonl(
                client, output, accounts=ACCOUNTS, page_size=int(PAGE_SIZE)
            )
        assert crawled.complete

    anyio.run(crawl)
    return output


class Queue:
    """A redis-server of the test's own, a queue on it and worker processes."""

    def __init__(self, sandbox: SandboxProcess, directory: Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data = directory / "redis"
        self.data.mkdir()
        self.server = start_redis(self.port, self.data)
        self.name = f"resilience-{uuid.uuid4().hex[:8]}"
        self.tokens = directory / "tokens"
        self.out = directory / "out"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        store = FileTokenStore(self.tokens)
        for account in ACCOUNTS:
            token = Token.from_response(sandbox.issue_token(account))
            anyio.run(store.save, account, token)
        added = run("queue", "enqueue", *self.common, "--store", f"file:{self.tokens}")
        assert added.exit_code == 0, added.output

    @property
    def common(self) -> list[str]:
        return ["--redis", self.url, "--queue", self.name]

    def stop_redis(self) -> None:
        self.server.kill()
        self.server.wait(30)

    def start_redis(self) -> None:
        self.server = start_redis(self.port, self.data)

    def start_workers(self, *options: str, names: tuple[str, ...] = WORKERS) -> None:
        urls = self.sandbox.urls
        env = {**os.environ, "WISER_CLIENT_SECRET": CLIENT_SECRET}
        self.workers = {}
        for name in names:
            command = [
                sys.executable, "-m", "wiser_async", "queue", "worker", *self.common,
                "-d", str(self.out), "--worker", name, "--claim-idle", "2",
                "--parallel", "4", "--store", f"file:{self.tokens}",
                "--client-id", CLIENT_ID, "--base-url", urls.api_base_url,
                "--token-url", urls.token_url, "--concurrency", "2",
                "--page-size", PAGE_SIZE, *options,
            ]  # fmt: skip
            with self.log(name).open("wb") as log, self.errors(name).open("wb") as errors:
                self.workers[name] = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=errors
                )

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def errors(self, name: str) -> Path:
        return self.directory / f"{name}.stderr"

    def done(self) -> int:
        """Accounts the workers have recorded done."""
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            return int(client.hlen(QueueKeys(self.name).done))
        finally:
            client.close()

    def wait_workers(self, timeout: float) -> dict[str, tuple[int, str]]:
        """Each worker's exit code and stderr, once all have exited."""
        poll(lambda: all(p.poll() is not None for p in self.workers.values()), timeout, "workers")
        return {
            name: (process.wait(), self.errors(name).read_text())
            for name, process in self.workers.items()
        }

    def merge(self) -> tuple[Result, Path]:
        merged = self.directory / "merged.jsonl"
        result = run("queue", "merge", *self.common, "-d", str(self.out), "-o", str(merged))
        return result, merged

    def close(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.server.kill()
        self.server.wait(30)


@pytest.fixture
def queue(sandbox_process: SandboxProcess, tmp_path: Path) -> Iterator[Queue]:
    started = Queue(sandbox_process, tmp_path)
    try:
        yield started
    finally:
        started.close()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_wait_out_a_redis_restart_and_merge_to_a_single_process_crawl(
    queue: Queue, reference: Path
) -> None:
    queue.start_workers()
    poll(lambda: queue.done() >= 2, 120, "the workers to finish two accounts")
    queue.stop_redis()
    stopped = time.monotonic()
    time.sleep(OUTAGE)  # the outage itself, not a wait for a condition
    queue.start_redis()
    outage = time.monotonic() - stopped
    results = queue.wait_workers(120)
    for name, (code, stderr) in results.items():
        assert code == 0, (name, stderr, queue.log(name).read_text())
        assert error_lines(stderr) == [], stderr
        # Each worker met the outage (the queue was not drained) and waited it out.
        assert "the queue's Redis is unavailable" in stderr, stderr
        assert "the queue's Redis answers again" in stderr, stderr
    merged, path = queue.merge()
    assert merged.exit_code == 0, merged.output
    assert "Complete: nothing is missing." in merged.output
    assert canonical(path) == canonical(reference)
    assert max(canonical(path).values()) == 1
    assert outage >= OUTAGE


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_outage_longer_than_the_patience_is_one_line_and_the_workers_resume_after(
    queue: Queue, reference: Path
) -> None:
    patience = 0.5
    queue.start_workers("--redis-patience", str(patience))
    poll(lambda: queue.done() >= 2, 120, "the workers to finish two accounts")
    queue.stop_redis()
    # Redis stays away until every worker has given up: longer than any patience.
    results = queue.wait_workers(120)
    for name, (code, stderr) in results.items():
        assert code == 2, (name, stderr)
        assert "Traceback" not in stderr, stderr
        [line] = error_lines(stderr)
        assert line.startswith(f"error: --redis {queue.url}: the queue's Redis did not answer")
        assert "connection refused" in line
        assert "--redis-patience" in line
    queue.start_redis()
    queue.start_workers("--redis-patience", str(patience))
    for name, (code, stderr) in queue.wait_workers(120).items():
        assert code == 0, (name, stderr, queue.log(name).read_text())
    merged, path = queue.merge()
    assert merged.exit_code == 0, merged.output
    assert canonical(path) == canonical(reference)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_shared_rate_waits_out_the_outage_with_the_worker(queue: Queue, reference: Path) -> None:
    # Longer than RedisRateLimiter's own patience (5 s): the requests waiting for
    # their turn in the shared schedule wait as long as the worker does.
    outage = 6.0
    queue.start_workers("--shared-rate", "1000", "--redis-patience", "30", names=("solo",))
    poll(lambda: queue.done() >= 1, 120, "the worker to finish an account")
    queue.stop_redis()
    time.sleep(outage)  # the outage itself, not a wait for a condition
    queue.start_redis()
    [(code, stderr)] = queue.wait_workers(120).values()
    assert code == 0, stderr
    merged, path = queue.merge()
    assert merged.exit_code == 0, merged.output
    assert canonical(path) == canonical(reference)


def test_redis_patience_is_a_setting_shown_by_config_show(tmp_path: Path) -> None:
    config = tmp_path / "wiser.toml"
    config.write_text("redis_patience = 7\n")
    shown = run("config", "show", "--config", str(config))
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"^redis_patience +7\.0 +file {re.escape(str(config))}$", shown.stdout, re.M)
    flag = run("config", "show", "--redis-patience", "12", env={"WISER_REDIS_PATIENCE": "3"})
    assert re.search(r"^redis_patience +12\.0 +flag --redis-patience$", flag.stdout, re.M)
    default = run("config", "show")
    assert re.search(r"^redis_patience +30\.0 +default$", default.stdout, re.M)
    assert_one_line_error(
        run("config", "show", env={"WISER_REDIS_PATIENCE": "-1"}),
        "--redis-patience must be zero or more seconds",
        "WISER_REDIS_PATIENCE",
    )


@pytest.mark.asyncio_only
@pytest.mark.timeout(90)
async def test_back_from_an_outage_a_worker_leaves_a_live_workers_account_to_it(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    from redis.asyncio import Redis

    claim_idle = 1.0
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = await anyio.to_thread.run_sync(start_redis, port, data)
    # One account, read slowly: its crawl outlasts the outage by far.
    sandbox.faults = Faults(latency=0.1)
    store = MemoryTokenStore()
    await issue(sandbox, store, "acme")
    runs: dict[str, WorkerRun] = {}
    try:
        async with (
            Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5) as client,
            make_oauth(urls, store) as oauth,
            make_client(oauth, urls, "acme", max_in_flight=1) as wiser,
        ):
            await enqueue(client, queue="q", accounts=["acme"])

            async def work(name: str) -> None:
                runs[name] = await run_worker(
                    wiser, client, queue="q", output_dir=tmp_path / "out", worker=name,
                    claim_idle=claim_idle, poll=0.1, parallel=2,
                )  # fmt: skip

            async with anyio.create_task_group() as group:
                group.start_soon(work, "holder")
                with anyio.fail_after(30):
                    while not (await client.xpending(QueueKeys("q").stream, "crawlers"))["pending"]:  # noqa: ASYNC110 - set by a Redis command
                        await anyio.sleep(0.02)
                group.start_soon(work, "idle")
                server.kill()
                await anyio.to_thread.run_sync(server.wait)
                # Longer than a claim lasts: every claim looks stale once Redis is back.
                await anyio.sleep(claim_idle * 1.5)
                server = await anyio.to_thread.run_sync(start_redis, port, data)
    finally:
        server.kill()
        await anyio.to_thread.run_sync(server.wait)
    assert set(runs["holder"].finished) == {"acme"}
    assert runs["holder"].lost == []
    # The idle worker let the holder renew its claim instead of taking the account over.
    assert runs["idle"].redone == []
    assert runs["idle"].finished == {}


class LosesOneAnswer:
    """A Redis client whose first finishing transaction is carried out and its answer lost."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def pipeline(self, **options: Any) -> _Pipeline:
        return _Pipeline(self, self.inner.pipeline(**options))


class _Pipeline:
    def __init__(self, owner: LosesOneAnswer, inner: Any) -> None:
        self.owner = owner
        self.inner = inner
        self.finishing = False

    async def __aenter__(self) -> _Pipeline:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        self.finishing = self.finishing or name == "hsetnx"
        return getattr(self.inner, name)

    async def execute(self) -> Any:
        import redis.exceptions

        answers = await self.inner.execute()
        if self.finishing and not self.owner.lost:
            self.owner.lost += 1
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return answers


@pytest.mark.asyncio_only
async def test_a_finish_whose_answer_was_lost_is_still_this_workers_own(
    redis_url: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    from redis.asyncio import Redis

    name = f"test-resilience-{uuid.uuid4().hex[:12]}"
    store = MemoryTokenStore()
    await issue(sandbox, store, "acme")
    seen: list[tuple[str, bool]] = []
    async with (
        Redis.from_url(redis_url) as client,
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, "acme") as wiser,
    ):
        try:
            await enqueue(client, queue=name, accounts=["acme"])
            flaky = LosesOneAnswer(client)
            done = await run_worker(
                wiser, flaky, queue=name, output_dir=tmp_path, worker="w", poll=0.1,
                on_account=lambda account, crawled: seen.append((account, crawled is not None)),
            )  # fmt: skip
        finally:
            await client.delete(*QueueKeys(name).all)
    assert flaky.lost == 1  # the transaction was tried again after its answer was lost
    assert set(done.finished) == {"acme"}
    assert done.skipped == []
    assert seen == [("acme", True)]
