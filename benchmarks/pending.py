"""`pending`: the pending-login stores of the web integrations under a flood of logins.

A web backend stores one pending login per ``/login`` request
(`WebCore.start_login`: a fresh login cookie each time, the browser's
previous cookie passed along) until its callback. Whoever calls the route,
the store must stay bounded, and a login must not get slower as it fills:
each of `MemoryPendingStore`, `FilePendingStore` (SQLite in a temporary
directory) and `RedisPendingStore` (a redis-server of this run's own, a
unique prefix per store) is measured against:

1. **One browser, one account, 100,000 logins**, each bringing the previous
   login's cookie: the store holds at most 1 entry afterwards (each login
   replaces the browser's login of the same account).
2. **100,000 logins from distinct browsers** (no previous cookie), spread
   over 1,000 accounts (so ``max_per_account`` is not what stops them),
   into a store with the default cap (`DEFAULT_MAX_PENDING`): it holds at most the
   cap, accepts exactly the cap and refuses the rest (``start`` returns
   False): nothing accepted beyond the cap (to evict older logins), nothing
   refused before it.
3. **A login at a full store costs no more than 2x one at an empty store**:
   the time of each ``await store.start(...)`` (``time.perf_counter`` around
   the call, one event loop) of a browser replacing its own previous login,
   into a store holding 1 entry and into one holding cap - 1 entries,
   alternated call by call (ABBA) so that a drift of the machine falls on
   both alike; medians in microseconds. Figures beside it: a refused login
   at a store holding exactly the cap, and, from item 2, new browsers'
   logins into the empty store (the first ones) and into the nearly full
   one (the last ones before the cap).
4. **Peak RSS growth of the memory store under 100 MB** for item 2's
   workload, in a child process (``benchmarks._pending_child``; peak RSS
   from ``VmHWM``, see `benchmarks._rss_child.peak_rss_kb`), over the same
   child doing only the imports and the store's setup.

Logins are built as the web route builds them: a fresh ``state``
(``secrets.token_urlsafe(32)``), a 64-character verifier, a new browser id
and a fresh cookie digest per login; only the ``start`` call is timed.
Nothing secret is printed or written: the figures are counts and times.
MB are 10**6 bytes.
"""

from __future__ import annotations

import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from wiser_async.integrations._pending import (
    DEFAULT_MAX_PENDING,
    DEFAULT_PENDING_TTL,
    MemoryPendingStore,
    PendingLogin,
    PendingStore,
)
from wiser_async.integrations._pending_file import FilePendingStore
from wiser_async.integrations._pending_redis import RedisPendingStore
from wiser_async.integrations._session import cookie_digest, new_browser_id, new_cookie

from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from .tokens import redis_server

__all__ = ["FULL", "KINDS", "SMOKE", "make_login", "pending"]

KINDS = ("memory", "file", "redis")
"""The stores measured, in this order."""
REDIRECT_URI = "https://app.example/wiser/callback"
FULL_OVER_EMPTY_LIMIT = 2.0
RSS_LIMIT_MB = 100.0
_ROOT = Path(__file__).resolve().parent.parent
# Far above the expected seconds: a stuck child fails the benchmark, it does not hang it.
_CHILD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Plan:
    """The workload's sizes (what differs under ``--quick``).

    Attributes:
        logins: Logins of items 1, 2 and 4.
        cap: The stores' ``max_pending``.
        samples: Timed logins per side in item 3, and of new browsers at each
            end of item 2.
    """

    logins: int
    cap: int
    samples: int


_Workload = Callable[[str, Plan, str, Path], Awaitable[dict[str, Any]]]
"""A part of the workload: (store kind, plan, Redis URL, temporary directory) to its figures."""

FULL = Plan(logins=100_000, cap=DEFAULT_MAX_PENDING, samples=2_000)
SMOKE = Plan(logins=600, cap=150, samples=60)


def make_login(account: str) -> PendingLogin:
    """A login as `WebCore.start_login` builds one: fresh state, verifier and browser id."""
    return PendingLogin(
        account=account,
        state=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),  # 64 characters
        redirect_uri=REDIRECT_URI,
        browser=new_browser_id(),
        expires_at=time.time() + DEFAULT_PENDING_TTL,
    )


