"""The command line names the real cause: refused client credentials, an unfinished output,
a missing extra, an unreachable Redis, errors raised together; and hints only what can help."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import click
import pytest
import redis
from click.testing import CliRunner, Result

from tests.cli_support import assert_one_line_error
from tests.support import CLIENT_ID, CLIENT_SECRET, free_port, issue
from token_stores import FileTokenStore
from wiser_async._distributed import QueueKeys
from wiser_async.cli import main
from wiser_async.cli._errors import CliGroup, reported
from wiser_async.cli.distributed import REDIS_TIMEOUT
from wiser_async.errors import CrawlOutputError
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent
WRONG_SECRET = "rotated-away-secret-9f8e7d"
CLEAN = {name: None for name in os.environ if name.startswith("WISER_")}


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(
        main, list(args), env={**CLEAN, **(env or {})}, catch_exceptions=False
    )


def expired_tokens(sandbox: Sandbox, tokens: Path, *accounts: str) -> FileTokenStore:
    """A file store whose accounts' tokens expired: a crawl refreshes them first."""
    store = FileTokenStore(tokens)

    async def save() -> None:
        for account in accounts:
            await issue(sandbox, store, account, expired=True)

    anyio.run(save)
    return store


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def crawl_args(urls: SandboxUrls, tokens: Path, output: Path, *extra: str) -> list[str]:
    return [
        "crawl",
        "--store", f"file:{tokens}",
        "--client-id", CLIENT_ID,
        "--base-url", urls.api_base_url,
        "--token-url", urls.token_url,
        "--page-size", "5",
        "-o", str(output),
        *extra,
    ]  # fmt: skip


# -- a refused client secret ----------------------------------------------------------


@pytest.mark.parametrize("given_by", ["env", "file"])
def test_a_refused_client_secret_is_said_with_its_source_not_as_a_login_to_redo(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, given_by: str
) -> None:
    tokens = tmp_path / "tokens"
    # The crawl refreshes first, and the token endpoint refuses the client.
    store = expired_tokens(sandbox, tokens, "acme", "globex")
    before = {account: anyio.run(store.load, account) for account in ("acme", "globex")}
    output = tmp_path / "out.jsonl"
    if given_by == "env":
        secret_args: list[str] = []
        env: dict[str, str | None] = {"WISER_CLIENT_SECRET": WRONG_SECRET}
        source = "env WISER_CLIENT_SECRET"
    else:
        secret_file = tmp_path / "secret.txt"
        secret_file.write_text(WRONG_SECRET + "\n")
        secret_args, env = ["--client-secret-file", str(secret_file)], {}
        source = f"flag --client-secret-file {secret_file}"
    result = run(*crawl_args(urls, tokens, output, *secret_args), env=env)

    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert "refused the client credentials (invalid_client) for 2 account(s)" in line
    assert f"--token-url {urls.token_url}" in line
    assert f"the client secret (from {source})" in line
    assert "no login is needed" in line
    # Neither a login per customer nor a resume that meets the same refusal.
    assert "login" not in result.stdout
    assert "needs authorization" not in result.output
    assert "--resume" not in result.output
    assert "Unfinished: what is left cannot be read until the cause above is fixed." in (
        result.stdout
    )
    assert WRONG_SECRET not in result.output
    assert "Traceback" not in result.output
    # The grants are as they were: with the right secret, the crawl goes on.
    after = {account: anyio.run(store.load, account) for account in ("acme", "globex")}
    assert after == before
    right: dict[str, str | None] = {"WISER_CLIENT_SECRET": CLIENT_SECRET}
    fixed = run(*crawl_args(urls, tokens, output, "--resume"), env=right)
    assert fixed.exit_code == 0, fixed.output
    assert "Complete: nothing is missing." in fixed.stdout


