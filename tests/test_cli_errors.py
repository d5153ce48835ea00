"""Every user error is one line on stderr and a nonzero exit code; Ctrl-C exits 130."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.cli_support import assert_one_line_error
from wiser_async.cli import main

ROOT = Path(__file__).parent.parent


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


DEVICE = {"type": "device", "account": "a", "siteId": "s", "data": {"id": "d1", "siteId": "s"}}


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (json.dumps(DEVICE) + "\n{not json\n", [":2: not a JSON record"]),
        (json.dumps(DEVICE) + "\n" + json.dumps({"type": "device", "account": "a"}) + "\n",
         ["record 2 is not a crawl record", "a device without data"]),
        (json.dumps(DEVICE) + "\n[1, 2]\n", ["record 2 is not a crawl record", "JSON list"]),
        ('{"accounts": [1, 2]}', ["not a crawl output"]),
        (json.dumps(DEVICE) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", ["nested too deeply"]),
    ],
    ids=["not-json", "no-data", "not-an-object", "wrong-document", "too-deep"],
)  # fmt: skip
def test_diff_of_a_malformed_snapshot_is_one_line_naming_the_file(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(DEVICE) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    for old, new in ((good, bad), (bad, good)):
        assert_one_line_error(run("diff", str(old), str(new)), str(bad), *fragments)


def test_diff_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("diff", str(tmp_path / "a"), str(tmp_path / "b")), "OLD")


def test_a_usage_error_is_one_line() -> None:
    assert_one_line_error(run("crawl"), "Missing option", "--output", "crawl --help")
    assert_one_line_error(run("crawl", "-o", "x", "--concurrency", "many"), "'--concurrency'")
    assert_one_line_error(run("nothing"), "No such command")


def test_sandbox_on_a_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("sandbox", "--port", str(port))
    assert_one_line_error(result, f"port {port}", "in use", "--port")


def test_tokens_delete_asks_first(tmp_path: Path) -> None:
    store = f"file:{tmp_path}"
    declined = run("tokens", "delete", "acme", "--store", store, stdin="n\n")
    assert declined.exit_code == 1
    assert "Delete the token of 'acme'? [y/N]: " in declined.stdout
    assert "Not deleted." in declined.stdout
    confirmed = run("tokens", "delete", "acme", "--store", store, stdin="y\n")
    assert confirmed.exit_code == 1  # asked, confirmed, and there was none
    assert "No token for 'acme'." in confirmed.stdout


@pytest.mark.slow
def test_ctrl_c_stops_the_sandbox_with_exit_code_130() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "wiser_async", "sandbox", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        stdout = process.stdout
        assert stdout is not None
        started = time.monotonic()
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()))
        reader.start()
        reader.join(60)
        assert first, process.stderr
        assert first[0].startswith("API:"), process.stderr
        patience = 10 * (time.monotonic() - started) + 10
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=patience)
    assert process.returncode == 130
    assert err.strip() == "Interrupted."
