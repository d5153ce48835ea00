"""Distributed crawls on Redis Streams: real worker processes, one killed, one late.

Every test here uses Redis, so runs on asyncio only (redis-py has no trio
support); each uses its own queue name and deletes its keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from click.testing import CliRunner, Result

from tests.support import CLIENT_ID, CLIENT_SECRET, issue, make_client, make_oauth
from token_stores import FileTokenStore, MemoryTokenStore, Token
from wiser_async import AsyncWiserClient, crawl_to_jsonl, enqueue, merge, read_snapshot, run_worker
from wiser_async._distributed import QueueKeys, queue_status
from wiser_async.cli import main
from wiser_async.sandbox import (
    Faults,
    Portfolio,
    PortfolioSpec,
    Sandbox,
    SandboxProcess,
    SandboxUrls,
)

ROOT = Path(__file__).parent.parent
SPEC = PortfolioSpec(
    seed=3, locations=2, sites_per_location=3, rooms_per_site=2, devices_per_site=8
)
ACCOUNTS = [f"acct-{number:02d}" for number in range(20)]
FORBIDDEN_ACCOUNT = "acct-07"
PAGE_SIZE = "5"
RATE = 40.0
REQUEST_ID = re.compile(r" \(request id [^)]*\)")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def canonical(path: Path) -> Counter[str]:
    """Each record of a JSONL file, in one spelling, with its count.

    Key order aside, and a failure's request id (the server numbers its answers).
    """
    with path.open() as file:
        return Counter(
            REQUEST_ID.sub("", json.dumps(json.loads(line), sort_keys=True)) for line in file
        )


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for `condition` (checked every 50 ms) or fail after `timeout` seconds."""
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def queue_name(redis_url: str) -> Iterator[str]:
    """A fresh queue; its keys (and its shared rate's) deleted afterwards."""
    name = f"test-distributed-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [*QueueKeys(name).all, *client.keys(f"{{{name}:rate}}*")]
        client.delete(*keys)
    finally:
        client.close()


async def test_enqueue_adds_each_account_once_per_queue(redis_url: str, queue_name: str) -> None:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as client:
        assert await enqueue(client, queue=queue_name, accounts=["a", "b", "a"]) == 2
        assert await enqueue(client, queue=queue_name, accounts=["b", "c"]) == 1
        assert await client.xlen(QueueKeys(queue_name).stream) == 3
        status = await queue_status(client, queue=queue_name)
        assert (status.enqueued, status.done, status.pending, status.drained) == (3, 0, 0, False)


@pytest.mark.timeout(120)
async def test_a_slow_worker_that_is_alive_keeps_its_account(
    redis_url: str, queue_name: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    from redis.asyncio import Redis

    # One account whose crawl takes several times claim_idle.
    sandbox.faults = Faults(latency=0.1)
    store = MemoryTokenStore()
    await issue(sandbox, store, "slow")
    keys = QueueKeys(queue_name)
    async with (
        Redis.from_url(redis_url) as client,
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, "slow", max_in_flight=1) as wiser,
    ):
        await enqueue(client, queue=queue_name, accounts=["slow"])
        options: dict[str, Any] = {"queue": queue_name, "output_dir": tmp_path, "poll": 0.2}
        runs = {}

        async def work(name: str) -> None:
            runs[name] = await run_worker(wiser, client, worker=name, claim_idle=1.0, **options)

        async with anyio.create_task_group() as group:
            group.start_soon(work, "first")
            with anyio.fail_after(30):
                while not (await client.xpending(keys.stream, "crawlers"))["pending"]:  # noqa: ASYNC110 - set by a Redis command
                    await anyio.sleep(0.05)
            group.start_soon(work, "second")
        raw: Any = await client.hget(keys.done, "slow")
        done = json.loads(raw)
    assert done["worker"] == "first"
    assert set(runs["first"].finished) == {"slow"}
    assert runs["first"].lost == []
    assert runs["second"].redone == []
    assert runs["first"].finished["slow"].run.duration > 2.0  # longer than claim_idle, twice
    assert not (tmp_path / "second").exists()


