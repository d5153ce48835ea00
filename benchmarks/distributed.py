"""`distributed`: a crawl queue shared by worker processes, one killed, one late, then merged.

200 accounts, each its own small portfolio, on the sandbox in its own
process (latency on, a token-bucket rate limit for all customers together,
a forbidden site in a few accounts so that failures are recorded). Their
tokens are in one `RedisTokenStore` on a redis-server of the run's own, the
accounts in one queue. Three ``wiser-async queue worker --shared-rate R
--shared-burst B`` processes start at once (B: half the server's bucket);
the first is stopped with SIGKILL once it has finished some accounts and
while it holds one (its output directory polled, the process held with
SIGSTOP while what it holds is read); a fourth starts
at a quarter of the expected time. Once every worker has exited the queue is
merged, and one process crawls the same accounts with `crawl_to_jsonl` at
the same rate (untimed) for reference.

Targets: the makespan (first worker started to last worker exited) within
1.1 x the requests the server saw / R; the merged output equal to the
reference as a multiset of records (a failure's request id aside), no record
twice, every failure once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio

from token_stores import RedisTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth, crawl_to_jsonl, enqueue, merge
from wiser_async._distributed import QueueKeys
from wiser_async.sandbox import Portfolio, PortfolioSpec, SandboxProcess

from ._client import CLIENT_ID, CLIENT_SECRET, MAX_IN_FLIGHT
from ._core import BenchmarkError, Context, Result, register, result, summarize, target
from ._sandbox import crawl_requests
from .tokens import redis_server

__all__ = ["distributed"]

RATE = 100.0
"""Requests per second: the server's limit, and the workers' shared rate."""
BURST = 20.0
"""The server's bucket: a little room for the jitter of four processes."""
SHARED_BURST = 10
"""The workers' burst (``--shared-burst``): half the server's bucket, the rest left for jitter."""
LATENCY = 0.05
ACCOUNTS = 200
# Each account, small: 1 location, 2 sites, 1 room, 4 devices: 6 requests at the largest
# page; typical: 2 locations, 8 sites, 16 rooms, 160 devices: 19 requests.
PORTFOLIO = PortfolioSpec(
    seed=17, locations=1, sites_per_location=2, rooms_per_site=1, devices_per_site=4
)
TYPICAL = PortfolioSpec(
    seed=17, locations=2, sites_per_location=4, rooms_per_site=2, devices_per_site=20
)
SHAPES = {"small": PORTFOLIO, "typical": TYPICAL}
FORBIDDEN_EVERY = 50
"""Every 50th account's first site answers 403: failures the merge must report once each."""
CLAIM_IDLE = 2.0
KILL_AFTER = 5
"""Accounts the first worker finishes before it is killed."""
LATE_AT = 0.25
"""The fourth worker starts at this share of the expected time (requests / rate)."""
# The quick run: a few seconds, figures meaningless.
# Twice what three workers take at once (8 each): the first still holds accounts
# after finishing some, however fast the crawl.
QUICK_ACCOUNTS, QUICK_CLAIM_IDLE, QUICK_KILL_AFTER, QUICK_LATENCY = 48, 1.0, 1, 0.02
_ROOT = Path(__file__).parent.parent
_REQUEST_ID = re.compile(r" \(request id [^)]*\)")


def _accounts(count: int) -> list[str]:
    return [f"bench-{number:03d}" for number in range(count)]


def _forbidden_sites(spec: PortfolioSpec, accounts: list[str]) -> set[str]:
    """The first site of every `FORBIDDEN_EVERY`-th account."""
    sites = set()
    for account in accounts[::FORBIDDEN_EVERY]:
        portfolio = Portfolio(spec, account)
        location = next(portfolio.locations())["id"]
        sites.add(str(next(portfolio.sites(location))["id"]))
    return sites


def _canonical(path: Path) -> Counter[str]:
    """Each record of a JSONL file in one spelling (key order and request ids aside), counted."""
    with path.open() as file:
        return Counter(
            _REQUEST_ID.sub("", json.dumps(json.loads(line), sort_keys=True)) for line in file
        )


def _is_failure(record: str) -> bool:
    return bool(json.loads(record)["type"] == "failure")


async def _seed(process: SandboxProcess, redis_url: str, prefix: str, accounts: list[str]) -> None:
    store = RedisTokenStore(redis_url, prefix=prefix)
    try:
        for account in accounts:
            await store.save(account, Token.from_response(process.issue_token(account)))
    finally:
        await store.aclose()


async def _enqueue(redis_url: str, queue: str, accounts: list[str]) -> int:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as redis:
        return await enqueue(redis, queue=queue, accounts=accounts)