@asynccontextmanager
async def _open_store(
    kind: str, cap: int, redis_url: str, directory: Path
) -> AsyncIterator[PendingStore]:
    """A fresh, empty store of `kind` holding at most `cap` entries; closed (and removed) after."""
    store: PendingStore
    where = directory / f"{kind}-{uuid.uuid4().hex}"
    if kind == "memory":
        store = MemoryPendingStore(max_pending=cap)
    elif kind == "file":
        store = FilePendingStore(where, max_pending=cap)
    else:
        store = RedisPendingStore(redis_url, prefix=f"bench-{uuid.uuid4().hex}", max_pending=cap)
    try:
        yield store
    finally:
        await store.aclose()
        shutil.rmtree(where, ignore_errors=True)


class _Browser:
    """One browser: the digest of the cookie its last login set (None before the first)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.cookie: str | None = None
        self.last: PendingLogin | None = None

    async def login(self, store: PendingStore) -> tuple[bool, float]:
        """One login bringing the previous cookie: (accepted, seconds of ``start``)."""
        login = make_login(self.account)
        cookie = cookie_digest(new_cookie())
        started = time.perf_counter()
        accepted = await store.start(login, cookie=cookie, previous_cookie=self.cookie)
        elapsed = time.perf_counter() - started
        if accepted:
            self.cookie, self.last = cookie, login
        return accepted, elapsed


async def _new_browser(store: PendingStore, number: int) -> tuple[bool, float]:
    """A login from a browser never seen (no previous cookie): (accepted, seconds of ``start``)."""
    return await _Browser(f"account-{number % 1000}").login(store)


def _us(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e6


async def _one_browser(kind: str, plan: Plan, redis_url: str, directory: Path) -> dict[str, Any]:
    """Item 1: one browser logs in to one account `plan.logins` times, each with its last cookie."""
    async with _open_store(kind, plan.cap, redis_url, directory) as store:
        browser = _Browser("account-0")
        times: list[float] = []
        refused = 0
        first: PendingLogin | None = None
        started = time.perf_counter()
        for _ in range(plan.logins):
            accepted, elapsed = await browser.login(store)
            times.append(elapsed)
            refused += not accepted
            if first is None:
                first = browser.last
        duration = time.perf_counter() - started
        count = await store.count()
        if first is None or browser.last is None or browser.cookie is None:
            raise BenchmarkError(f"{kind}: no login of the one browser was accepted")
        # The browser kept its first id throughout, and its last login is the one held.
        kept_id = await store.browser(browser.cookie) == first.browser
        last_found = isinstance(await store.find(browser.last.state), PendingLogin)
    return {
        "count": count,
        "refused": refused,
        "same_browser_id": kept_id,
        "last_login_found": last_found,
        "duration_s": duration,
        "us_per_login": _us(times),
    }


async def _distinct_browsers(
    kind: str, plan: Plan, redis_url: str, directory: Path
) -> dict[str, Any]:
    """Item 2: `plan.logins` logins from as many browsers into a store capped at `plan.cap`."""
    async with _open_store(kind, plan.cap, redis_url, directory) as store:
        accepted_times: list[float] = []
        refused_times: list[float] = []
        first_refused: int | None = None
        started = time.perf_counter()
        for number in range(plan.logins):
            accepted, elapsed = await _new_browser(store, number)
            if accepted:
                accepted_times.append(elapsed)
            else:
                refused_times.append(elapsed)
                first_refused = number if first_refused is None else first_refused
        duration = time.perf_counter() - started
        count = await store.count()
    empty, full = accepted_times[: plan.samples], accepted_times[-plan.samples :]
    figures: dict[str, Any] = {
        "count": count,
        "accepted": len(accepted_times),
        "refused": len(refused_times),
        "first_refused_login": first_refused,
        "duration_s": duration,
        "new_browser_us": {"empty": _us(empty), "full": _us(full)},
        "new_browser_full_over_empty": _us(full) / _us(empty),
    }
    if refused_times:
        figures["refused_us"] = _us(refused_times)
    return figures


async def _timed_logins(kind: str, plan: Plan, redis_url: str, directory: Path) -> dict[str, Any]:
    """Item 3: a browser's login at a store of 1 entry vs one of cap - 1, then refused at the cap.

    Two stores side by side: ``empty`` holds only the timed browser's login,
    ``full`` is filled (untimed) with cap - 2 other browsers' logins before
    the timed browser's first. Each timed login replaces the browser's
    previous one, so the stores stay at 1 and cap - 1 entries; the calls
    alternate between them ABBA. Then one more browser fills ``full`` to the
    cap and `plan.samples` new browsers are refused, each timed.
    """
    async with (
        _open_store(kind, plan.cap, redis_url, directory) as empty,
        _open_store(kind, plan.cap, redis_url, directory) as full,
    ):
        for number in range(plan.cap - 2):
            accepted, _ = await _new_browser(full, number)
            if not accepted:
                raise BenchmarkError(f"{kind}: login {number + 1} refused below the cap")
        stores = {"empty": empty, "full": full}
        browsers = {label: _Browser("account-timed") for label in stores}
        times: dict[str, list[float]] = {label: [] for label in stores}
        for label, store in stores.items():
            await browsers[label].login(store)  # untimed: the browser's first login
        held = {label: await store.count() for label, store in stores.items()}
        if held != {"empty": 1, "full": plan.cap - 1}:
            raise BenchmarkError(f"{kind}: the stores hold {held}, not 1 and cap - 1")
        for _, label in alternate(plan.samples, "empty", "full"):
            accepted, elapsed = await browsers[label].login(stores[label])
            if not accepted:
                raise BenchmarkError(f"{kind}: a browser's repeated login refused ({label} store)")
            times[label].append(elapsed)
        after = {label: await store.count() for label, store in stores.items()}
        if after != held:
            raise BenchmarkError(f"{kind}: the stores went from {held} to {after} entries")
        accepted, _ = await _new_browser(full, plan.cap)
        if not accepted:
            raise BenchmarkError(f"{kind}: the login bringing the store to its cap was refused")
        refused: list[float] = []
        for number in range(plan.samples):
            accepted, elapsed = await _new_browser(full, plan.cap + 1 + number)
            if accepted:
                raise BenchmarkError(f"{kind}: a login was accepted beyond the cap")
            refused.append(elapsed)
        at_cap = await full.count()
    return {
        "empty_us": _us(times["empty"]),
        "full_us": _us(times["full"]),
        "refused_us": _us(refused),
        "full_count": at_cap,
    }


def _rss_child(mode: str, plan: Plan) -> dict[str, Any]:
    """Item 4: run ``benchmarks._pending_child`` once; its JSON report."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks._pending_child",
        mode,
        "--logins",
        str(plan.logins),
        "--max-pending",
        str(plan.cap),
    ]
    # subprocess.run kills the child if this process is interrupted.
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, cwd=_ROOT, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(
            f"the {mode} child exited with {completed.returncode}: {completed.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


@register(
    "pending",
    repeat=2,
    description="pending-login stores (memory, file, Redis) under 100,000 logins: held <= 1 for"
    " one browser, <= the cap for distinct ones; a login at a full store <= 2x an empty one;"
    " memory store's RSS growth < 100 MB",
)
def pending(ctx: Context) -> Result:
    """The stores stay bounded under a flood of logins, at a flat cost per login."""
    plan = SMOKE if ctx.quick else FULL
    figures: dict[str, Any] = {
        "logins": plan.logins,
        "max_pending": plan.cap,
        "timed_logins_per_side": plan.samples,
    }
    one: dict[str, dict[str, Any]] = {}
    distinct: dict[str, dict[str, Any]] = {}
    timed: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with redis_server() as redis_url, tempfile.TemporaryDirectory(prefix="wiser-bench-") as tmp:
        directory = Path(tmp)

        def run(work: _Workload, kind: str) -> dict[str, Any]:
            return anyio.run(partial(work, kind, plan, redis_url, directory), backend="asyncio")

        for kind in KINDS:
            one[kind] = run(_one_browser, kind)
            ctx.log(
                f"  {kind}: one browser, {plan.logins:,} logins: {one[kind]['count']} held,"
                f" {one[kind]['refused']} refused, {one[kind]['duration_s']:.2f} s"
            )
            distinct[kind] = run(_distinct_browsers, kind)
            ctx.log(
                f"  {kind}: {plan.logins:,} distinct browsers: {distinct[kind]['count']:,} held,"
                f" {distinct[kind]['refused']:,} refused, {distinct[kind]['duration_s']:.2f} s"
            )
        for repetition in range(ctx.repeat):
            for kind in KINDS:
                timed[kind].append(run(_timed_logins, kind))
                last = timed[kind][-1]
                ctx.log(
                    f"  {kind} {repetition + 1}/{ctx.repeat}: a login {last['empty_us']:.1f} us"
                    f" at 1 entry, {last['full_us']:.1f} us at cap - 1,"
                    f" refused at the cap {last['refused_us']:.1f} us"
                )
    peaks: dict[str, list[float]] = {"setup": [], "run": []}
    maxrss: dict[str, list[float]] = {"setup": [], "run": []}
    children: list[dict[str, Any]] = []
    for repetition, mode in alternate(ctx.repeat, "setup", "run"):
        report = _rss_child(mode, plan)
        peaks[mode].append(_mb(report["peak_rss_kb"]))
        maxrss[mode].append(_mb(report["ru_maxrss_kb"]))
        if mode == "run":
            children.append(report)
        ctx.log(
            f"  memory store child, {mode} {repetition + 1}/{ctx.repeat}: {peaks[mode][-1]:.1f} MB"
        )
    for report in children:
        if report["accepted"] + report["refused"] != plan.logins:
            raise BenchmarkError(
                f"the child started {report['accepted'] + report['refused']} logins"
            )
    growth = [
        run_mb - setup_mb for run_mb, setup_mb in zip(peaks["run"], peaks["setup"], strict=True)
    ]

    targets = []
    notes = []
    for kind in KINDS:
        runs = timed[kind]
        empty = summarize([r["empty_us"] for r in runs])
        full = summarize([r["full_us"] for r in runs])
        refused = summarize([r["refused_us"] for r in runs])
        figures[kind] = {
            "one_browser": one[kind],
            "distinct_browsers": distinct[kind],
            "login_us": {"empty": empty, "full": full, "refused_at_cap": refused},
            "full_over_empty": full["median"] / empty["median"],
            "refused_over_empty": refused["median"] / empty["median"],
        }
        targets += [
            target(
                f"{kind}: held after one browser's {plan.logins:,} logins",
                one[kind]["count"],
                1,
                limit=1.0,
                unit="entries",
            ),
            # max(held, accepted): nothing kept beyond the cap, nor accepted beyond it (evicting).
            target(
                f"{kind}: held (and accepted) of {plan.logins:,} browsers vs cap",
                max(distinct[kind]["count"], distinct[kind]["accepted"]),
                plan.cap,
                limit=1.0,
                unit="entries",
            ),
            # None refused before the store held its cap.
            target(
                f"{kind}: refused of {plan.logins:,} browsers vs logins - cap",
                distinct[kind]["refused"],
                plan.logins - plan.cap,
                limit=1.0,
                unit="logins",
            ),
            target(
                f"{kind}: a login at cap - 1 entries vs at 1 (medians)",
                full["median"],
                empty["median"],
                limit=FULL_OVER_EMPTY_LIMIT,
                unit="us",
            ),
        ]
        new_browser = distinct[kind]["new_browser_us"]
        notes.append(
            f"{kind}: a browser's login {empty['median']:.1f} us at 1 entry,"
            f" {full['median']:.1f} us at {plan.cap - 1:,}, refused at the cap"
            f" {refused['median']:.1f} us; new browsers {new_browser['empty']:.1f}"
            f" us into the empty store, {new_browser['full']:.1f} us as it"
            f" fills; {plan.logins:,} logins of one browser in {one[kind]['duration_s']:.2f} s,"
            f" of distinct browsers in {distinct[kind]['duration_s']:.2f} s"
        )
    figures["memory_rss"] = {
        "peak_rss_mb": summarize(peaks["run"]),
        "baseline_rss_mb": summarize(peaks["setup"]),
        "growth_mb": summarize(growth),
        "held": summarize([r["count"] for r in children]),
        "refused": summarize([r["refused"] for r in children]),
        "duration_s": summarize([r["duration_s"] for r in children]),
        # Not the child's own on Linux (it keeps this process's high-water mark
        # across exec): kept to show why peak_rss_mb is read from VmHWM.
        "ru_maxrss_mb": {mode: summarize(values) for mode, values in maxrss.items()},
    }
    runs_text = f"worst of {ctx.repeat}" if ctx.repeat > 1 else "1 run"
    targets.append(
        target(
            f"memory store: peak RSS growth, {plan.logins:,} browsers ({runs_text})",
            max(growth),
            RSS_LIMIT_MB,
            limit=1.0,
            unit="MB",
        )
    )
    notes += [
        f"item 3: medians of {plan.samples:,} timed logins per side and run, alternated between"
        f" a store of 1 entry and one of {plan.cap - 1:,}; medians of {ctx.repeat} run(s)",
        f"memory store child: peak RSS {statistics.median(peaks['run']):.1f} MB after"
        f" {plan.logins:,} logins from distinct browsers, {statistics.median(peaks['setup']):.1f}"
        f" MB for the imports and setup alone: grows {max(growth):.1f} MB ({runs_text})",
    ]
    return result("pending", figures=figures, targets=targets, notes=notes)
