"""`shared_rate`: N worker processes under one `RedisRateLimiter` against a rate-limited server.

Every worker crawls the same customer's portfolio with the token of one
shared `RedisTokenStore`, for the same `DURATION` from a common start. The
server (the sandbox in its own process) allows `RATE` requests/s. With the
shared limiter at `RATE`, the workers together send at that rate and almost
never meet a 429; with each worker at the whole rate by itself (a number
for ``rate_limit=``, the contrast), they send N times what is allowed and
the server refuses the excess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from token_stores import RedisTokenStore, Token
from wiser_async.sandbox import PortfolioSpec, SandboxProcess

from ._client import ACCOUNT
from ._core import BenchmarkError, Context, Result, register, result, summarize, target
from .tokens import redis_server

__all__ = ["shared_rate"]

RATE = 100.0
DURATION = 10.0
WORKERS = (4, 8)
# Large enough that no worker runs out of portfolio within the run.
PORTFOLIO = PortfolioSpec(locations=40, sites_per_location=50, rooms_per_site=4, devices_per_site=5)
_ROOT = Path(__file__).parent.parent


def _run(
    ctx: Context, process: SandboxProcess, redis_url: str, workers: int, *, shared: bool
) -> dict[str, Any]:
    """One run of `workers` processes: what the server saw, and what they said."""
    duration = 1.0 if ctx.quick else DURATION
    prefix, key = f"bench-{uuid.uuid4().hex}", f"bench-rate-{uuid.uuid4().hex}"

    async def seed() -> None:
        store = RedisTokenStore(redis_url, prefix=prefix)
        await store.save(ACCOUNT, Token.from_response(process.issue_token("default")))
        await store.aclose()

    anyio.run(seed)
    process.reset_stats()
    # Every worker started and connected by then (a smoke run may start late: it means little).
    start_at = time.time() + (1.0 if ctx.quick else 3.0) + 0.25 * workers
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._rate_child",
                "--api",
                process.urls.api_base_url,
                "--token-url",
                process.urls.token_url,
                "--redis",
                redis_url,
                "--prefix",
                prefix,
                "--key",
                key,
                "--rate",
                str(RATE),
                "--shared" if shared else "--local",
                "--duration",
                str(duration),
                "--start-at",
                str(start_at),
            ],
            cwd=_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    reports = []
    try:
        for child in children:
            out, err = child.communicate(timeout=duration + 60)
            if child.returncode != 0:
                raise BenchmarkError(f"a worker failed: {err[-1000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            child.kill()
    late = max(0.0, time.time() - start_at - duration)
    stats = process.stats()
    served = sum(stats.responses_by_status.values())
    throttled = stats.responses_by_status.get(429, 0)
    return {
        "workers": workers,
        "shared": shared,
        "duration_s": duration,
        "requests": served,
        "throttled": throttled,
        "throttled_pct": 100.0 * throttled / served if served else 0.0,
        "rate_per_s": served / duration,
        "rate_vs_limit": served / duration / RATE,
        "client_requests": sum(int(report["requests"]) for report in reports),
        "client_retries": sum(int(report["retries"]) for report in reports),
        "ended_late_s": late,
    }


@register(
    "shared_rate",
    repeat=1,
    description=f"{WORKERS} worker processes, one token store and one RedisRateLimiter at "
    f"{RATE:g}/s, against a server allowing {RATE:g}/s: aggregate rate and 429s; "
    "each worker at the whole rate for contrast",
)
def shared_rate(ctx: Context) -> Result:
    """The shared limit holds across processes: rate near the limit, 429s near none."""
    process = ctx.sandbox(PORTFOLIO, latency=0.02, rate_limit=RATE)
    runs: list[dict[str, Any]] = []
    counts = (2,) if ctx.quick else WORKERS
    with redis_server() as redis_url:
        for workers in counts:
            for _ in range(ctx.repeat):
                run = _run(ctx, process, redis_url, workers, shared=True)
                ctx.log(
                    f"  {workers} workers, shared: {run['rate_per_s']:.1f}/s "
                    f"({run['rate_vs_limit']:.3f} x), {run['throttled']} of {run['requests']} 429"
                )
                runs.append(run)
        contrast = _run(ctx, process, redis_url, counts[0], shared=False)
        ctx.log(
            f"  {counts[0]} workers, each at the whole rate: {contrast['rate_per_s']:.1f}/s sent, "
            f"{contrast['throttled']} of {contrast['requests']} 429"
        )
    targets = []
    for workers in counts:
        mine = [run for run in runs if run["workers"] == workers]
        rates = [run["rate_vs_limit"] for run in mine]
        shares = [run["throttled_pct"] for run in mine]
        median_rate = summarize(rates)["median"]
        targets += [
            target(f"{workers} workers: rate / limit", median_rate, 1.0, limit=1.02, unit="x"),
            target(f"{workers} workers: limit / rate", 1.0, median_rate, limit=1 / 0.9, unit="x"),
            target(
                f"{workers} workers: 429s", summarize(shares)["median"], 1.0, limit=1.0, unit="%"
            ),
        ]
    return result(
        "shared_rate",
        figures={"rate_limit_per_s": RATE, "shared": runs, "each_at_the_whole_rate": contrast},
        targets=targets,
        notes=[
            f"{counts[0]} workers each at {RATE:g}/s without the shared limiter: "
            f"{contrast['throttled']} of {contrast['requests']} requests answered 429 "
            f"({contrast['throttled_pct']:.1f} %)."
        ],
    )
