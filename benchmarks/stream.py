"""`stream_rss`: peak memory of a streaming JSONL crawl of a million devices.

The client runs in a child process (``benchmarks._rss_child``) so that its
peak RSS is its own, not this process's; the baseline is the same child
doing only the imports and the client setup, measured in the same run. The
crawl runs on each HTTP stack: httpx2 (the library's default) and
`wiser_async.transports.AiohttpTransport`, each with its own baseline.
MB are 10**6 bytes throughout.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from wiser_async.sandbox import PortfolioSpec, SandboxProcess

from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._sandbox import crawl_requests, describe, devices_of

__all__ = ["QUICK", "STREAM", "stream_rss"]

STREAM = PortfolioSpec(locations=20, sites_per_location=100, rooms_per_site=2, devices_per_site=500)
"""1,000,000 devices over 2,000 sites, one 500-device page per site."""
QUICK = PortfolioSpec(locations=2, sites_per_location=5, rooms_per_site=2, devices_per_site=100)
"""For ``--quick``: 1,000 devices."""

# Issue 22's bound, on either stack.
RSS_LIMIT_MB = 60.0
STACKS = ("httpx2", "aiohttp")
_ROOT = Path(__file__).resolve().parent.parent
# Far above the expected minute: a stuck child fails the benchmark, it does not hang it.
_CHILD_TIMEOUT = 900.0
_DEVICE_LINE = b'{"type":"device",'


def _child(
    mode: str, stack: str, process: SandboxProcess, token: dict[str, Any], output: Path
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks._rss_child",
        mode,
        "--api-base-url",
        process.urls.api_base_url,
        "--token-url",
        process.urls.token_url,
        "--output",
        str(output),
        "--transport",
        stack,
    ]
    # subprocess.run kills the child if this process is interrupted.
    completed = subprocess.run(
        argv,
        input=json.dumps(token),
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        cwd=_ROOT,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(
            f"the {mode} child on {stack} exited with {completed.returncode}:"
            f" {completed.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _device_lines(output: Path) -> int:
    with output.open("rb") as file:
        return sum(1 for line in file if line.startswith(_DEVICE_LINE))


def _label(mode: str, stack: str) -> str:
    return mode if stack == "httpx2" else f"{mode}_{stack}"


@register(
    "stream_rss",
    repeat=2,
    description="crawl_to_jsonl() of 1,000,000 devices in a child process, on httpx2 and on"
    " aiohttp: its peak RSS vs 60 MB, and vs the same child without the crawl",
)
def stream_rss(ctx: Context) -> Result:
    """Peak RSS of a streaming walk to JSONL, which must not grow with the portfolio."""
    portfolio = QUICK if ctx.quick else STREAM
    process = ctx.sandbox(portfolio, latency=0.0)
    token = process.issue_token("default")
    labels = [_label(mode, stack) for stack in STACKS for mode in ("setup", "crawl")]
    peaks: dict[str, list[float]] = {label: [] for label in labels}
    maxrss: dict[str, list[float]] = {label: [] for label in labels}
    durations: dict[str, list[float]] = {stack: [] for stack in STACKS}
    loaded: dict[str, list[str]] = {}
    written: list[int] = []
    sizes: list[int] = []
    requests: list[int] = []
    with tempfile.TemporaryDirectory(prefix="wiser-bench-") as tmp:
        output = Path(tmp) / "crawl.jsonl"
        for repetition, label in alternate(ctx.repeat, *labels):
            mode, _, rest = label.partition("_")
            stack = rest or "httpx2"
            process.reset_stats()
            report = _child(mode, stack, process, token, output)
            peaks[label].append(report["peak_rss_kb"] * 1024 / 1e6)
            maxrss[label].append(report["ru_maxrss_kb"] * 1024 / 1e6)
            loaded[label] = report["loaded"]
            line = f"  {label} {repetition + 1}/{ctx.repeat}: peak RSS {peaks[label][-1]:.1f} MB"
            if mode == "crawl":
                if report["failures"]:
                    raise BenchmarkError(
                        f"the crawl on {stack} missed {report['failures']} part(s);"
                        f" first: {report['first_failure']}"
                    )
                devices = _device_lines(output)
                if devices != report["devices"]:
                    raise BenchmarkError(
                        f"the crawl on {stack} found {report['devices']:,} devices"
                        f" but wrote {devices:,}"
                    )
                written.append(devices)
                sizes.append(output.stat().st_size)
                durations[stack].append(report["duration_s"])
                requests.append(process.stats().requests)
                line += (
                    f", {devices:,} devices, {sizes[-1] / 1e6:.0f} MB, {report['duration_s']:.1f} s"
                )
                # The next repetition starts afresh; the directory goes at the end.
                output.unlink()
            ctx.log(line)
    expected = devices_of(portfolio)
    if any(devices != expected for devices in written):
        raise BenchmarkError(f"devices written: {written}, expected {expected:,} each")
    runs = f"max of {ctx.repeat}" if ctx.repeat > 1 else "1 run"

    def added(stack: str) -> float:
        crawl, setup = peaks[_label("crawl", stack)], peaks[_label("setup", stack)]
        return statistics.median(crawl) - statistics.median(setup)

    every_duration = [d for values in durations.values() for d in values]
    return result(
        "stream_rss",
        figures={
            "portfolio": {
                "sites": portfolio.locations * portfolio.sites_per_location,
                "devices": expected,
                "expected_requests": crawl_requests(portfolio),
            },
            "peak_rss_mb": summarize(peaks["crawl"]),
            "baseline_rss_mb": summarize(peaks["setup"]),
            "aiohttp_peak_rss_mb": summarize(peaks["crawl_aiohttp"]),
            "aiohttp_baseline_rss_mb": summarize(peaks["setup_aiohttp"]),
            "crawl_over_baseline": statistics.median(peaks["crawl"])
            / statistics.median(peaks["setup"]),
            "crawl_minus_baseline_mb": added("httpx2"),
            "aiohttp_crawl_minus_baseline_mb": added("aiohttp"),
            "devices_written": summarize(written),
            "file_mb": summarize([size / 1e6 for size in sizes]),
            "duration_s": summarize(durations["httpx2"]),
            "aiohttp_duration_s": summarize(durations["aiohttp"]),
            "devices_per_s": summarize([expected / t for t in every_duration]),
            "requests": summarize(requests),
            # Not the child's own on Linux (it keeps this process's high-water
            # mark across exec): kept to show why peak_rss_mb is read from VmHWM.
            "ru_maxrss_mb": {label: summarize(values) for label, values in maxrss.items()},
            # Which HTTP stacks' modules each child held (its last run).
            "modules_loaded": loaded,
        },
        targets=[
            target(
                f"peak RSS on httpx2 ({runs})",
                max(peaks["crawl"]),
                RSS_LIMIT_MB,
                limit=1.0,
                unit="MB",
            ),
            target(
                f"peak RSS on aiohttp ({runs})",
                max(peaks["crawl_aiohttp"]),
                RSS_LIMIT_MB,
                limit=1.0,
                unit="MB",
            ),
        ],
        notes=[
            f"{describe(portfolio)}; baseline (imports + client setup, no crawl)"
            f" {statistics.median(peaks['setup']):.1f} MB on httpx2,"
            f" {statistics.median(peaks['setup_aiohttp']):.1f} MB on aiohttp; the crawl adds"
            f" {added('httpx2'):.1f} MB and {added('aiohttp'):.1f} MB;"
            f" {statistics.median(sizes) / 1e6:.0f} MB of JSONL in"
            f" {statistics.median(durations['httpx2']):.1f} s on httpx2,"
            f" {statistics.median(durations['aiohttp']):.1f} s on aiohttp (output deleted)",
        ],
    )
