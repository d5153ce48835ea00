"""`hostile`: memory, time and losses against a sandbox that means harm.

Every figure is measured in a child process (``benchmarks._hostile_child``)
talking to the sandbox in another process, so that its peak RSS is its own
and so that it can be killed:

- ``huge_total``: ``client.crawl(timeout=3)`` while every page claims
  ``meta.total = 10**15``: peak RSS and wall time.
- ``oversized_page``: the same while every page carries 1.4 million ``{}``
  items (about 4 MiB) beyond its real ones.
- ``trickle``: one call, ``timeout=2`` and one attempt, while every answer
  comes a byte every 0.5 s: the time until `RequestTimeout`. Also, once each,
  with the default retry policy and with a retry timeout of 5 s.
- ``interrupt_loss``: a ``crawl_to_jsonl`` of 400 sites, 4 requests at a time
  at 0.2 s latency, killed with SIGKILL after 5 s: the sites the sandbox had
  answered that the checkpoint does not hold; then a resume killed after 5 s
  (it must add sites), then a resume to the end, whose output must hold the
  records of an uninterrupted crawl, each once.

MB are 10**6 bytes throughout.
"""

from __future__ import annotations

import json
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from wiser_async import crawl_to_jsonl
from wiser_async.sandbox import Faults, PortfolioSpec, SandboxProcess, SandboxStats

from ._client import open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._sandbox import crawl_requests, describe

__all__ = ["PORTFOLIO", "QUICK", "hostile"]

PORTFOLIO = PortfolioSpec(
    locations=4, sites_per_location=100, rooms_per_site=2, devices_per_site=16
)
"""400 sites, 6,400 devices: 805 requests at page size 500."""
QUICK = PortfolioSpec(locations=2, sites_per_location=20, rooms_per_site=2, devices_per_site=16)
"""For ``--quick``: 40 sites, 83 requests."""

HUGE_TOTAL = 10**15
CRAWL_TIMEOUT = 3.0
RSS_LIMIT_MB = 150.0
TRICKLE_INTERVAL = 0.5
TRICKLE_LIMIT_S = 5.0
INTERRUPT_LATENCY = 0.2
INTERRUPT_IN_FLIGHT = 4
# A site unit is two requests (rooms, devices): with 4 requests in flight, at
# most 4 units have a request out (and, in the walk's buffer, a page waiting).
LOSS_BOUND = 4.0

HUGE_TOTALS = Faults(huge_totals=frozenset({"*"}), huge_total=HUGE_TOTAL)
OVERSIZED_PAGES = Faults(oversized_pages=frozenset({"*"}))
TRICKLE = Faults(trickle=frozenset({"*"}), trickle_interval=TRICKLE_INTERVAL)
INTERRUPTED = Faults(latency=INTERRUPT_LATENCY)
# The resume to the end and the reference crawl: the data does not depend on latency.
UNHURRIED = Faults()

ROOMS_ROUTE = "/sites/{siteId}/rooms"
DEVICES_ROUTE = "/sites/{siteId}/devices"
_KINDS = ("location", "site", "room", "device")
_ROOT = Path(__file__).resolve().parent.parent
# Far above any expected run: a stuck child fails the benchmark, it does not hang it.
_CHILD_TIMEOUT = 120.0
_START_TIMEOUT = 30.0
_DRAIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Plan:
    """What differs under ``--quick``."""

    portfolio: PortfolioSpec
    trickle_timeout: float
    # (label, extra child options): the calls that retry, measured once each.
    retried: tuple[tuple[str, tuple[str, ...]], ...]
    kill_after: float
    resume_for: float


FULL = _Plan(
    portfolio=PORTFOLIO,
    trickle_timeout=2.0,
    retried=(("default", ()), ("timeout_5", ("--retry-timeout", "5"))),
    kill_after=5.0,
    resume_for=5.0,
)
SMOKE = _Plan(
    portfolio=QUICK,
    trickle_timeout=0.5,
    retried=(("timeout_1", ("--retry-timeout", "1")),),
    kill_after=1.0,
    resume_for=1.0,
)


# -- children and the sandbox ---------------------------------------------------------