def test_queue_commands_explain_bad_input_in_one_line(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    common = ["--redis", redis_url, "--queue", queue_name]
    worker = ["queue", "worker", *common, "-d", str(tmp_path), "--store", f"file:{tmp_path}"]
    env = {"WISER_CLIENT_SECRET": CLIENT_SECRET}
    both = run(*worker, "--client-id", CLIENT_ID, "--rate", "5", "--shared-rate", "5", env=env)
    assert both.exit_code == 2
    assert "--shared-rate all workers: give one" in both.output
    alone = run(*worker, "--client-id", CLIENT_ID, "--shared-burst", "20", env=env)
    assert alone.exit_code == 2
    assert "--shared-burst is a burst of --shared-rate: give both" in alone.output
    nothing = run(
        *worker, "--client-id", CLIENT_ID, "--shared-rate", "5", "--shared-burst", "0", env=env
    )
    assert nothing.exit_code == 2
    assert "--shared-burst must be at least 1 (requests), not 0" in nothing.output
    empty = run(*worker, "--client-id", CLIENT_ID, env=env)
    assert empty.exit_code == 2
    assert f"queue {queue_name!r} has no accounts" in empty.output
    unreachable = run(
        "queue", "enqueue", "--redis", "redis://:pw@127.0.0.1:1/0", "-a", "x", "--queue", "q"
    )
    assert unreachable.exit_code == 2
    assert unreachable.output.startswith("error: --redis redis://***@127.0.0.1:1/0: ")
    assert "pw" not in unreachable.output
    braces = run("queue", "enqueue", *common[:2], "--queue", "a{b}", "-a", "x")
    assert braces.exit_code == 2
    assert "--queue: a queue name must be" in braces.output


def test_merge_reports_accounts_no_worker_finished(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    added = run(
        "queue", "enqueue", "--redis", redis_url, "--queue", queue_name, "-a", "x", "-a", "y"
    )
    assert added.exit_code == 0, added.output
    assert "2 account(s) added, 0 already there; 2 in all" in added.output
    again = run("queue", "enqueue", "--redis", redis_url, "--queue", queue_name, "-a", "y")
    assert "0 account(s) added, 1 already there; 2 in all" in again.output
    output = tmp_path / "merged.jsonl"
    common = ["--redis", redis_url, "--queue", queue_name, "-d", str(tmp_path)]
    merged = run("queue", "merge", *common, "-o", str(output))
    assert merged.exit_code == 1, merged.output
    assert "2 part(s) could not be read (2 unfinished):" in merged.output
    assert "Unfinished: 2 account(s) no worker finished yet" in merged.output
    assert "Complete" not in merged.output
    assert [record["kind"] for record in map(json.loads, output.read_text().splitlines())] == [
        "unfinished",
        "unfinished",
    ]


# -- many processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        seed=SPEC.seed,
        locations=SPEC.locations,
        sites_per_location=SPEC.sites_per_location,
        rooms_per_site=SPEC.rooms_per_site,
        devices_per_site=SPEC.devices_per_site,
        latency=0.03,
    ) as process:
        yield process


def forbidden_site() -> str:
    portfolio = Portfolio(SPEC, FORBIDDEN_ACCOUNT)
    location = next(portfolio.locations())["id"]
    return str(next(portfolio.sites(location))["id"])


def worker_command(
    redis_url: str, queue: str, urls: SandboxUrls, tokens: Path, output: Path, name: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wiser_async",
        "queue",
        "worker",
        "--redis",
        redis_url,
        "--queue",
        queue,
        "-d",
        str(output),
        "--worker",
        name,
        "--claim-idle",
        "2",
        "--store",
        f"file:{tokens}",
        "--client-id",
        CLIENT_ID,
        "--base-url",
        urls.api_base_url,
        "--token-url",
        urls.token_url,
        "--concurrency",
        "2",
        "--page-size",
        PAGE_SIZE,
    ]


async def reference_crawl(urls: SandboxUrls, tokens: Path, output: Path) -> bool:
    """One process crawls every account: what the workers together must match."""
    async with (
        make_oauth(urls, FileTokenStore(tokens)) as oauth,
        make_client(oauth, urls, ACCOUNTS[0]) as client,
    ):
        crawled = await crawl_to_jsonl(client, output, accounts=ACCOUNTS, page_size=int(PAGE_SIZE))
    return crawled.complete


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_one_killed_one_late_merge_to_a_single_process_crawl(
    redis_url: str,
    queue_name: str,
    sandbox_process: SandboxProcess,
    tmp_path: Path,
) -> None:
    urls = sandbox_process.urls
    tokens = tmp_path / "tokens"
    store = FileTokenStore(tokens)
    for account in ACCOUNTS:
        token = Token.from_response(sandbox_process.issue_token(account))
        anyio.run(store.save, account, token)
    sandbox_process.set_faults(forbidden={forbidden_site()})
    out = tmp_path / "out"
    env = {**os.environ, "WISER_CLIENT_SECRET": CLIENT_SECRET}
    enqueued = run(
        "queue", "enqueue", "--redis", redis_url, "--queue", queue_name, "--store", f"file:{tokens}"
    )
    assert enqueued.exit_code == 0, enqueued.output
    assert "20 account(s) added" in enqueued.output
    keys = QueueKeys(queue_name)
    check: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    workers: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        command = worker_command(redis_url, queue_name, urls, tokens, out, name)
        with (tmp_path / f"{name}.log").open("wb") as log:
            workers[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)

    def held_by(name: str) -> list[str]:
        pending = check.xpending_range(keys.stream, "crawlers", "-", "+", 100, consumername=name)
        return [
            check.xrange(keys.stream, p["message_id"], p["message_id"])[0][1]["account"]
            for p in pending
        ]

    def wrote_records(name: str) -> bool:
        return any(path.stat().st_size > 0 for path in (out / name).glob("*.jsonl"))

    started = time.monotonic()
    try:
        start("w1")
        start("w2")

        def stopped_holding_an_account() -> bool:
            # Stopped first, so what it holds cannot change before the kill.
            workers["w1"].send_signal(signal.SIGSTOP)
            if wrote_records("w1") and held_by("w1"):
                return True
            workers["w1"].send_signal(signal.SIGCONT)
            return False

        poll(stopped_holding_an_account, 120, "w1 to write records and hold an account")
        orphaned = held_by("w1")
        workers["w1"].send_signal(signal.SIGKILL)
        assert workers["w1"].wait(30) == -signal.SIGKILL
        start("w3")  # late
        poll(lambda: all(workers[n].poll() is not None for n in ("w2", "w3")), 240, "the workers")
        seconds = time.monotonic() - started
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in workers}
        assert workers["w2"].returncode == 0, logs["w2"]
        assert workers["w3"].returncode == 0, logs["w3"]
        done = {account: json.loads(raw) for account, raw in check.hgetall(keys.done).items()}
        assert check.xpending(keys.stream, "crawlers")["pending"] == 0
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        check.close()
    # The figure, with --log-cli-level=INFO: 3 workers, one killed, one late.
    logging.getLogger(__name__).info("distributed crawl wall time: %.1f s", seconds)
    assert set(done) == set(ACCOUNTS)
    # w1's accounts (up to --parallel at once) were taken over; its partial files are
    # there, and ignored.
    assert orphaned
    assert all(done[account]["worker"] in ("w2", "w3") for account in orphaned)
    assert any((out / "w1" / f"{account}.jsonl").exists() for account in orphaned)
    assert "taken over from stopped workers" in logs["w2"] + logs["w3"]

    merged_path = tmp_path / "merged.jsonl"
    common = ["--redis", redis_url, "--queue", queue_name, "-d", str(out)]
    merged = run("queue", "merge", *common, "-o", str(merged_path))
    assert merged.exit_code == 1, merged.output  # a forbidden site: parts missing
    assert "2 part(s) could not be read (2 forbidden):" in merged.output
    assert merged.output.count(f"{FORBIDDEN_ACCOUNT} /sites/{forbidden_site()}/") == 2
    assert "Finished with parts missing" in merged.output

    reference_path = tmp_path / "reference.jsonl"
    assert anyio.run(reference_crawl, urls, tokens, reference_path) is False
    reference = canonical(reference_path)
    assert max(reference.values()) == 1
    assert canonical(merged_path) == reference  # every item and failure, each once
    failures = [json.loads(line) for line in reference if json.loads(line)["type"] == "failure"]
    assert len(failures) == 2


