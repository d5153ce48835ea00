"""The ``wiser-async`` command line."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from click.testing import CliRunner, Result

from tests.support import CLIENT_SECRET, free_port, issue
from token_stores import Encryption, FileTokenStore
from wiser_async import read_snapshot
from wiser_async.cli import main
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent
SMALL = ["--locations", "2", "--sites-per-location", "3", "--devices-per-site", "10"]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def keys_of(path: Path) -> Counter[tuple[str, str, str]]:
    return Counter(
        (record.get("account", ""), record["type"], record["data"]["id"])
        for record in read_snapshot(path)
        if record["type"] != "failure"
    )


def test_demo_prints_the_flow_and_a_summary() -> None:
    result = run("demo")
    assert result.exit_code == 0
    for text in ("PKCE", "code exchanged", "Portfolio", "devices", "144", "Requests:"):
        assert text in result.output
    assert "sandbox-secret" not in result.output.replace("secret sandbox-secret", "")


def test_demo_at_debug_level_logs_no_code_token_or_secret() -> None:
    # A process of its own: logging is configured by the command, as a user runs it.
    completed = subprocess.run(
        [sys.executable, "-m", "wiser_async", "-vv", "demo", "--locations", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    logged = completed.stderr
    assert "DEBUG httpcore2" in logged  # debug logging was on, response headers included
    assert "code=***" in logged  # the redirect carrying the code was logged, masked
    assert re.search(r"code=(?!\*\*\*|\.\.\.)", logged) is None
    assert re.search(r"(access|refresh)_token\W+(?!\*\*\*)[A-Za-z0-9_-]{20,}", logged) is None
    assert "sandbox-secret" not in logged


def test_crawl_of_a_sandbox_to_jsonl_is_complete(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    result = run("crawl", "--sandbox", *SMALL, "-a", "alpha", "-a", "beta", "-o", str(output))
    assert result.exit_code == 0, result.output
    assert "Complete: nothing is missing." in result.output
    keys = keys_of(output)
    assert sum(1 for key in keys if key[1] == "device") == 2 * 2 * 3 * 10
    assert {key[0] for key in keys} == {"alpha", "beta"}
    assert result.output.count("crawling") == 0  # no progress line when not on a terminal


def test_crawl_to_json_writes_one_document(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    result = run("crawl", "--sandbox", *SMALL, "-o", str(output))
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert document["stats"]["devices"] == 60
    assert run("crawl", "--sandbox", "-o", str(output), "--resume").exit_code == 2


def test_crawl_reads_tokens_from_a_file_store_and_lists_failures(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    key = Encryption.generate_key()
    store = FileTokenStore(tmp_path / "tokens", encryption=Encryption([key]))
    anyio.run(issue, sandbox, store, "acme")
    portfolio = sandbox.portfolio_for()
    site_id = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    sandbox.faults = Faults(forbidden=frozenset({site_id}))
    output = tmp_path / "out.jsonl"
    result = run(
        "crawl",
        "--store",
        f"file:{tmp_path / 'tokens'}",
        "--client-id",
        "sandbox-client",
        "--base-url",
        urls.api_base_url,
        "--token-url",
        urls.token_url,
        "-o",
        str(output),
        env={"WISER_CLIENT_SECRET": CLIENT_SECRET, "WISER_TOKEN_KEYS": key},
    )
    assert result.exit_code == 1, result.output
    assert "2 part(s) could not be read (2 forbidden)" in result.output
    assert f"acme /sites/{site_id}/rooms" in result.output
    assert CLIENT_SECRET not in result.output
    assert key not in result.output


def test_crawl_without_credentials_or_with_a_bad_store_explains(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["crawl", "-o", str(tmp_path / "o.jsonl")], env={})
    assert result.exit_code == 2
    assert "--client-id" in result.output
    result = CliRunner().invoke(
        main, ["crawl", "-o", str(tmp_path / "o.jsonl"), "--client-id", "x", "--store", "s3://x"]
    )
    assert result.exit_code == 2
    assert "redis://" in result.output


def crawl_command(output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wiser_async",
        "crawl",
        "--sandbox",
        "--latency",
        "0.05",
        "--locations",
        "3",
        "--sites-per-location",
        "6",
        "--devices-per-site",
        "30",
        "--page-size",
        "10",
        "--concurrency",
        "4",
        "-o",
        str(output),
        *extra,
    ]


def wait_for_checkpoints(output: Path, count: int, timeout: float) -> None:
    checkpoint = output.with_name(output.name + ".checkpoint")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.exists() and checkpoint.read_text().count("\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the crawl wrote no checkpoint in time")


def summary_of(stdout: str, output: Path) -> list[str]:
    """A crawl's summary without this run's figures, the output's name blanked."""
    return [
        line.replace(str(output), "OUTPUT")
        for line in stdout.splitlines()
        if not line.startswith("This run:")
    ]


