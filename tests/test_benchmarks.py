"""``python -m benchmarks --quick`` runs every benchmark and writes complete JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._core import load

ROOT = Path(__file__).resolve().parent.parent
TARGET_KEYS = {"name", "value", "bound", "ratio", "limit", "unit", "stretch", "pass"}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_reports_every_benchmark(tmp_path: Path) -> None:
    # About 10 s on 2 cores; the bound leaves room for a loaded machine.
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    report = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("*.json"))) == 2  # latest.json and its timestamped copy
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