@asynccontextmanager
async def acme_queued(
    redis_url: str, queue_name: str, sandbox: Sandbox, urls: SandboxUrls
) -> AsyncIterator[tuple[Any, AsyncWiserClient]]:
    """A Redis client and a client of the account "acme", enqueued on `queue_name`."""
    from redis.asyncio import Redis

    store = MemoryTokenStore()
    await issue(sandbox, store, "acme")
    async with (
        Redis.from_url(redis_url) as client,
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, "acme") as wiser,
    ):
        await enqueue(client, queue=queue_name, accounts=["acme"])
        yield client, wiser


async def test_a_worker_passes_the_crawl_options_on_validate_models_among_them(
    redis_url: str, queue_name: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    async with acme_queued(redis_url, queue_name, sandbox, urls) as (client, wiser):
        run_ = await run_worker(
            wiser,
            client,
            queue=queue_name,
            output_dir=tmp_path,
            worker="w",
            poll=0.1,
            validate="models",
        )
        as_received = await crawl_to_jsonl(wiser, tmp_path / "ids.jsonl", accounts=["acme"])
    assert run_.finished["acme"].items == as_received.items
    written = tmp_path / "w" / "acme.jsonl"
    devices = [r["data"] for r in read_snapshot(written) if r["type"] == "device"]
    # From the models, every device has every field; the sandbox leaves some out.
    assert all("firmwareVersion" in data for data in devices)
    received = [r["data"] for r in read_snapshot(tmp_path / "ids.jsonl") if r["type"] == "device"]
    assert not all("firmwareVersion" in data for data in received)


def test_merge_needs_every_finishers_file(
    redis_url: str, queue_name: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    async def crawl_one() -> None:
        async with acme_queued(redis_url, queue_name, sandbox, urls) as (client, wiser):
            run_ = await run_worker(
                wiser, client, queue=queue_name, output_dir=tmp_path / "a", worker="w", poll=0.1
            )
            assert set(run_.finished) == {"acme"}
            merged = await merge(
                client,
                queue=queue_name,
                output_dirs=[tmp_path / "b", tmp_path / "a"],
                out_path=tmp_path / "m.jsonl",
            )
            assert merged.complete
            assert merged.finishers == {"acme": "w"}
            assert merged.items == run_.finished["acme"].items

    anyio.run(crawl_one, backend="asyncio")
    common = ["--redis", redis_url, "--queue", queue_name, "-o", str(tmp_path / "m2.jsonl")]
    ok = run("queue", "merge", *common, "-d", str(tmp_path / "a"))
    assert ok.exit_code == 0, ok.output
    assert "Complete: nothing is missing." in ok.output
    (tmp_path / "b").mkdir()
    missing = run("queue", "merge", *common, "-d", str(tmp_path / "b"))
    assert missing.exit_code == 2
    assert (
        "w/acme.jsonl, the finisher's file, is in none of the output directories" in missing.output
    )


def test_workers_with_a_shared_rate_draw_on_one_limit(
    redis_url: str, queue_name: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = FileTokenStore(tmp_path / "tokens")
    for account in ("acme", "globex"):
        anyio.run(issue, sandbox, store, account)
    common = ["--redis", redis_url, "--queue", queue_name]
    assert run("queue", "enqueue", *common, "-a", "acme", "-a", "globex").exit_code == 0
    started = time.monotonic()
    worker = run(
        "queue",
        "worker",
        *common,
        "-d",
        str(tmp_path / "out"),
        "--worker",
        "solo",
        "--shared-rate",
        str(RATE),
        "--store",
        f"file:{tmp_path / 'tokens'}",
        "--client-id",
        CLIENT_ID,
        "--base-url",
        urls.api_base_url,
        "--token-url",
        urls.token_url,
        env={"WISER_CLIENT_SECRET": CLIENT_SECRET},
    )
    seconds = time.monotonic() - started
    assert worker.exit_code == 0, worker.output
    assert "Worker solo: finished 2 account(s)." in worker.output
    assert CLIENT_SECRET not in worker.output
    merged = run("queue", "merge", *common, "-d", str(tmp_path / "out"), "-o", str(tmp_path / "m"))
    assert merged.exit_code == 0, merged.output
    assert "holds 2 accounts" in merged.output
    # Evenly spaced at the shared rate: the requests took at least their slots.
    found = re.search(r"; (\d+) requests,", merged.output)
    assert found is not None, merged.output
    assert seconds >= (int(found.group(1)) - 1) / RATE
    missing = run(
        "queue",
        "merge",
        "--redis",
        redis_url,
        "--queue",
        "nothing-here",
        "-d",
        str(tmp_path),
        "-o",
        str(tmp_path / "n"),
    )
    assert missing.exit_code == 2
    assert "queue 'nothing-here' has no accounts: nothing to merge" in missing.output