def _argv(mode: str, process: SandboxProcess, options: tuple[str, ...]) -> list[str]:
    urls = process.urls
    return [
        sys.executable,
        "-m",
        "benchmarks._hostile_child",
        mode,
        "--api-base-url",
        urls.api_base_url,
        "--token-url",
        urls.token_url,
        *options,
    ]


def _report(mode: str, stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        raise BenchmarkError(f"the {mode} child exited with {returncode}: {stderr[-2000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _child(
    mode: str, process: SandboxProcess, token: dict[str, Any], *options: str
) -> dict[str, Any]:
    """Run a child to its end: its report, with ``child_wall_s`` (start-up included)."""
    started = time.perf_counter()
    # subprocess.run kills the child if this process is interrupted, or on the timeout.
    completed = subprocess.run(
        _argv(mode, process, options),
        input=json.dumps(token),
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        cwd=_ROOT,
        check=False,
    )
    report = _report(mode, completed.stdout, completed.stderr, completed.returncode)
    report["child_wall_s"] = time.perf_counter() - started
    return report


def _killed_child(
    process: SandboxProcess,
    token: dict[str, Any],
    seconds: float,
    *options: str,
    until: Callable[[], bool] | None = None,
) -> SandboxStats:
    """Start a ``jsonl`` child, SIGKILL it ``seconds`` after its crawl began.

    With `until`, the kill waits past ``seconds`` until it holds (polled, at
    most ``_START_TIMEOUT`` more): on a loaded machine a second of crawl may
    not be enough for what the caller measures. Returns the sandbox's
    counters read just before the kill: a request the sandbox had answered
    by then was answered before the child died.
    """
    argv = _argv("jsonl", process, options)
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=_ROOT
        )
        try:
            assert child.stdin is not None  # both PIPE above
            assert child.stdout is not None
            child.stdin.write(json.dumps(token).encode())
            child.stdin.close()
            ready, _, _ = select.select([child.stdout], [], [], _START_TIMEOUT)
            line = child.stdout.readline() if ready else b""
            if b'"started"' not in line:
                child.kill()
                child.wait()
                stderr.seek(0)
                tail = stderr.read()[-2000:].decode("utf-8", "replace")
                raise BenchmarkError(f"the jsonl child never started its crawl: {tail}")
            time.sleep(seconds)
            give_up = time.monotonic() + _START_TIMEOUT
            while until is not None and not until() and child.poll() is None:
                if time.monotonic() > give_up:
                    break
                time.sleep(0.02)
            if child.poll() is not None:
                raise BenchmarkError(
                    f"the jsonl child ended ({child.returncode}) before it was killed"
                    f" after {seconds} s: nothing was interrupted"
                )
            before = process.stats()
            child.kill()
            child.wait()
        finally:
            # Whatever went wrong (Ctrl-C included), the child does not outlive this.
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
    return before


def _drain(process: SandboxProcess) -> SandboxStats:
    """Wait until the sandbox has finished the requests (and trickles) of a dead client."""
    give_up = time.monotonic() + _DRAIN_TIMEOUT
    while True:
        stats = process.stats()
        if stats.in_flight == 0 and stats.trickling == 0:
            return stats
        if time.monotonic() > give_up:
            raise BenchmarkError(
                f"the sandbox still has {stats.in_flight} request(s) in flight and"
                f" {stats.trickling} trickle(s) running {_DRAIN_TIMEOUT} s on"
            )
        time.sleep(0.02)


def _use(process: SandboxProcess, faults: Faults) -> None:
    """Set exactly these faults (every other one off) and zero the counters."""
    _drain(process)
    process.set_faults(**faults.to_json())
    process.reset_stats()


def _changed(faults: Faults) -> dict[str, Any]:
    """The fields of ``faults`` that are not the defaults, as JSON: what the JSON records."""
    default = Faults().to_json()
    return {name: value for name, value in faults.to_json().items() if value != default[name]}


# -- checkpoint and output ------------------------------------------------------------


