"""The registry of benchmarks, what they return, and the statistics they share.

A benchmark is a function taking a `Context` and returning a `Result`::

    @register("makespan", repeat=3, description="...")
    def makespan(ctx: Context) -> Result:
        ...
        return result(
            "makespan",
            figures={"makespan_s": summarize(times)},
            targets=[target("makespan", median(times), bound, limit=1.1, unit="s")],
        )

Every target compares a measured value with a bound or a baseline measured in
the same run: ``ratio = value / bound`` and it passes when ``ratio <= limit``.
"""

from __future__ import annotations

import importlib
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from wiser_async.sandbox import PortfolioSpec, SandboxProcess

    from ._sandbox import Sandboxes

__all__ = [
    "MODULES",
    "REGISTRY",
    "Benchmark",
    "BenchmarkError",
    "Context",
    "Result",
    "Target",
    "alternate",
    "load",
    "register",
    "result",
    "summarize",
    "target",
]

# "pass" is a keyword, hence the functional form.
Target = TypedDict(
    "Target",
    {
        "name": str,
        "value": float,
        "bound": float,
        "ratio": float,
        "limit": float,
        "unit": str,
        "stretch": bool,
        "pass": bool,
    },
)
"""One goal: ``value`` against ``bound`` (or a baseline), passing when ``ratio <= limit``."""


class Result(TypedDict):
    """What a benchmark returns: named figures, targets and free-text notes."""

    name: str
    figures: dict[str, Any]
    targets: list[Target]
    notes: list[str]


class BenchmarkError(Exception):
    """The workload did not run as intended (an incomplete crawl, a child that failed).

    Its figures would mean nothing, so the benchmark is reported as an error
    rather than as a missed target.
    """


def target(
    name: str,
    value: float,
    bound: float,
    *,
    limit: float,
    unit: str,
    stretch: bool = False,
) -> Target:
    """A target: passes when ``value / bound <= limit``.

    Args:
        name: What is compared, as shown in the table.
        value: The measured figure (a median over repetitions, usually).
        bound: The theoretical bound, the fixed budget, or a baseline measured
            in the same run.
        limit: The largest acceptable ratio.
        unit: The unit of ``value`` and ``bound`` (``s``, ``MB``, ``us``, ...).
        stretch: A goal beyond the required one: missing it is reported, not failed.

    Raises:
        ValueError: ``bound`` is not positive (the ratio would mean nothing).
    """
    if not bound > 0:
        raise ValueError(f"the bound of {name!r} must be positive, got {bound!r}")
    ratio = value / bound
    return {
        "name": name,
        "value": value,
        "bound": bound,
        "ratio": ratio,
        "limit": limit,
        "unit": unit,
        "stretch": stretch,
        "pass": ratio <= limit,
    }


def result(
    name: str,
    *,
    figures: dict[str, Any],
    targets: list[Target],
    notes: Sequence[str] = (),
) -> Result:
    """Assemble a benchmark's result."""
    return {"name": name, "figures": figures, "targets": targets, "notes": list(notes)}


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every run, for a figure measured several times."""
    if not values:
        raise ValueError("nothing to summarize")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def alternate(repetitions: int, *labels: str) -> Iterator[tuple[int, str]]:
    """Interleave A/B runs as ABBA ABBA...: ``(repetition, label)`` pairs.

    Reversing the order every other repetition cancels a linear drift of the
    machine (another job warming up or winding down) between A and B.
    """
    for repetition in range(repetitions):
        order = labels if repetition % 2 == 0 else tuple(reversed(labels))
        for label in order:
            yield repetition, label


@dataclass(frozen=True)
class Context:
    """What a benchmark gets from the runner.

    Attributes:
        quick: Tiny portfolios: a smoke test, whose figures mean little.
        repeat: How many times to measure (``--repeat``, else 1 under
            ``--quick``, else the benchmark's default).
        sandboxes: The run's sandbox processes.
    """

    quick: bool
    repeat: int
    sandboxes: Sandboxes

    def sandbox(
        self, portfolio: PortfolioSpec, *, latency: float = 0.0, rate_limit: float | None = None
    ) -> SandboxProcess:
        """See `Sandboxes.get`."""
        return self.sandboxes.get(portfolio, latency=latency, rate_limit=rate_limit)

    def log(self, message: str) -> None:
        """Progress, on stderr (the table goes to stdout)."""
        print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark."""

    name: str
    function: Callable[[Context], Result]
    repeat: int
    description: str


REGISTRY: dict[str, Benchmark] = {}
"""Registered benchmarks by name, in registration (and run) order."""

MODULES = (
    "benchmarks.crawl",
    "benchmarks.page",
    "benchmarks.decode",
    "benchmarks.stream",
    "benchmarks.export",
    "benchmarks.tokens",
    "benchmarks.hostile",
    "benchmarks.shared_rate",
    "benchmarks.construction",
    "benchmarks.startup",
    "benchmarks.distributed",
    "benchmarks.pending",
)
"""The modules whose import registers benchmarks, in run order: add new ones here."""


def load() -> dict[str, Benchmark]:
    """Import every benchmark module and return the registry."""
    for module in MODULES:
        importlib.import_module(module)
    return REGISTRY


def register(
    name: str, *, repeat: int, description: str
) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register a benchmark under ``name``.

    Args:
        name: What ``--only`` selects and the JSON calls it.
        repeat: Repetitions by default (``--repeat`` overrides it; ``--quick`` makes it 1).
        description: One line for ``--list`` and the JSON.
    """

    def decorate(function: Callable[[Context], Result]) -> Callable[[Context], Result]:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(name, function, repeat, description)
        return function

    return decorate
