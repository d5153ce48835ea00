"""Crawl benchmarks: makespan, makespan under a rate limit, CPU per request.

All three crawl the standard portfolio (50,000 devices over 1,000 sites) served
by a sandbox in another process over loopback HTTP, with ``client.crawl()``
at the default page size (500) and ``max_in_flight=16``. The baseline of
`makespan` and `cpu_per_request` is a bare httpx2 loop fetching the very URLs
a crawl fetches, 16 at a time, recorded from an untimed crawl.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx2

from wiser_async.sandbox import PortfolioSpec, SandboxProcess, SandboxUrls

from ._client import MAX_IN_FLIGHT, open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._sandbox import DEPTH, PAGE_SIZE, check_crawl, cpu_seconds, crawl_requests, describe

__all__ = ["QUICK", "STANDARD", "cpu_per_request", "makespan", "rate_limited"]

STANDARD = PortfolioSpec(locations=20, sites_per_location=50, rooms_per_site=4, devices_per_site=50)
"""50,000 devices over 1,000 sites: 2,021 requests at page size 500."""
QUICK = PortfolioSpec(locations=2, sites_per_location=5, rooms_per_site=2, devices_per_site=20)
"""For ``--quick``: 200 devices, 23 requests."""

LATENCY = 0.1
RATE_LIMIT = 50.0
# Far above any expected answer time: a stuck run fails, it does not hang.
_TIMEOUT = httpx2.Timeout(60.0, connect=10.0)
_LIMITS = httpx2.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)


def _portfolio(ctx: Context) -> PortfolioSpec:
    return QUICK if ctx.quick else STANDARD


def _shape(portfolio: PortfolioSpec) -> dict[str, int]:
    sites = portfolio.locations * portfolio.sites_per_location
    return {
        "locations": portfolio.locations,
        "sites": sites,
        "rooms": sites * portfolio.rooms_per_site,
        "devices": sites * portfolio.devices_per_site,
        "expected_requests": crawl_requests(portfolio),
    }


def _runs(values: list[Any], how: str = "median") -> str:
    return f"{how} of {len(values)}" if len(values) > 1 else "1 run"


# -- the two workloads ----------------------------------------------------------------


async def _timed_crawl(
    urls: SandboxUrls, token: dict[str, Any], portfolio: PortfolioSpec, **options: Any
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and requests of one ``client.crawl()``.

    The client is set up before the clocks start; the crawl's result is
    kept until they stop, so freeing it is not counted.
    """
    async with open_client(urls.api_base_url, urls.token_url, token, **options) as client:
        gc.collect()  # garbage of the previous run is not this run's cost
        wall, cpu = time.perf_counter(), time.process_time()
        crawled = await client.crawl()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        requests = client.stats.requests
    check_crawl(portfolio, crawled.stats, crawled.failures)
    return wall, cpu, requests