def _site_units(checkpoint: Path) -> int:
    """Site units the checkpoint records (a line torn by the kill is not one)."""
    count = 0
    with checkpoint.open("rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                break
            unit = record.get("unit") if isinstance(record, dict) else None
            if isinstance(unit, list) and unit and unit[0] == "site":
                count += 1
    return count


def _records(output: Path) -> tuple[Counter[tuple[str, str]], int]:
    """``(type, id)`` of the output's records, each counted; and its failure records."""
    records: Counter[tuple[str, str]] = Counter()
    failures = 0
    with output.open("rb") as file:
        for line in file:
            record = json.loads(line)
            if record["type"] in _KINDS:
                records[record["type"], record["data"]["id"]] += 1
            else:
                failures += 1
    return records, failures


async def _reference_crawl(process: SandboxProcess, token: dict[str, Any], output: Path) -> bool:
    urls = process.urls
    async with open_client(
        urls.api_base_url, urls.token_url, token, max_in_flight=INTERRUPT_IN_FLIGHT
    ) as client:
        crawled = await crawl_to_jsonl(client, output)
    return crawled.complete


def _answered(stats: SandboxStats, checkpointed: int) -> dict[str, int]:
    """Site units whose two requests the sandbox had answered, from its counters.

    The counters hold requests begun by route and requests not yet answered
    (``in_flight``, any route), not which site each was for. A site's two
    requests are queued together, so the sites with both begun are the
    fewer of the two counts; of those, at most ``in_flight`` wait for an
    answer. Hence at least ``min(rooms, devices) - in_flight`` sites were
    answered in full (and at least the ``checkpointed`` ones: a unit is
    checkpointed only once read), and at most ``min(rooms, devices)``.
    """
    rooms = stats.requests_by_route.get(ROOMS_ROUTE, 0)
    devices = stats.requests_by_route.get(DEVICES_ROUTE, 0)
    both = min(rooms, devices)
    answered = max(both - stats.in_flight, checkpointed)
    return {
        "rooms_requests": rooms,
        "devices_requests": devices,
        "in_flight": stats.in_flight,
        "answered_sites": answered,
        "answered_sites_at_most": both,
        "checkpointed_sites": checkpointed,
        "loss": answered - checkpointed,
        "loss_at_most": both - checkpointed,
    }


# -- the measurements -----------------------------------------------------------------


def _check_crawl(label: str, report: dict[str, Any]) -> None:
    if label == "huge_total" and not report["naming_total"]:
        raise BenchmarkError(
            f"no failure of the huge_total crawl names the total {HUGE_TOTAL}:"
            f" {report['failure_kinds']}, {report['messages']}"
        )
    if label == "oversized_page" and not report["failure_kinds"].get("decode"):
        raise BenchmarkError(
            f"the oversized_page crawl met no decode failure: {report['failure_kinds']},"
            f" {report['messages']}"
        )


def _memory(ctx: Context, process: SandboxProcess, token: dict[str, Any]) -> dict[str, Any]:
    """The baseline and the two crawls, interleaved: peak RSS and wall time of each."""
    faults = {"huge_total": HUGE_TOTALS, "oversized_page": OVERSIZED_PAGES}
    peaks: dict[str, list[float]] = {"setup": [], "huge_total": [], "oversized_page": []}
    maxrss: dict[str, list[float]] = {label: [] for label in peaks}
    walls: dict[str, list[float]] = {label: [] for label in faults}
    child_walls: dict[str, list[float]] = {label: [] for label in peaks}
    requests: dict[str, list[int]] = {label: [] for label in faults}
    kinds: dict[str, Counter[str]] = {label: Counter() for label in faults}
    messages: dict[str, list[str]] = {}
    options = ("--crawl-timeout", str(CRAWL_TIMEOUT), "--total", str(HUGE_TOTAL))
    for repetition, label in alternate(ctx.repeat, "setup", *faults):
        _use(process, faults.get(label, UNHURRIED))
        if label == "setup":
            report = _child("setup", process, token)
        else:
            report = _child("crawl", process, token, *options)
            _check_crawl(label, report)
            walls[label].append(report["duration_s"])
            requests[label].append(report["requests"])
            kinds[label].update(report["failure_kinds"])
            messages[label] = report["messages"]
        peaks[label].append(report["peak_rss_kb"] * 1024 / 1e6)
        maxrss[label].append(report["ru_maxrss_kb"] * 1024 / 1e6)
        child_walls[label].append(report["child_wall_s"])
        line = f"  {label} {repetition + 1}/{ctx.repeat}: peak RSS {peaks[label][-1]:.1f} MB"
        if label != "setup":
            line += (
                f", {walls[label][-1]:.2f} s, {requests[label][-1]} requests,"
                f" failures {dict(report['failure_kinds'])}"
            )
        ctx.log(line)
    figures: dict[str, Any] = {"baseline_rss_mb": summarize(peaks["setup"])}
    for label in faults:
        figures[label] = {
            "timeout_s": CRAWL_TIMEOUT,
            "wall_s": summarize(walls[label]),
            "peak_rss_mb": summarize(peaks[label]),
            "over_baseline_mb": statistics.median(peaks[label]) - statistics.median(peaks["setup"]),
            "requests": summarize(requests[label]),
            "failure_kinds": dict(kinds[label]),
            "failure_messages": messages[label],
            "child_wall_s": summarize(child_walls[label]),
        }
    figures["child_wall_s"] = {"setup": summarize(child_walls["setup"])}
    # Not the child's own on Linux (see _rss_child.peak_rss_kb): kept to show the difference.
    figures["ru_maxrss_mb"] = {label: summarize(values) for label, values in maxrss.items()}
    return figures


def _trickle(
    ctx: Context, process: SandboxProcess, token: dict[str, Any], plan: _Plan
) -> dict[str, Any]:
    """Time until a call on a trickling server raises `RequestTimeout`."""
    timeout = ("--timeout", str(plan.trickle_timeout))

    def call(*options: str) -> tuple[dict[str, Any], SandboxStats]:
        _use(process, TRICKLE)
        report = _child("call", process, token, *timeout, *options)
        if report["error"] != "RequestTimeout":
            raise BenchmarkError(
                f"the call on a trickling sandbox ended with {report['error']}"
                f" ({report['message']}), not RequestTimeout"
            )
        stats = _drain(process)
        if not stats.trickled:
            raise BenchmarkError("the sandbox trickled nothing: the fault did not apply")
        return report, stats

    single: list[float] = []
    for repetition in range(ctx.repeat):
        report, _ = call("--attempts", "1")
        single.append(report["duration_s"])
        ctx.log(f"  trickle {repetition + 1}/{ctx.repeat}: RequestTimeout after {single[-1]:.2f} s")
    retried: dict[str, Any] = {}
    for label, options in plan.retried:
        report, stats = call(*options)
        retried[label] = {
            "retry": report["retry"],
            "duration_s": summarize([report["duration_s"]]),
            "attempts": report["attempts"],
            "requests_sent": report["requests_sent"],
            "trickled": stats.trickled,
            "trickles_abandoned": stats.trickles_abandoned,
        }
        ctx.log(
            f"  trickle, retry {label} {report['retry']}: RequestTimeout after"
            f" {report['duration_s']:.2f} s, {report['attempts']} attempt(s),"
            f" {report['requests_sent']} request(s) sent"
        )
    return {
        "timeout_s": plan.trickle_timeout,
        "trickle_interval_s": TRICKLE_INTERVAL,
        "one_attempt_s": summarize(single),
        "retried": retried,
    }


def _interrupt(
    ctx: Context, process: SandboxProcess, token: dict[str, Any], plan: _Plan, tmp: Path
) -> dict[str, Any]:
    """Kill a JSONL crawl, count what it lost, resume it twice and check the result."""
    reference = tmp / "reference.jsonl"
    _use(process, UNHURRIED)
    if not anyio.run(partial(_reference_crawl, process, token, reference), backend="asyncio"):
        raise BenchmarkError("the uninterrupted reference crawl is incomplete")
    expected, _ = _records(reference)
    options = ("--max-in-flight", str(INTERRUPT_IN_FLIGHT))
    runs: list[dict[str, Any]] = []
    for repetition in range(ctx.repeat):
        output = tmp / f"interrupted-{repetition}.jsonl"
        checkpoint = output.with_name(output.name + ".checkpoint")
        jsonl = (*options, "--output", str(output))
        _use(process, INTERRUPTED)
        killed = _killed_child(process, token, plan.kill_after, *jsonl)
        checkpointed = _site_units(checkpoint)
        at_kill = _answered(killed, checkpointed)
        _use(process, INTERRUPTED)
        killed = _killed_child(
            process,
            token,
            plan.resume_for,
            *jsonl,
            "--resume",
            until=lambda: _site_units(checkpoint) > checkpointed,  # noqa: B023 - called at once
        )
        resumed = _site_units(checkpoint)
        added = resumed - checkpointed
        at_resume_kill = _answered(killed, added)
        if added <= 0:
            raise BenchmarkError(
                f"the resume ran {plan.resume_for} s (and waited {_START_TIMEOUT} s more)"
                f" and checkpointed no site unit"
                f" ({checkpointed} before, {resumed} after)"
            )
        _use(process, UNHURRIED)
        final = _child("jsonl", process, token, *jsonl, "--resume")
        if not final["complete"]:
            raise BenchmarkError(
                f"the resume to the end is incomplete: {final['failures']} failure(s)"
                f" {final['messages']}"
            )
        records, failure_records = _records(output)
        if failure_records or records != expected:
            missing = sum((expected - records).values())
            extra = sum((records - expected).values())
            raise BenchmarkError(
                f"the resumed output differs from an uninterrupted crawl's: {missing} record(s)"
                f" missing, {extra} extra or repeated, {failure_records} failure record(s)"
            )
        runs.append(
            {
                "at_kill": at_kill,
                "resume": at_resume_kill,
                "resume_added_sites": added,
                "final_requests": final["requests"],
                "final_duration_s": final["duration_s"],
                "records": sum(records.values()),
            }
        )
        ctx.log(
            f"  interrupt {repetition + 1}/{ctx.repeat}: killed at {plan.kill_after} s with"
            f" {at_kill['answered_sites']}-{at_kill['answered_sites_at_most']} sites answered,"
            f" {checkpointed} checkpointed (loss {at_kill['loss']}-{at_kill['loss_at_most']});"
            f" the resume added {added} (loss {at_resume_kill['loss']}-"
            f"{at_resume_kill['loss_at_most']});"
            f" the resume to the end {final['requests']} requests, output identical"
        )
        output.unlink()
        checkpoint.unlink()

    def column(name: str, part: str | None = None) -> dict[str, Any]:
        return summarize([run[name] if part is None else run[name][part] for run in runs])

    return {
        "kill_after_s": plan.kill_after,
        "resume_for_s": plan.resume_for,
        "latency_s": INTERRUPT_LATENCY,
        "max_in_flight": INTERRUPT_IN_FLIGHT,
        "answered_sites": column("at_kill", "answered_sites"),
        "answered_sites_at_most": column("at_kill", "answered_sites_at_most"),
        "in_flight_at_kill": column("at_kill", "in_flight"),
        "checkpointed_sites": column("at_kill", "checkpointed_sites"),
        "loss_sites": column("at_kill", "loss"),
        "loss_at_most_sites": column("at_kill", "loss_at_most"),
        "resume_added_sites": column("resume_added_sites"),
        "resume_loss_sites": column("resume", "loss"),
        "resume_loss_at_most_sites": column("resume", "loss_at_most"),
        "final_requests": column("final_requests"),
        "final_duration_s": column("final_duration_s"),
        "records": sum(expected.values()),
        "runs": runs,
    }


def _runs(values: list[Any]) -> str:
    return f"max of {len(values)}" if len(values) > 1 else "1 run"


@register(
    "hostile",
    repeat=3,
    description="a child crawling a hostile sandbox: peak RSS and wall time under huge"
    " totals and oversized pages, time to RequestTimeout under a trickle, sites lost"
    " to a SIGKILL mid-crawl_to_jsonl",
)
def hostile(ctx: Context) -> Result:
    """Bounded memory and time against hostile answers; little lost to a kill."""
    plan = SMOKE if ctx.quick else FULL
    portfolio = plan.portfolio
    process = ctx.sandbox(portfolio)
    token = process.issue_token("default")
    memory = _memory(ctx, process, token)
    trickle = _trickle(ctx, process, token, plan)
    with tempfile.TemporaryDirectory(prefix="wiser-bench-") as tmp:
        interrupt = _interrupt(ctx, process, token, plan, Path(tmp))
    _use(process, UNHURRIED)

    huge, oversized = memory["huge_total"], memory["oversized_page"]
    single = trickle["one_attempt_s"]["runs"]
    losses = interrupt["loss_sites"]["runs"]
    retried = "; ".join(
        f"{label} (attempts={entry['retry']['attempts']},"
        f" timeout={entry['retry']['timeout']:g} s): {entry['duration_s']['median']:.2f} s,"
        f" {entry['attempts']} attempt(s), {entry['requests_sent']} request(s) sent"
        for label, entry in trickle["retried"].items()
    )
    targets = []
    for label, figures in (("huge_total", huge), ("oversized_page", oversized)):
        peaks, walls = figures["peak_rss_mb"]["runs"], figures["wall_s"]["runs"]
        targets += [
            target(
                f"{label}: peak RSS ({_runs(peaks)})",
                max(peaks),
                RSS_LIMIT_MB,
                limit=1.0,
                unit="MB",
            ),
            target(
                f"{label}: wall time ({_runs(walls)})",
                max(walls),
                CRAWL_TIMEOUT + 1.0,
                limit=1.0,
                unit="s",
            ),
        ]
    targets += [
        target(
            f"trickle: RequestTimeout after ({_runs(single)})",
            max(single),
            TRICKLE_LIMIT_S,
            limit=1.0,
            unit="s",
        ),
        target(
            f"interrupt_loss: sites lost ({_runs(losses)})",
            max(losses),
            LOSS_BOUND,
            limit=1.0,
            unit="sites",
        ),
    ]
    return result(
        "hostile",
        figures={
            "portfolio": {
                "sites": portfolio.locations * portfolio.sites_per_location,
                "devices": portfolio.locations
                * portfolio.sites_per_location
                * portfolio.devices_per_site,
                "expected_requests": crawl_requests(portfolio),
            },
            "faults": {
                "huge_total": _changed(HUGE_TOTALS),
                "oversized_page": _changed(OVERSIZED_PAGES),
                "trickle": _changed(TRICKLE),
                "interrupt_loss": _changed(INTERRUPTED),
                "resume_to_end_and_reference": _changed(UNHURRIED),
            },
            **memory,
            "trickle": trickle,
            "interrupt_loss": interrupt,
        },
        targets=targets,
        notes=[
            f"{describe(portfolio)}; baseline (imports + client setup)"
            f" {memory['baseline_rss_mb']['median']:.1f} MB; huge_total adds"
            f" {huge['over_baseline_mb']:.1f} MB in {huge['requests']['median']:.0f} requests"
            f" ({huge['failure_kinds']} failures over the runs), oversized_page"
            f" {oversized['over_baseline_mb']:.1f} MB in {oversized['requests']['median']:.0f}"
            " request(s): '*' covers /locations, whose page fails, so nothing below is read",
            f"trickle: timeout={plan.trickle_timeout:g} bounds each attempt as a whole"
            f" (a byte every {TRICKLE_INTERVAL:g} s never trips a per-read timeout); with"
            f" retries (1 run each): {retried}. The retry timeout bounds the whole call (an"
            " attempt is cut at it, and one begun with no time left sends nothing); at"
            " timeout=2 the default's 5 attempts and their backoff end long before its 60 s,"
            " at the default timeout (30 s) the retry timeout would end them",
            "interrupt_loss: sites answered at the kill come from the sandbox's counters read"
            " just before SIGKILL: rooms and devices requests begun (by route) and requests"
            " not yet answered (in_flight, any route); a site's two requests are queued"
            " together, so at least min(rooms, devices) - in_flight sites were answered in"
            " full and at most min(rooms, devices); loss = the former - site units in the"
            f" checkpoint (median {interrupt['loss_sites']['median']:g}; with the latter"
            f" {interrupt['loss_at_most_sites']['median']:g}); the resume killed after"
            f" {plan.resume_for:g} s added {interrupt['resume_added_sites']['median']:g} site"
            " units (median); the resume to the end (latency 0) gave the records of an"
            " uninterrupted crawl, each once",
        ],
    )
