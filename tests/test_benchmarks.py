"""``python -m benchmarks --quick`` runs every benchmark and writes complete JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from benchmarks._core import load

ROOT = Path(__file__).resolve().parent.parent
TARGET_KEYS = {"name", "value", "bound", "ratio", "limit", "unit", "stretch", "pass"}


@attrs.frozen
class QuickRun:
    """One ``python -m benchmarks --quick`` run: its report, its output and where it wrote."""

    report: dict[str, Any]
    completed: subprocess.CompletedProcess[str]
    output: Path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Every benchmark run once with --quick (about 45 s on 2 cores), shared by this module."""
    output = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return QuickRun(json.loads((output / "latest.json").read_text()), completed, output)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_run_reports_every_benchmark(quick_run: QuickRun) -> None:
    report, completed = quick_run.report, quick_run.completed
    assert len(list(quick_run.output.glob("*.json"))) == 2  # latest.json and a timestamped copy
    assert report["options"]["quick"] is True
    names = list(load())
    assert [entry["name"] for entry in report["benchmarks"]] == names
    for entry in report["benchmarks"]:
        assert entry["error"] is None, entry
        assert entry["figures"], entry["name"]
        assert entry["targets"], entry["name"]
        for target in entry["targets"]:
            assert set(target) == TARGET_KEYS, target
            assert target["bound"] > 0, target
            assert target["ratio"] == pytest.approx(target["value"] / target["bound"])
            assert target["pass"] is (target["ratio"] <= target["limit"])
    # The table names every benchmark; no secret reaches the output.
    for name in names:
        assert name in completed.stdout
    text = json.dumps(report) + completed.stdout + completed.stderr
    assert "sandbox-secret" not in text
    assert "access_token" not in text


VERSION_KEYS = {
    "python",
    "platform",
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
}
BREAKDOWN_KEYS = {
    "makespan_s",
    "bound_s",
    "excess_s",
    "excess_from_overhead_s",
    "excess_from_idle_s",
    "ramp_s",
    "tail_s",
    "mean_in_flight",
    "idle_slot_s",
    "ramp_idle_slot_s",
    "steady_idle_slot_s",
    "tail_idle_slot_s",
    "request_ms",
    "overhead_ms",
    "start_gap_ms",
}
STATS_KEYS = {"median", "min", "max", "runs"}
# What each benchmark's JSON must hold under --quick: figure keys, target count.
EXPECTED: dict[str, tuple[set[str], int]] = {
    "page": (
        {
            "us_per_request",
            "library_over_bare",
            "library_aiohttp_over_bare",
            "bare_aiohttp_over_bare",
            "library_aiohttp_over_bare_aiohttp",
            "floor_over_bare",
            "floor_aiohttp_over_bare",
            "library_over_floor",
            "library_aiohttp_over_floor_aiohttp",
            "pairwise_ratio",
            "sandbox_cpu_us_per_request",
        },
        2,
    ),
    "decode": ({"Location", "Address", "Site", "Room", "Device", "page_parse"}, 5),
    "cpu_per_request": (
        {
            "library_us_per_request",
            "walk_us_per_request",
            "bare_us_per_request",
            "jsonl_us_per_request",
            "jsonl_aiohttp_us_per_request",
            "crawl_aiohttp_us_per_request",
            "jsonl_over_bare",
            "jsonl_aiohttp_over_bare",
            "crawl_aiohttp_over_bare",
        },
        5,
    ),
    "makespan": (
        {
            "makespan_over_bound",
            "aiohttp_makespan_s",
            "aiohttp_over_bound",
            "pairwise_over_bare",
            "breakdown",
            "aiohttp_breakdown",
            "bare_breakdown",
        },
        6,
    ),
    "stream_rss": ({"peak_rss_mb", "aiohttp_peak_rss_mb", "aiohttp_baseline_rss_mb"}, 2),
}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(EXPECTED))
def test_quick_run_of_each_new_benchmark(name: str, quick_run: QuickRun) -> None:
    report = quick_run.report
    assert set(report["versions"]) == VERSION_KEYS
    assert all(isinstance(value, str) and value for value in report["versions"].values())
    (entry,) = [entry for entry in report["benchmarks"] if entry["name"] == name]
    assert entry["error"] is None, entry
    keys, targets = EXPECTED[name]
    assert keys <= set(entry["figures"]), keys - set(entry["figures"])
    assert len(entry["targets"]) == targets, [t["name"] for t in entry["targets"]]
    for target in entry["targets"]:
        assert set(target) == TARGET_KEYS, target
        assert target["pass"] is (target["ratio"] <= target["limit"])
    figures = entry["figures"]
    if name == "page":
        assert set(figures["us_per_request"]) == {
            "bare",
            "bare_aiohttp",
            "library",
            "library_aiohttp",
            "library_aiohttp_wrapped",
            "floor",
            "floor_aiohttp",
        }
    elif name == "decode":
        for model in ("Location", "Address", "Site", "Room", "Device"):
            assert set(figures[model]["us_per_item"]) == {"library", "fast", "cattrs", "floor"}
        assert set(figures["page_parse"]) >= {"json_ms", "orjson_ms", "body_bytes"}
    elif name == "makespan":
        for key in ("breakdown", "aiohttp_breakdown", "bare_breakdown"):
            assert set(figures[key]) >= BREAKDOWN_KEYS, key
            assert set(figures[key]["excess_s"]) == STATS_KEYS
            # The excess over the bound splits into the requests' overhead and idle slots.
            parts = figures[key]
            for excess, overhead, idle in zip(
                parts["excess_s"]["runs"],
                parts["excess_from_overhead_s"]["runs"],
                parts["excess_from_idle_s"]["runs"],
                strict=True,
            ):
                assert excess == pytest.approx(overhead + idle)
