"""``python -m benchmarks``: run the registered benchmarks, write JSON, print a table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from ._core import Context, Result, load
from ._sandbox import Sandboxes

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
SCHEMA = 1


REGISTRY = load()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of wiser-async against the sandbox in another process.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(REGISTRY),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(REGISTRY)}",
    )
    parser.add_argument(
        "--repeat", type=int, metavar="N", help="repetitions of each benchmark (default: its own)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny portfolios and one repetition: a smoke test, not a measurement",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="where latest.json and a timestamped copy go (default: benchmarks/results)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def _git() -> dict[str, Any] | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


# Distributions whose versions the figures depend on, as pip names them.
VERSIONED = (
    "wiser-async",
    "httpx2",
    "httpcore2",
    "aiohttp",
    "httpx-aiohttp",
    "orjson",
    "anyio",
    "attrs",
    "cattrs",
    "uvloop",
)
NOT_INSTALLED = "not installed"


def _versions() -> dict[str, str]:
    """Python, the platform, and the installed version of each of `VERSIONED`."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found


def _machine() -> dict[str, Any]:
    try:
        library = version("wiser-async")
    except PackageNotFoundError:
        library = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "wiser_async": library,
    }


def _run_one(name: str, ctx: Context) -> dict[str, Any]:
    benchmark = REGISTRY[name]
    ctx.log(f"== {name} ({ctx.repeat} repetition(s)): {benchmark.description}")
    started = time.perf_counter()
    error: str | None = None
    try:
        outcome: Result = benchmark.function(ctx)
    # One broken benchmark must not lose the others' figures; it is reported
    # as an error (and the exit status says so).
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        outcome = {"name": name, "figures": {}, "targets": [], "notes": []}
    required = [t for t in outcome["targets"] if not t["stretch"]]
    return {
        "name": name,
        "description": benchmark.description,
        "repeat": ctx.repeat,
        "quick": ctx.quick,
        "duration_s": time.perf_counter() - started,
        "error": error,
        "pass": error is None and all(t["pass"] for t in required),
        "figures": outcome["figures"],
        "targets": outcome["targets"],
        "notes": outcome["notes"],
    }


def _format(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(results: Sequence[dict[str, Any]]) -> str:
    rows = [("benchmark", "target", "value", "bound", "ratio", "limit", "pass")]
    for entry in results:
        if entry["error"] is not None:
            rows.append((entry["name"], "ERROR", "", "", "", "", "no"))
        for t in entry["targets"]:
            verdict = "yes" if t["pass"] else ("no (stretch)" if t["stretch"] else "NO")
            rows.append(
                (
                    entry["name"],
                    t["name"],
                    f"{_format(t['value'])} {t['unit']}".rstrip(),
                    f"{_format(t['bound'])} {t['unit']}".rstrip(),
                    f"{t['ratio']:.3f}",
                    f"<= {t['limit']:g}",
                    verdict,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 4}
    lines = [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for entry in results:
        for note in entry["notes"]:
            lines.append(f"{entry['name']}: {note}")
        if entry["error"] is not None:
            lines.append(f"{entry['name']}: ERROR {entry['error']}")
    return "\n".join(lines)


def _write(output: Path, report: dict[str, Any], stamp: str) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    (output / f"{stamp}.json").write_text(text)
    latest = output / "latest.json"
    latest.write_text(text)
    return latest


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so the sandbox processes are stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 if none failed to run (a missed target is still 0)."""
    args = _parser().parse_args(argv)
    if args.list:
        for benchmark in REGISTRY.values():
            print(f"{benchmark.name:16} {benchmark.repeat} x  {benchmark.description}")
        return 0
    if args.repeat is not None and args.repeat < 1:
        _parser().error("--repeat must be at least 1")
    signal.signal(signal.SIGTERM, _on_sigterm)
    names = list(dict.fromkeys(args.only)) if args.only else list(REGISTRY)
    started = datetime.now(UTC)
    machine = _machine()
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        sandboxes = Sandboxes(stack)
        for name in names:
            repeat = args.repeat or (1 if args.quick else REGISTRY[name].repeat)
            results.append(_run_one(name, Context(args.quick, repeat, sandboxes)))
    finished = datetime.now(UTC)
    machine["load_average_after"] = list(os.getloadavg())
    report = {
        "schema": SCHEMA,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "duration_s": (finished - started).total_seconds(),
        "options": {"only": args.only, "repeat": args.repeat, "quick": args.quick},
        "versions": _versions(),
        "machine": machine,
        "git": _git(),
        "pass": all(entry["pass"] for entry in results),
        "benchmarks": results,
    }
    latest = _write(args.output, report, started.strftime("%Y%m%dT%H%M%SZ"))
    if args.quick:
        print("--quick: tiny portfolios, one run each; a smoke test, the targets mean nothing\n")
    print(_table(results))
    print(f"\nwritten to {latest}")
    return 1 if any(entry["error"] is not None for entry in results) else 0