def test_a_worker_and_merge_say_the_client_was_refused_not_that_logins_are_needed(
    redis_url: str, sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    expired_tokens(sandbox, tokens, "acme", "globex")
    queue = f"test-causes-{uuid.uuid4().hex[:12]}"
    common = ["--redis", redis_url, "--queue", queue]
    try:
        assert run("queue", "enqueue", *common, "-a", "acme", "-a", "globex").exit_code == 0
        worker = run(
            "queue", "worker", *common, "-d", str(tmp_path / "out"), "--worker", "w",
            "--store", f"file:{tokens}", "--client-id", CLIENT_ID,
            "--base-url", urls.api_base_url, "--token-url", urls.token_url,
            env={"WISER_CLIENT_SECRET": WRONG_SECRET},
        )  # fmt: skip
        assert worker.exit_code == 0, worker.output  # the queue is done; merge tells the rest
        [line] = error_lines(worker)  # said once, not once per account
        assert "refused the client credentials (invalid_client)" in line
        assert "(from env WISER_CLIENT_SECRET)" in line
        merged = run(
            "queue", "merge", *common, "-d", str(tmp_path / "out"), "-o", str(tmp_path / "m")
        )
        assert merged.exit_code == 1, merged.output
        assert "refused the workers' client credentials (invalid_client) for 2 account(s)" in (
            merged.stdout
        )
        assert "needs authorization" not in merged.output
        assert "login -a" not in merged.output
        assert WRONG_SECRET not in worker.output + merged.output
    finally:
        client = redis.Redis.from_url(redis_url)
        client.delete(*QueueKeys(queue).all)
        client.close()


# -- an unfinished output -------------------------------------------------------------


@pytest.fixture
def acme_tokens(sandbox: Sandbox, tmp_path: Path) -> Path:
    tokens = tmp_path / "tokens"
    anyio.run(issue, sandbox, FileTokenStore(tokens), "acme")
    return tokens


def test_a_crawl_over_an_unfinished_output_is_refused_without_resume_or_restart(
    sandbox: Sandbox, urls: SandboxUrls, acme_tokens: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    env: dict[str, str | None] = {"WISER_CLIENT_SECRET": CLIENT_SECRET}
    # A deadline shorter than any answer: the output is left unfinished.
    sandbox.faults = Faults(latency=0.2)
    cut = run(*crawl_args(urls, acme_tokens, output, "--timeout", "0.05"), env=env)
    assert cut.exit_code == 1, cut.output
    sandbox.faults = Faults()
    written = output.read_bytes(), output.with_name(output.name + ".checkpoint").read_bytes()

    again = run(*crawl_args(urls, acme_tokens, output), env=env)
    assert_one_line_error(again, "unfinished crawl", "--resume", "--restart")
    assert (output.read_bytes(), output.with_name(output.name + ".checkpoint").read_bytes()) == (
        written
    )

    both = run(*crawl_args(urls, acme_tokens, output, "--resume", "--restart"), env=env)
    assert_one_line_error(both, "--resume", "--restart", "give one")

    restarted = run(*crawl_args(urls, acme_tokens, output, "--restart"), env=env)
    assert restarted.exit_code == 0, restarted.output
    assert "Complete: nothing is missing." in restarted.stdout
    # A finished output may be crawled again from scratch without a flag.
    again = run(*crawl_args(urls, acme_tokens, output), env=env)
    assert again.exit_code == 0, again.output


# -- a missing extra -------------------------------------------------------------------

HIDE = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if not installed: importing it fails
sys.argv = ["wiser-async", *sys.argv[2:]]
{entry}
"""
CONSOLE_SCRIPT = "from wiser_async.cli import main; main()"
DASH_M = "import runpy; runpy.run_module('wiser_async', run_name='__main__')"


@pytest.mark.parametrize(
    ("hidden", "args", "extra"),
    [
        ("click", ["--help"], "cli"),
        ("rich", ["crawl", "--help"], "cli"),
        ("uvicorn", ["sandbox", "--port", "0"], "sandbox"),
        ("redis", ["queue", "enqueue", "--redis", "redis://x", "--queue", "q", "-a", "a"],
         "redis"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("entry", [CONSOLE_SCRIPT, DASH_M], ids=["wiser-async", "python-m"])
def test_a_missing_extra_is_one_line_naming_what_to_install(
    hidden: str, args: list[str], extra: str, entry: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", HIDE.format(entry=entry), hidden, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ")
    assert f"pip install 'wiser-async[{extra}]'" in lines[0]
    assert "Traceback" not in completed.stderr


# -- an unreachable Redis ---------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a Redis that hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.timeout(60)
def test_an_unreachable_queue_redis_is_one_line_with_its_cause_in_time(
    silent_server: int,
) -> None:
    def enqueue(url: str) -> tuple[Result, float]:
        started = time.monotonic()
        result = run("queue", "enqueue", "--redis", url, "--queue", "q", "-a", "acme")
        return result, time.monotonic() - started

    refused, quick = enqueue(f"redis://:pw-1@127.0.0.1:{free_port()}/0?password=pw-2")
    line = assert_one_line_error(refused, "connection refused", "redis://***@127.0.0.1:")
    assert "password=***" in line
    assert "pw-1" not in line
    assert "pw-2" not in line
    unknown, _ = enqueue("redis://no-such-host.invalid:6379/0")
    assert_one_line_error(
        unknown, "--redis redis://no-such-host.invalid:6379/0", "does not resolve"
    )
    hanging, waited = enqueue(f"redis://127.0.0.1:{silent_server}/0")
    assert_one_line_error(hanging, f"timed out after {REDIS_TIMEOUT:g} s")
    # Within the timeout, and what a refused connection takes on this machine besides.
    assert waited < REDIS_TIMEOUT * 1.5 + 10 * quick


# -- errors raised together --------------------------------------------------------------


@click.group(cls=CliGroup)
def together() -> None:
    """Commands whose work fails in two places at once, as two slots of a worker do."""


@together.command()
def reported_slots() -> None:
    with reported(restart="--restart"):
        raise ExceptionGroup(
            "slots",
            [
                CrawlOutputError("out/w/acme.jsonl has no checkpoint to resume from"),
                CrawlOutputError("out/w/globex.jsonl has no checkpoint to resume from"),
            ],
        )


@together.command()
def bare_slots() -> None:
    raise ExceptionGroup("slots", [OSError(28, "No space left on device", "out/w/a.jsonl")] * 2)


@together.command()
def interrupted_slots() -> None:
    raise BaseExceptionGroup("slots", [KeyboardInterrupt(), CrawlOutputError("x")])


def test_errors_raised_together_are_one_line_and_exit_2() -> None:
    def invoke(name: str) -> Result:
        return CliRunner().invoke(together, [name.replace("_", "-")], catch_exceptions=False)

    line = assert_one_line_error(invoke("reported_slots"), "acme.jsonl", "globex.jsonl")
    assert "(and at the same time: " in line
    # The same error twice is said once.
    assert_one_line_error(invoke("bare_slots"), "out/w/a.jsonl: No space left on device")
    assert invoke("bare_slots").stderr.count("No space") == 1
    stopped = invoke("interrupted_slots")
    assert stopped.exit_code == 130
    assert stopped.stderr.strip() == "Interrupted."
