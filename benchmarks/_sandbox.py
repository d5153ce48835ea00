"""Sandbox processes shared by the benchmarks of a run, and what a portfolio implies."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import attrs

from wiser_async import CrawlStats, Failure
from wiser_async.sandbox import Faults, PortfolioSpec, SandboxProcess

from ._core import BenchmarkError

__all__ = [
    "DEPTH",
    "PAGE_SIZE",
    "Sandboxes",
    "check_crawl",
    "cpu_seconds",
    "crawl_requests",
    "describe",
    "devices_of",
]

PAGE_SIZE = 500
"""The crawl's default page size: the API's largest."""
DEPTH = 3
"""Round trips one after the other in a crawl: locations, then sites, then rooms and devices."""


class Sandboxes:
    """Sandbox processes, one per portfolio, shared by every benchmark of a run.

    A process starts on first use and is reused by every repetition and every
    benchmark that asks for the same portfolio; all stop when the `ExitStack`
    given closes (also on Ctrl-C: `SandboxProcess` terminates its child on
    exit, and the child exits by itself if this process dies).
    """

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._processes: dict[PortfolioSpec, SandboxProcess] = {}

    def get(
        self, portfolio: PortfolioSpec, *, latency: float = 0.0, rate_limit: float | None = None
    ) -> SandboxProcess:
        """The process serving ``portfolio``, its faults set to exactly these.

        Every other fault is switched off and the counters are zeroed, so
        whatever a previous benchmark set does not leak into the next.
        """
        process = self._processes.get(portfolio)
        if process is None:
            print(f"starting a sandbox process for {describe(portfolio)}", file=sys.stderr)
            process = self._stack.enter_context(SandboxProcess(**attrs.asdict(portfolio)))
            self._processes[portfolio] = process
        process.set_faults(**Faults(latency=latency, rate_limit=rate_limit).to_json())
        process.reset_stats()
        return process


def describe(portfolio: PortfolioSpec) -> str:
    """A portfolio's shape in a few words."""
    sites = portfolio.locations * portfolio.sites_per_location
    rooms, devices = sites * portfolio.rooms_per_site, sites * portfolio.devices_per_site
    return f"{portfolio.locations} locations, {sites:,} sites, {rooms:,} rooms, {devices:,} devices"


def devices_of(portfolio: PortfolioSpec) -> int:
    """How many devices the portfolio holds."""
    return portfolio.locations * portfolio.sites_per_location * portfolio.devices_per_site


def crawl_requests(portfolio: PortfolioSpec, page_size: int = PAGE_SIZE) -> int:
    """The requests a complete crawl by site must make (an empty collection costs one)."""

    def pages(items: int) -> int:
        return max(1, -(-items // page_size))

    sites = portfolio.locations * portfolio.sites_per_location
    return (
        pages(portfolio.locations)
        + portfolio.locations * pages(portfolio.sites_per_location)
        + sites * (pages(portfolio.rooms_per_site) + pages(portfolio.devices_per_site))
    )


def check_crawl(portfolio: PortfolioSpec, stats: CrawlStats, failures: Sequence[Failure]) -> None:
    """Raise `BenchmarkError` unless the crawl read the whole portfolio.

    A crawl that stopped early would look fast: its figures must not count.
    """
    if failures:
        first = failures[0]
        raise BenchmarkError(
            f"the crawl missed {len(failures)} part(s); first: {first.kind}"
            f" {first.resource}: {first.message}"
        )
    expected = devices_of(portfolio)
    if stats.devices != expected:
        raise BenchmarkError(f"the crawl found {stats.devices:,} devices, not {expected:,}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process so far; None where /proc is missing.

    The sandbox's CPU tells which side of a run was the bottleneck.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