async def _merge(redis_url: str, queue: str, out: Path, merged: Path) -> dict[str, Any]:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as redis:
        crawl = await merge(redis, queue=queue, output_dirs=out, out_path=merged)
        pending = (await redis.xpending(QueueKeys(queue).stream, "crawlers"))["pending"]
    return {
        "complete": crawl.complete,
        "finished": crawl.finished,
        "unfinished": len(crawl.unfinished),
        "failures": len(crawl.failures),
        "finishers": crawl.finishers,
        "pending_after": int(pending),
    }


async def _reference(
    process: SandboxProcess, redis_url: str, prefix: str, accounts: list[str], path: Path
) -> int:
    """One process crawls every account at the same rate; the failures it recorded."""
    store = RedisTokenStore(redis_url, prefix=prefix)
    try:
        async with (
            WiserOAuth(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                store=store,
                token_url=process.urls.token_url,
            ) as oauth,
            AsyncWiserClient(
                oauth,
                accounts[0],
                config=ApiConfig(base_url=process.urls.api_base_url),
                max_in_flight=MAX_IN_FLIGHT,
                rate_limit=RATE,
            ) as client,
        ):
            crawled = await crawl_to_jsonl(client, path, accounts=accounts)
    finally:
        await store.aclose()
    if not crawled.finished:
        raise BenchmarkError("the reference crawl did not finish")
    return len(crawled.failures)


