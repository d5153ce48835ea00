"""`stream_rss`: peak memory of a streaming JSONL crawl of a million devices.

The client runs in a child process (``benchmarks._rss_child``) so that its
peak RSS is its own, not this process's; the baseline is the same child
doing only the imports and the client setup, measured in the same run.
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

RSS_LIMIT_MB = 200.0
_ROOT = Path(__file__).resolve().parent.parent
# Far above the expected minute: a stuck child fails the benchmark, it does not hang it.
_CHILD_TIMEOUT = 900.0
_DEVICE_LINE = b'{"type":"device",'


def _child(
    mode: str, process: SandboxProcess, token: dict[str, Any], output: Path
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
            f"the {mode} child exited with {completed.returncode}: {completed.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _device_lines(output: Path) -> int:
    with output.open("rb") as file:
        return sum(1 for line in file if line.startswith(_DEVICE_LINE))


@register(
    "stream_rss",
    repeat=2,
    description="crawl_to_jsonl() of 1,000,000 devices in a child process:"
    " its peak RSS vs 200 MB, and vs the same child without the crawl",
)
def stream_rss(ctx: Context) -> Result:
    """Peak RSS of a streaming walk to JSONL, which must not grow with the portfolio."""
    portfolio = QUICK if ctx.quick else STREAM
    process = ctx.sandbox(portfolio, latency=0.0)
    token = process.issue_token("default")
    peaks: dict[str, list[float]] = {"setup": [], "crawl": []}
    maxrss: dict[str, list[float]] = {"setup": [], "crawl": []}
    durations: list[float] = []
    written: list[int] = []
    sizes: list[int] = []
    requests: list[int] = []
    with tempfile.TemporaryDirectory(prefix="wiser-bench-") as tmp:
        output = Path(tmp) / "crawl.jsonl"
        for repetition, mode in alternate(ctx.repeat, "setup", "crawl"):
            process.reset_stats()
            report = _child(mode, process, token, output)
            peaks[mode].append(report["peak_rss_kb"] * 1024 / 1e6)
            maxrss[mode].append(report["ru_maxrss_kb"] * 1024 / 1e6)
            line = f"  {mode} {repetition + 1}/{ctx.repeat}: peak RSS {peaks[mode][-1]:.1f} MB"
            if mode == "crawl":
                if report["failures"]:
                    raise BenchmarkError(
                        f"the crawl missed {report['failures']} part(s);"
                        f" first: {report['first_failure']}"
                    )
                devices = _device_lines(output)
                if devices != report["devices"]:
                    raise BenchmarkError(
                        f"the crawl found {report['devices']:,} devices but wrote {devices:,}"
                    )
                written.append(devices)
                sizes.append(output.stat().st_size)
                durations.append(report["duration_s"])
                requests.append(process.stats().requests)
                line += f", {devices:,} devices, {sizes[-1] / 1e6:.0f} MB, {durations[-1]:.1f} s"
                # The next repetition starts afresh; the directory goes at the end.
                output.unlink()
            ctx.log(line)
    expected = devices_of(portfolio)
    if any(devices != expected for devices in written):
        raise BenchmarkError(f"devices written: {written}, expected {expected:,} each")
    crawl, setup = peaks["crawl"], peaks["setup"]
    runs = f"max of {len(crawl)}" if len(crawl) > 1 else "1 run"
    return result(
        "stream_rss",
        figures={
            "portfolio": {
                "sites": portfolio.locations * portfolio.sites_per_location,
                "devices": expected,
                "expected_requests": crawl_requests(portfolio),
            },
            "peak_rss_mb": summarize(crawl),
            "baseline_rss_mb": summarize(setup),
            "crawl_over_baseline": statistics.median(crawl) / statistics.median(setup),
            "crawl_minus_baseline_mb": statistics.median(crawl) - statistics.median(setup),
            "devices_written": summarize(written),
            "file_mb": summarize([size / 1e6 for size in sizes]),
            "duration_s": summarize(durations),
            "devices_per_s": summarize([d / t for d, t in zip(written, durations, strict=True)]),
            "requests": summarize(requests),
            # Not the child's own on Linux (it keeps this process's high-water
            # mark across exec): kept to show why peak_rss_mb is read from VmHWM.
            "ru_maxrss_mb": {mode: summarize(values) for mode, values in maxrss.items()},
        },
        targets=[target(f"peak RSS ({runs})", max(crawl), RSS_LIMIT_MB, limit=1.0, unit="MB")],
        notes=[
            f"{describe(portfolio)}; baseline (imports + client setup, no crawl)"
            f" {statistics.median(setup):.1f} MB; crawl adds"
            f" {statistics.median(crawl) - statistics.median(setup):.1f} MB;"
            f" {statistics.median(sizes) / 1e6:.0f} MB of JSONL in"
            f" {statistics.median(durations):.1f} s (output deleted)",
        ],
    )