async def _timed_walk(
    urls: SandboxUrls, token: dict[str, Any], portfolio: PortfolioSpec
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and requests of one streaming ``client.walk()``.

    Every node is decoded and handed over, then dropped: what a crawl
    writing JSONL does, without keeping the tree as ``crawl()`` does.
    """
    async with open_client(urls.api_base_url, urls.token_url, token) as client:
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        async with client.walk() as walk:
            async for _ in walk:
                pass
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        requests = client.stats.requests
    check_crawl(portfolio, walk.stats, walk.failures)
    return wall, cpu, requests


async def _record_urls(
    urls: SandboxUrls, token: dict[str, Any], portfolio: PortfolioSpec
) -> list[str]:
    """Every URL a crawl requests, in order, from an untimed crawl through a borrowed client."""
    seen: list[str] = []

    async def on_request(request: httpx2.Request) -> None:
        seen.append(str(request.url))

    async with (
        httpx2.AsyncClient(
            limits=_LIMITS, timeout=_TIMEOUT, event_hooks={"request": [on_request]}
        ) as http,
        open_client(urls.api_base_url, urls.token_url, token, http_client=http) as client,
    ):
        crawled = await client.crawl()
    check_crawl(portfolio, crawled.stats, crawled.failures)
    return seen


async def _bare_loop(targets: list[str], access_token: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and requests of plain httpx2 fetching ``targets``.

    16 workers share the list, each parsing its answers with ``response.json()``.
    Parsed bodies are kept until the clocks stop, as the crawl keeps its
    results: freeing them is not charged to one side only.
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    bodies: list[Any] = []
    failed: list[str] = []
    pending: Iterator[str] = iter(targets)

    async def worker() -> None:
        # Workers share one iterator: each takes the next URL when it is free.
        for url in pending:
            response = await http.get(url)
            if response.status_code != 200:
                failed.append(f"{response.status_code} {url}")
                continue
            bodies.append(response.json())

    async with httpx2.AsyncClient(limits=_LIMITS, headers=headers, timeout=_TIMEOUT) as http:
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(MAX_IN_FLIGHT):
                tg.start_soon(worker)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if failed:
        raise BenchmarkError(f"the bare loop got {len(failed)} non-200 answers, first: {failed[0]}")
    return wall, cpu, len(bodies)


@dataclass(frozen=True, kw_only=True)
class _Run:
    """What one timed run measured, in this process and in the sandbox."""

    wall: float
    cpu: float
    client_requests: int
    requests: int
    peak_in_flight: int
    throttled: int
    sandbox_cpu: float | None


def _run(
    label: str,
    process: SandboxProcess,
    token: dict[str, Any],
    portfolio: PortfolioSpec,
    *,
    targets: list[str] | None = None,
    rate_limit: float | None = None,
) -> _Run:
    """One timed run of the ``library`` crawl or the ``bare`` loop over ``targets``."""
    process.reset_stats()
    before = cpu_seconds(process.pid)
    if label == "library":
        workload = partial(_timed_crawl, process.urls, token, portfolio, rate_limit=rate_limit)
    elif label == "walk":
        workload = partial(_timed_walk, process.urls, token, portfolio)
    elif targets is not None:
        workload = partial(_bare_loop, targets, token["access_token"])
    else:
        raise ValueError("a bare run needs the URLs to fetch")
    wall, cpu, client_requests = anyio.run(workload, backend="asyncio")
    after = cpu_seconds(process.pid)
    counted = process.stats()
    return _Run(
        wall=wall,
        cpu=cpu,
        client_requests=client_requests,
        requests=counted.requests,
        peak_in_flight=counted.peak_in_flight,
        throttled=counted.throttled,
        sandbox_cpu=None if before is None or after is None else after - before,
    )


def _cpu_ms_per_request(runs: list[_Run], *, sandbox: bool) -> dict[str, Any] | None:
    """CPU milliseconds per request of this process or the sandbox's; None if unmeasured."""
    values = [run.sandbox_cpu if sandbox else run.cpu for run in runs]
    known = [1000 * v / run.requests for v, run in zip(values, runs, strict=True) if v is not None]
    return summarize(known) if known else None


def _requests_note(portfolio: PortfolioSpec, runs: list[_Run]) -> list[str]:
    expected = crawl_requests(portfolio)
    counted = [run.requests for run in runs]
    if all(requests == expected for requests in counted):
        return []
    return [f"the sandbox counted {counted} requests, {expected} expected for this portfolio"]


# -- the benchmarks ---------------------------------------------------------------------


@register(
    "makespan",
    repeat=3,
    description="client.crawl() at 100 ms latency, 16 in flight:"
    " wall time vs max(depth x latency, requests x latency / 16)",
)
def makespan(ctx: Context) -> Result:
    """Wall time of a whole crawl against the best any client with 16 requests in flight can do.

    A bare httpx2 loop over the same URLs at the same latency, interleaved,
    shows how much of the gap to the bound the sandbox and the HTTP stack
    take by themselves (it knows every URL up front, so it has no ramp).
    """
    portfolio = _portfolio(ctx)
    process = ctx.sandbox(portfolio, latency=0.0)
    token = process.issue_token("default")
    targets = anyio.run(partial(_record_urls, process.urls, token, portfolio), backend="asyncio")
    process = ctx.sandbox(portfolio, latency=LATENCY)
    runs: dict[str, list[_Run]] = {"library": [], "bare": []}
    for repetition, label in alternate(ctx.repeat, "library", "bare"):
        run = _run(label, process, token, portfolio, targets=targets)
        runs[label].append(run)
        ctx.log(
            f"  {label} {repetition + 1}/{ctx.repeat}: {run.wall:.2f} s, {run.requests} requests,"
            f" peak in flight {run.peak_in_flight}"
        )
    library, bare = runs["library"], runs["bare"]
    times = [run.wall for run in library]
    bounds = [max(DEPTH * LATENCY, run.requests * LATENCY / MAX_IN_FLIGHT) for run in library]
    bare_times = [run.wall for run in bare]
    # The bare loop knows every URL up front: no depth, only the queue.
    bare_bounds = [max(LATENCY, run.requests * LATENCY / MAX_IN_FLIGHT) for run in bare]
    value, bound = statistics.median(times), statistics.median(bounds)
    peaks = [run.peak_in_flight for run in library]
    # CPU per request of this process during the same runs: the library's
    # crawl against the bare loop, at the standard latency (cpu_per_request
    # measures the same at latency 0, where the client is the bottleneck).
    library_cpu = statistics.median(1e6 * run.cpu / run.requests for run in library)
    bare_cpu = statistics.median(1e6 * run.cpu / run.requests for run in bare)
    return result(
        "makespan",
        figures={
            "portfolio": _shape(portfolio),
            "latency_s": LATENCY,
            "max_in_flight": MAX_IN_FLIGHT,
            "page_size": PAGE_SIZE,
            "makespan_s": summarize(times),
            "bound_s": summarize(bounds),
            "makespan_over_bound": summarize([t / b for t, b in zip(times, bounds, strict=True)]),
            "requests": summarize([run.requests for run in library]),
            "requests_per_s": summarize([run.requests / run.wall for run in library]),
            "peak_in_flight": summarize(peaks),
            "bare_makespan_s": summarize(bare_times),
            "bare_over_bound": summarize(
                [t / b for t, b in zip(bare_times, bare_bounds, strict=True)]
            ),
            "makespan_over_bare": value / statistics.median(bare_times),
            # Which process was busy, and how much.
            "client_cpu_ms_per_request": _cpu_ms_per_request(library, sandbox=False),
            "bare_cpu_ms_per_request": _cpu_ms_per_request(bare, sandbox=False),
            "sandbox_cpu_ms_per_request": _cpu_ms_per_request(library, sandbox=True),
        },
        targets=[
            target(f"makespan ({_runs(times)})", value, bound, limit=1.1, unit="s"),
            target(
                f"peak in flight ({_runs(peaks, 'max')})",
                max(peaks),
                MAX_IN_FLIGHT,
                limit=1.0,
                unit="",
            ),
            target(
                f"CPU/request vs bare httpx2 at {LATENCY * 1000:g} ms ({_runs(times)})",
                library_cpu,
                bare_cpu,
                limit=1.5,
                unit="us",
            ),
            target(
                f"CPU/request vs bare httpx2 at {LATENCY * 1000:g} ms, stretch",
                library_cpu,
                bare_cpu,
                limit=1.3,
                unit="us",
                stretch=True,
            ),
        ],
        notes=[
            f"{describe(portfolio)}; {statistics.median(run.requests for run in library):,.0f}"
            f" requests; makespan min {min(times):.2f} s, max {max(times):.2f} s;"
            f" bound = max({DEPTH} x {LATENCY:g} s, requests x {LATENCY:g} s / {MAX_IN_FLIGHT})",
            f"bare httpx2 over the same URLs at the same latency and concurrency:"
            f" {statistics.median(bare_times):.2f} s,"
            f" {statistics.median(bare_times) / statistics.median(bare_bounds):.3f} x the bound:"
            " the part of the gap that is the sandbox's and the HTTP stack's",
            *_requests_note(portfolio, library + bare),
        ],
    )


@register(
    "rate_limited",
    repeat=1,
    description="client.crawl() against a sandbox allowing 50 requests/s, client rate_limit=50:"
    " wall time vs requests / 50, and the share of 429s",
)
def rate_limited(ctx: Context) -> Result:
    """A crawl paced by the client to the server's rate limit: as fast as allowed, few 429s."""
    portfolio = _portfolio(ctx)
    # The sandbox's bucket holds a burst of `RATE_LIMIT` requests (its default).
    process = ctx.sandbox(portfolio, latency=LATENCY, rate_limit=RATE_LIMIT)
    token = process.issue_token("default")
    runs: list[_Run] = []
    for repetition in range(ctx.repeat):
        run = _run("library", process, token, portfolio, rate_limit=RATE_LIMIT)
        runs.append(run)
        ctx.log(
            f"  run {repetition + 1}/{ctx.repeat}: {run.wall:.2f} s, {run.requests} requests,"
            f" {run.throttled} answered 429"
        )
    times = [run.wall for run in runs]
    bounds = [run.requests / RATE_LIMIT for run in runs]
    shares = [100.0 * run.throttled / run.requests for run in runs]
    return result(
        "rate_limited",
        figures={
            "portfolio": _shape(portfolio),
            "latency_s": LATENCY,
            "rate_limit_per_s": RATE_LIMIT,
            "max_in_flight": MAX_IN_FLIGHT,
            "makespan_s": summarize(times),
            "bound_s": summarize(bounds),
            "makespan_over_bound": summarize([t / b for t, b in zip(times, bounds, strict=True)]),
            "requests": summarize([run.requests for run in runs]),
            "throttled": summarize([run.throttled for run in runs]),
            "throttled_percent": summarize(shares),
        },
        targets=[
            target(
                f"makespan ({_runs(times)})",
                statistics.median(times),
                statistics.median(bounds),
                limit=1.1,
                unit="s",
            ),
            target(
                f"429 answers ({_runs(shares, 'worst')})", max(shares), 1.0, limit=1.0, unit="%"
            ),
        ],
        notes=[
            f"{len(runs)} run(s): one by default, as each takes requests / {RATE_LIMIT:g} s"
            " (about 40 s for the standard portfolio); --repeat N for more",
            f"bound = requests / {RATE_LIMIT:g} per s;"
            f" {statistics.median(run.requests for run in runs):,.0f} requests",
            *_requests_note(portfolio, runs),
        ],
    )


@register(
    "cpu_per_request",
    repeat=5,
    description="CPU per request of client.crawl() (decoding included) vs a bare httpx2 loop"
    " over the same URLs, 16 in flight, latency 0",
)
def cpu_per_request(ctx: Context) -> Result:
    """The library's CPU per request over what plain httpx2 + ``response.json()`` spends."""
    portfolio = _portfolio(ctx)
    process = ctx.sandbox(portfolio, latency=0.0)
    token = process.issue_token("default")
    # The untimed run also warms up imports, caches and the sandbox.
    targets = anyio.run(partial(_record_urls, process.urls, token, portfolio), backend="asyncio")
    n = len(targets)
    runs: dict[str, list[_Run]] = {"library": [], "walk": [], "bare": []}
    for repetition, label in alternate(ctx.repeat, "library", "walk", "bare"):
        run = _run(label, process, token, portfolio, targets=targets)
        if run.client_requests != n:
            raise BenchmarkError(f"the {label} run sent {run.client_requests} requests, not {n}")
        runs[label].append(run)
        ctx.log(
            f"  {label} {repetition + 1}/{ctx.repeat}: {run.cpu / n * 1e6:.1f} us/request CPU,"
            f" {run.wall:.2f} s wall"
        )
    cpu = {label: [run.cpu / n * 1e6 for run in done] for label, done in runs.items()}
    library, bare = statistics.median(cpu["library"]), statistics.median(cpu["bare"])
    walk = statistics.median(cpu["walk"])
    how = f"medians of {ctx.repeat}" if ctx.repeat > 1 else "1 run each"
    return result(
        "cpu_per_request",
        figures={
            "portfolio": _shape(portfolio),
            "requests": n,
            "max_in_flight": MAX_IN_FLIGHT,
            "library_us_per_request": summarize(cpu["library"]),
            "walk_us_per_request": summarize(cpu["walk"]),
            "bare_us_per_request": summarize(cpu["bare"]),
            "library_over_bare": library / bare,
            "pairwise_ratio": summarize(
                [a / b for a, b in zip(cpu["library"], cpu["bare"], strict=True)]
            ),
            "walk_over_bare": walk / bare,
            "library_wall_s": summarize([run.wall for run in runs["library"]]),
            "bare_wall_s": summarize([run.wall for run in runs["bare"]]),
            # At latency 0 the slower process sets the pace: the sandbox's CPU
            # per request says how busy the other side was.
            "sandbox_cpu_ms_per_request": {
                label: _cpu_ms_per_request(done, sandbox=True) for label, done in runs.items()
            },
        },
        targets=[
            target(
                f"crawl() CPU/request vs bare httpx2 ({how})", library, bare, limit=1.5, unit="us"
            ),
            target(
                "crawl() CPU/request vs bare httpx2, stretch",
                library,
                bare,
                limit=1.3,
                unit="us",
                stretch=True,
            ),
            target(f"walk() CPU/request vs bare httpx2 ({how})", walk, bare, limit=1.5, unit="us"),
            target(
                "walk() CPU/request vs bare httpx2, stretch",
                walk,
                bare,
                limit=1.3,
                unit="us",
                stretch=True,
            ),
        ],
        notes=[
            f"{n:,} requests per run; crawl() {library:.0f} us/request"
            f" (min {min(cpu['library']):.0f}, max {max(cpu['library']):.0f}),"
            f" walk() {walk:.0f} (min {min(cpu['walk']):.0f}, max {max(cpu['walk']):.0f}),"
            f" bare {bare:.0f} us/request (min {min(cpu['bare']):.0f}, max {max(cpu['bare']):.0f});"
            " runs interleaved ABC CBA; CPU of this process only (the sandbox is another)",
            "crawl() keeps the whole tree (50,000 typed devices) until it returns, and the"
            " garbage collector's passes over those live objects are part of its cost;"
            " walk() hands each node over and keeps nothing",
        ],
    )