class _Queue:
    """Reads of the run's queue, with a synchronous client (the benchmark's thread polls)."""

    def __init__(self, redis_url: str, queue: str) -> None:
        import redis

        self.redis: Any = redis.Redis.from_url(redis_url, decode_responses=True)
        self.keys = QueueKeys(queue)

    def held_by(self, worker: str) -> list[str]:
        pending = self.redis.xpending_range(
            self.keys.stream, "crawlers", "-", "+", 100, consumername=worker
        )
        return [
            self.redis.xrange(self.keys.stream, p["message_id"], p["message_id"])[0][1]["account"]
            for p in pending
        ]

    def done(self) -> dict[str, dict[str, Any]]:
        return {
            account: json.loads(raw) for account, raw in self.redis.hgetall(self.keys.done).items()
        }

    def close(self) -> None:
        self.redis.close()


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            raise BenchmarkError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _run(
    ctx: Context, spec: PortfolioSpec, process: SandboxProcess, redis_url: str, work: Path
) -> dict[str, Any]:
    """One distributed crawl and its reference: the figures."""
    accounts = _accounts(QUICK_ACCOUNTS if ctx.quick else ACCOUNTS)
    claim_idle = QUICK_CLAIM_IDLE if ctx.quick else CLAIM_IDLE
    kill_after = QUICK_KILL_AFTER if ctx.quick else KILL_AFTER
    forbidden = _forbidden_sites(spec, accounts)
    process.set_faults(rate_limit_burst=BURST, forbidden=forbidden)
    prefix, queue = f"bench-{uuid.uuid4().hex}", f"bench-{uuid.uuid4().hex[:12]}"
    anyio.run(_seed, process, redis_url, prefix, accounts)
    if anyio.run(_enqueue, redis_url, queue, accounts) != len(accounts):
        raise BenchmarkError("not every account was enqueued")
    expected = crawl_requests(spec) * len(accounts)
    late_at = LATE_AT * expected / RATE
    out = work / "out"
    env = {**os.environ, "WISER_CLIENT_SECRET": CLIENT_SECRET}
    command = [
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
        str(out),
        "--claim-idle",
        str(claim_idle),
        "--shared-rate",
        str(RATE),
        "--shared-burst",
        str(SHARED_BURST),
        "--store",
        f"{redis_url}?prefix={prefix}",
        "--client-id",
        CLIENT_ID,
        "--base-url",
        process.urls.api_base_url,
        "--token-url",
        process.urls.token_url,
    ]
    workers: dict[str, subprocess.Popen[bytes]] = {}
    started: dict[str, float] = {}
    exited: dict[str, float] = {}
    logs: dict[str, IO[bytes]] = {}

    def start(name: str) -> None:
        logs[name] = (work / f"{name}.log").open("wb")
        started[name] = time.monotonic()
        workers[name] = subprocess.Popen(
            [*command, "--worker", name], cwd=_ROOT, env=env, stdout=logs[name], stderr=logs[name]
        )

    timeline: list[tuple[float, int]] = []  # (seconds since w1 started, requests the server saw)

    def sample() -> None:
        now = time.monotonic()
        if started and (not timeline or now - started["w1"] - timeline[-1][0] >= 0.2):
            timeline.append((now - started["w1"], process.stats().requests))

    def reap() -> bool:
        """Note the exit time of every worker that exited; True when all have."""
        sample()
        for name, worker in workers.items():
            if name not in exited and worker.poll() is not None:
                exited[name] = time.monotonic()
        return len(exited) == len(workers)

    def files_of(name: str) -> int:
        return len(list((out / name).glob("*.jsonl"))) if (out / name).is_dir() else 0

    check = _Queue(redis_url, queue)
    held: list[str] = []
    finished_before_kill = 0
    process.reset_stats()
    try:
        for name in ("w1", "w2", "w3"):
            start(name)
        first = workers["w1"]

        def stopped_holding_an_account() -> bool:
            # Held still while what it holds is read: nothing changes before the kill.
            reap()
            if "w1" in exited:
                raise BenchmarkError("the first worker exited before it could be killed")
            if files_of("w1") <= kill_after:  # its finished accounts, and the one it crawls
                return False
            first.send_signal(signal.SIGSTOP)
            if check.held_by("w1"):
                return True
            first.send_signal(signal.SIGCONT)
            return False

        _poll(stopped_holding_an_account, 120, "the first worker to finish accounts")
        held = check.held_by("w1")
        finished_before_kill = sum(1 for r in check.done().values() if r["worker"] == "w1")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed_at = time.monotonic() - started["w1"]
        reap()
        while time.monotonic() - started["w1"] < late_at:
            if reap():
                raise BenchmarkError("every worker exited before the late one started")
            time.sleep(0.02)
        start("w4")
        _poll(reap, 600, "the workers to exit")
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs.values():
            log.close()
    try:
        done = check.done()
    finally:
        check.close()
    output = {name: (work / f"{name}.log").read_text() for name in workers}
    for name in ("w2", "w3", "w4"):
        if workers[name].returncode != 0:
            raise BenchmarkError(
                f"worker {name} exited with {workers[name].returncode}: {output[name][-1000:]}"
            )
    if workers["w1"].returncode != -signal.SIGKILL:
        raise BenchmarkError(f"the killed worker exited with {workers['w1'].returncode}")
    makespan = max(exited.values()) - min(started.values())
    stats = process.stats()

    merged_path = work / "merged.jsonl"
    merged = anyio.run(_merge, redis_url, queue, out, merged_path)
    if merged["unfinished"] or merged["pending_after"]:
        raise BenchmarkError(
            f"{merged['unfinished']} account(s) unfinished, {merged['pending_after']} pending"
        )
    reference_path = work / "reference.jsonl"
    reference_started = time.monotonic()
    reference_failures = anyio.run(_reference, process, redis_url, prefix, accounts, reference_path)
    reference_s = time.monotonic() - reference_started
    reference, mine = _canonical(reference_path), _canonical(merged_path)
    if max(reference.values()) != 1:
        raise BenchmarkError("the reference crawl holds a record twice")
    wanted_failures = {record for record in reference if _is_failure(record)}
    if not wanted_failures or len(wanted_failures) != reference_failures:
        raise BenchmarkError(
            f"the reference crawl recorded {reference_failures} failures, "
            f"its file {len(wanted_failures)}"
        )
    differing = sum(((reference - mine) + (mine - reference)).values())
    duplicates = sum(count - 1 for count in mine.values() if count > 1)
    failures_seen = Counter({r: n for r, n in mine.items() if _is_failure(r)})
    failures_not_once = sum(1 for r in wanted_failures if failures_seen[r] != 1) + sum(
        n for r, n in failures_seen.items() if r not in wanted_failures
    )
    redone = {account: done[account]["worker"] for account in held if account in done}
    served = sum(stats.responses_by_status.values())
    # Each worker crawls one account at a time: its share of its life spent crawling.
    crawl_s = [float(r["stats"]["duration"]) for r in done.values()]
    lives = {name: exited[name] - started[name] for name in workers}
    busy = {
        name: sum(float(r["stats"]["duration"]) for r in done.values() if r["worker"] == name)
        / lives[name]
        for name in workers
    }
    return {
        "accounts": len(accounts),
        "rate_limit_per_s": RATE,
        "server_burst": BURST,
        "shared_burst": SHARED_BURST,
        "latency_s": QUICK_LATENCY if ctx.quick else LATENCY,
        "claim_idle_s": claim_idle,
        "makespan_s": makespan,
        "requests": stats.requests,
        "requests_answered": served,
        "requests_expected_without_the_kill": expected,
        "requests_wasted_by_the_kill": stats.requests - stats.throttled - expected,
        "bound_s": stats.requests / RATE,
        "makespan_over_bound": makespan / (stats.requests / RATE),
        "throttled_429": stats.throttled,
        "rate_achieved_per_s": stats.requests / makespan,
        "account_crawl_s": {
            "mean": statistics.fmean(crawl_s),
            **{k: v for k, v in summarize(crawl_s).items() if k != "runs"},
        },
        "worker_crawling_share": busy,
        "reference_wall_s": reference_s,
        "killed_at_s": killed_at,
        # Where the makespan goes: before the first request, between the first and
        # the last (sampled every 0.2 s from the server's counter), and after.
        "first_request_s": next((t for t, n in timeline if n > 0), None),
        "last_request_s": next((t for t, n in timeline if n >= stats.requests), None),
        "requests_timeline": [[round(t, 2), n] for t, n in timeline],
        "killed_worker_finished": finished_before_kill,
        "killed_worker_held": held,
        "killed_accounts_redone_by_others": redone,
        "killed_accounts_redone": sum(1 for worker in redone.values() if worker != "w1"),
        "late_worker_started_at_s": started["w4"] - started["w1"],
        "late_worker_finished": sum(1 for r in done.values() if r["worker"] == "w4"),
        "finished_by_worker": dict(Counter(r["worker"] for r in done.values())),
        "exited_at_s": {name: exited[name] - started["w1"] for name in sorted(exited)},
        "records_reference": sum(reference.values()),
        "records_merged": sum(mine.values()),
        "records_differing": differing,
        "equal_as_multiset": differing == 0,
        "duplicates": duplicates,
        "failures_reference": len(wanted_failures),
        "failures_merged": sum(failures_seen.values()),
        "failures_merge_reported": merged["failures"],
        "failures_each_once": failures_not_once == 0 and merged["failures"] == len(wanted_failures),
        "failures_not_once": failures_not_once,
    }