@attrs.frozen
class Reference:
    """An uninterrupted crawl: what it wrote, said and returned, and how long it took."""

    keys: Counter[tuple[str, str, str]]
    summary: list[str]
    returncode: int
    seconds: float

    @property
    def patience(self) -> float:
        """Long enough for any step of a crawl like this one, however loaded the machine."""
        return 10 * self.seconds + 10


@pytest.fixture(scope="module")
def reference_crawl(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    output = tmp_path_factory.mktemp("reference") / "reference.jsonl"
    started = time.monotonic()
    completed = subprocess.run(
        crawl_command(output), cwd=ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    return Reference(
        keys=keys_of(output),
        summary=summary_of(completed.stdout, output),
        returncode=completed.returncode,
        seconds=time.monotonic() - started,
    )


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_resume_after_sigkill_at_a_random_point_equals_an_uninterrupted_crawl(
    tmp_path: Path, reference_crawl: Reference, attempt: int
) -> None:
    output = tmp_path / "out.jsonl"
    with subprocess.Popen(crawl_command(output), cwd=ROOT, stdout=subprocess.DEVNULL) as crawler:
        wait_for_checkpoints(output, 1, reference_crawl.patience)
        time.sleep(random.Random(attempt).uniform(0.0, 0.6))
        crawler.send_signal(signal.SIGKILL)
        crawler.wait(reference_crawl.patience)
    interrupted = keys_of(output)
    assert len(interrupted) < len(reference_crawl.keys)
    resumed = subprocess.run(
        crawl_command(output, "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=reference_crawl.patience,
    )
    assert resumed.returncode == reference_crawl.returncode == 0, resumed.stderr
    assert keys_of(output) == reference_crawl.keys  # the same set, each node exactly once
    # The summary speaks of the whole output: the same as the uninterrupted crawl's.
    assert summary_of(resumed.stdout, output) == reference_crawl.summary
    assert "Complete: nothing is missing." in reference_crawl.summary


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_crawl_resumes(tmp_path: Path, reference_crawl: Reference) -> None:
    output = tmp_path / "out.jsonl"
    with subprocess.Popen(
        crawl_command(output),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as crawler:
        wait_for_checkpoints(output, 2, reference_crawl.patience)
        crawler.send_signal(signal.SIGINT)
        _, err = crawler.communicate(timeout=reference_crawl.patience)
    assert crawler.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "Interrupted. The output keeps every part finished so far: "
        "run the same command with --resume to read what is left."
    )
    assert "Traceback" not in err
    resumed = subprocess.run(
        crawl_command(output, "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=reference_crawl.patience,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert keys_of(output) == reference_crawl.keys
    assert summary_of(resumed.stdout, output) == reference_crawl.summary


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_diff_prints_added_removed_changed_and_exits_1(tmp_path: Path) -> None:
    def device(device_id: str, firmware: str) -> dict[str, Any]:
        data = {"id": device_id, "siteId": "s1", "roomId": "r1", "firmwareVersion": firmware}
        return {"type": "device", "account": "a", "siteId": "s1", "roomId": "r1", "data": data}

    old = write_jsonl(tmp_path / "old.jsonl", [device("d1", "1"), device("d2", "1")])
    new = write_jsonl(tmp_path / "new.jsonl", [device("d2", "2"), device("d3", "1")])
    result = run("diff", str(old), str(new))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "1 added, 1 removed, 1 changed",
        "a: 1 added, 1 removed, 1 changed",
        "  + d3 (site s1, room r1)",
        "  - d1 (site s1, room r1)",
        "  ~ d2: firmwareVersion: '1' -> '2'",
    ]
    as_json = json.loads(run("diff", str(old), str(new), "--json").output)
    assert as_json["changed"][0]["fields"] == {"firmwareVersion": {"old": "1", "new": "2"}}
    same = run("diff", str(old), str(old))
    assert same.exit_code == 0
    assert same.output.startswith("0 added, 0 removed, 0 changed")
    ignored = run("diff", str(old), str(new), "--ignore", "firmwareVersion")
    assert "0 changed" in ignored.output


def test_diff_groups_each_accounts_differences_under_its_own_totals(tmp_path: Path) -> None:
    def device(account: str, device_id: str, firmware: str = "1") -> dict[str, Any]:
        data = {"id": device_id, "siteId": "s", "roomId": None, "firmwareVersion": firmware}
        return {"type": "device", "account": account, "siteId": "s", "roomId": None, "data": data}

    # A crawl writes accounts interleaved, as their pages came.
    old = write_jsonl(
        tmp_path / "old.jsonl",
        [
            device("globex", "g1"),
            device("acme", "a2"),
            device("globex", "g2"),
            device("acme", "a1"),
        ],
    )
    new = write_jsonl(
        tmp_path / "new.jsonl",
        [
            device("acme", "a9"),
            device("globex", "g2", "2"),
            device("acme", "a1", "2"),
            device("globex", "g3"),
            device("acme", "a3"),
        ],
    )
    result = run("diff", str(old), str(new))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "3 added, 2 removed, 2 changed",
        "acme: 2 added, 1 removed, 1 changed",
        "  + a3 (site s, no room)",
        "  + a9 (site s, no room)",
        "  - a2 (site s, no room)",
        "  ~ a1: firmwareVersion: '1' -> '2'",
        "globex: 1 added, 1 removed, 1 changed",
        "  + g3 (site s, no room)",
        "  - g1 (site s, no room)",
        "  ~ g2: firmwareVersion: '1' -> '2'",
    ]
    # --json keeps its shape; its lists come in the same order, an account's together.
    as_json = json.loads(run("diff", str(old), str(new), "--json").output)
    assert [(r["account"], r["data"]["id"]) for r in as_json["added"]] == [
        ("acme", "a3"),
        ("acme", "a9"),
        ("globex", "g3"),
    ]
    assert [(r["account"], r["data"]["id"]) for r in as_json["removed"]] == [
        ("acme", "a2"),
        ("globex", "g1"),
    ]
    assert [(c["account"], c["id"]) for c in as_json["changed"]] == [
        ("acme", "a1"),
        ("globex", "g2"),
    ]


def test_tokens_list_show_delete_never_print_secrets(sandbox: Sandbox, tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    store = FileTokenStore(directory)
    token = anyio.run(issue, sandbox, store, "acme")
    spec = f"file:{directory}"
    listed = run("tokens", "list", "--store", spec)
    assert listed.exit_code == 0
    assert listed.output.startswith("acme\t")
    shown = run("tokens", "show", "acme", "--store", spec)
    assert shown.exit_code == 0
    assert "*** (" in shown.output
    assert token.fingerprint[:12] in shown.output
    for secret in (token.access_token, token.refresh_token or ""):
        assert secret not in listed.output + shown.output
    assert run("tokens", "show", "nobody", "--store", spec).exit_code == 1
    assert run("tokens", "delete", "acme", "--store", spec, stdin="n\n").exit_code == 1
    deleted = run("tokens", "delete", "acme", "--store", spec, "--yes")
    assert deleted.exit_code == 0
    assert run("tokens", "list", "--store", spec).output == "No tokens stored.\n"
    assert run("tokens", "list", "--store", "memory", "--allow-memory").output == (
        "No tokens stored.\n"
    )


def test_tokens_commands_report_store_errors_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    (directory / "k-acme.json").write_text("{broken")
    (directory / "k-acme.json").chmod(0o600)
    result = CliRunner().invoke(main, ["tokens", "list", "--store", f"file:{directory}"])
    assert result.exit_code == 2
    assert "k-acme.json" in result.output
    assert "Traceback" not in result.output


@pytest.mark.asyncio_only
def test_tokens_list_of_a_redis_store(redis_url: str, sandbox: Sandbox) -> None:
    import uuid

    from token_stores import RedisTokenStore

    prefix = f"cli-{uuid.uuid4().hex}"

    async def seed() -> None:
        store = RedisTokenStore(redis_url, prefix=prefix)
        await issue(sandbox, store, "acme")
        await store.aclose()

    anyio.run(seed)
    spec = f"{redis_url}?prefix={prefix}"
    assert run("tokens", "list", "--store", spec).output.startswith("acme\t")
    assert run("tokens", "delete", "acme", "--store", spec, "--yes").exit_code == 0


def login_command(urls: SandboxUrls, store: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wiser_async",
        "login",
        "-a",
        "acme",
        "--store",
        f"file:{store}",
        "--client-id",
        "sandbox-client",
        "--redirect-uri",
        f"http://127.0.0.1:{port}/callback",
        "--authorize-url",
        urls.authorize_url,
        "--token-url",
        urls.token_url,
        "--no-browser",
        "--timeout",
        "20",
        *extra,
    ]


def run_login(command: list[str], port: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `login`, playing the browser: open the URL it prints, follow the redirects."""
    import httpx2

    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WISER_CLIENT_SECRET": CLIENT_SECRET},
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Open this URL")
        url = process.stdout.readline().strip()
        with httpx2.Client(follow_redirects=True, timeout=10) as browser:
            # Browsers ask for more than the callback; those get a 404.
            assert browser.get(f"http://127.0.0.1:{port}/favicon.ico").status_code == 404
            page = browser.get(url)
        out, err = process.communicate(timeout=20)
    return subprocess.CompletedProcess(command, process.returncode, out, err), page.status_code


@pytest.mark.slow
def test_login_authorizes_in_a_browser_and_stores_the_token(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = tmp_path / "tokens"
    port = free_port()
    completed, status = run_login(login_command(urls, store, port), port)
    assert completed.returncode == 0, completed.stderr
    assert status == 200  # the browser landed on the "you can close this window" page
    assert "Token stored for 'acme'" in completed.stdout
    token = anyio.run(FileTokenStore(store).load, "acme")
    assert token is not None
    assert token.access_token not in completed.stdout + completed.stderr
    # One code exchange, and the check of the client credentials before the
    # browser opened: a refresh with a random token, refused as invalid_grant.
    assert sandbox.stats.token_requests == {"authorization_code": 1, "refresh_token": 1}
    assert sandbox.stats.token_errors == {"invalid_grant": 1}


@pytest.mark.slow
def test_login_reports_a_refusal(tmp_path: Path) -> None:
    denying = Sandbox(consent="deny")
    with denying.serve_in_thread() as urls:
        port = free_port()
        completed, _ = run_login(login_command(urls, tmp_path / "tokens", port), port)
    assert completed.returncode == 2
    assert "denied" in completed.stderr
    assert not (tmp_path / "tokens").exists() or not list((tmp_path / "tokens").glob("*.json"))


def test_login_needs_a_loopback_redirect_uri() -> None:
    result = CliRunner().invoke(
        main,
        ["login", "-a", "x", "--client-id", "c", "--redirect-uri", "https://example.com/cb"],
    )
    assert result.exit_code == 2
    assert "loopback" in result.output or "127.0.0.1" in result.output