@register(
    "distributed",
    repeat=1,
    description=f"{ACCOUNTS} accounts on a queue, 4 worker processes at a shared {RATE:g}/s "
    "(one SIGKILLed mid-run, one late), merged: makespan vs requests / rate, and the merged "
    "output vs a single-process crawl",
)
def distributed(ctx: Context) -> Result:
    """A killed and a late worker cost no item and little time."""
    latency = QUICK_LATENCY if ctx.quick else LATENCY
    shapes = {"small": PORTFOLIO} if ctx.quick else SHAPES
    runs = []
    with redis_server() as redis_url:
        for (shape, spec), repetition in itertools.product(shapes.items(), range(ctx.repeat)):
            process = ctx.sandbox(spec, latency=latency, rate_limit=RATE)
            with tempfile.TemporaryDirectory() as directory:
                run = {
                    "accounts_shape": shape,
                    **_run(ctx, spec, process, redis_url, Path(directory)),
                }
            runs.append(run)
            ctx.log(
                f"  {shape} accounts, {repetition + 1}/{ctx.repeat}: "
                f"makespan {run['makespan_s']:.2f} s for "
                f"{run['requests']} requests ({run['makespan_over_bound']:.3f} x requests / rate),"
                f" {run['throttled_429']} 429; merged equals reference: "
                f"{run['equal_as_multiset']}, {run['duplicates']} duplicates"
            )
    records = max(1, min(int(run["records_reference"]) for run in runs))
    failures = max(1, min(int(run["failures_reference"]) for run in runs))
    targets = []
    for shape in shapes:
        worst = max(
            (run for run in runs if run["accounts_shape"] == shape),
            key=lambda run: float(run["makespan_over_bound"]),
        )
        targets.append(
            target(
                f"{shape} accounts: makespan vs requests / shared rate (worst run)",
                worst["makespan_s"],
                worst["bound_s"],
                limit=1.1,
                unit="s",
            )
        )
    targets += [
        # A limit of 0: none at all (the bound shown is the reference's record count).
        target(
            "records differing from the single-process crawl",
            max(float(run["records_differing"]) for run in runs),
            records,
            limit=0.0,
            unit="records",
        ),
        target(
            "records written twice",
            max(float(run["duplicates"]) for run in runs),
            records,
            limit=0.0,
            unit="records",
        ),
        target(
            "failures not reported exactly once",
            max(float(run["failures_not_once"]) for run in runs),
            failures,
            limit=0.0,
            unit="failures",
        ),
    ]
    last = runs[-1]
    redoers = ", ".join(sorted(set(last["killed_accounts_redone_by_others"].values())))
    return result(
        "distributed",
        figures={"runs": runs},
        targets=targets,
        notes=[
            f"{last['accounts']} accounts, {last['requests']} requests ({last['throttled_429']} "
            f"answered 429) in {last['makespan_s']:.2f} s at a shared {RATE:g}/s: "
            f"{last['makespan_over_bound']:.3f} x requests / rate; the killed worker had finished "
            f"{last['killed_worker_finished']} account(s), its {len(last['killed_worker_held'])} "
            f"held one(s) were redone by {redoers}",
            f"merged vs reference: {last['records_merged']} vs {last['records_reference']} "
            f"records, equal as a multiset: {last['equal_as_multiset']}, {last['duplicates']} "
            f"duplicates, {last['failures_merged']} of {last['failures_reference']} failures, "
            f"each once: {last['failures_each_once']}",
            "the bound counts every request the server saw, those the killed worker's lost "
            "account cost and those answered 429 included",
        ],
    )
