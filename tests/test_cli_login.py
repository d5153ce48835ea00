"""``wiser-async login``: checked before the browser opens, and not derailed while it waits."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from click.testing import CliRunner, Result

from tests.cli_support import assert_one_line_error
from tests.support import CLIENT_ID, CLIENT_SECRET, free_port
from token_stores import FileTokenStore, Token
from wiser_async.cli import main
from wiser_async.cli.tokens import duration, expires_phrase
from wiser_async.sandbox import Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent


def login_args(urls: SandboxUrls, store: str, port: int, *extra: str) -> list[str]:
    return [
        "login",
        "-a",
        "acme",
        "--store",
        store,
        "--client-id",
        CLIENT_ID,
        "--redirect-uri",
        f"http://127.0.0.1:{port}/callback",
        "--authorize-url",
        urls.authorize_url,
        "--token-url",
        urls.token_url,
        *extra,
    ]


def run(*args: str, secret: str = CLIENT_SECRET) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"WISER_CLIENT_SECRET": secret}, catch_exceptions=False
    )


def read_line(stream: Iterator[str], timeout: float) -> str:
    """The next line of a child's output, or a failure if none comes in time."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(next(stream, "")), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, "the command printed nothing in time"
    return lines[0]


@pytest.mark.slow
def test_login_survives_an_idle_connection_and_a_stray_callback(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = tmp_path / "tokens"
    port = free_port()
    command = [sys.executable, "-m", "wiser_async", *login_args(urls, f"file:{store}", port)]
    with subprocess.Popen(
        [*command, "--no-browser", "--timeout", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WISER_CLIENT_SECRET": CLIENT_SECRET},
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        started = time.monotonic()
        assert read_line(process.stdout, 30).startswith("Open this URL")
        url = read_line(process.stdout, 30).strip()
        # However long the child took to start is how long any of its steps may take, times ten.
        patience = 10 * (time.monotonic() - started) + 10
        # A browser's preconnect: open, silent. It must not hold up what follows.
        with (
            socket.create_connection(("127.0.0.1", port), timeout=patience),
            httpx2.Client(timeout=patience) as browser,
        ):
            stray = browser.get(f"http://127.0.0.1:{port}/callback?code=forged&state=not-this")
            assert stray.status_code == 400
            assert "Ignored a request" in read_line(process.stderr, patience)
            assert browser.get(f"http://127.0.0.1:{port}/favicon.ico").status_code == 404
            # The real redirect: the sandbox consents at once and sends the browser back.
            consent = browser.get(url)
            assert consent.status_code == 302
            landed = browser.get(consent.headers["location"])
            assert landed.status_code == 200
            assert landed.headers["referrer-policy"] == "no-referrer"
        out, err = process.communicate(timeout=patience)
    assert process.returncode == 0, err
    assert "Token stored for 'acme'" in out
    token = anyio.run(FileTokenStore(store).load, "acme")
    assert token is not None
    assert token.access_token not in out + err
    assert sandbox.stats.token_requests["authorization_code"] == 1


@pytest.mark.parametrize("command", ["login", "tokens"])
def test_login_and_tokens_refuse_a_memory_store(
    urls: SandboxUrls, command: str, sandbox: Sandbox
) -> None:
    if command == "login":
        result = run(*login_args(urls, "memory", free_port(), "--no-browser"))
    else:
        result = run("tokens", "list", "--store", "memory")
    assert_one_line_error(result, "--store memory", "--allow-memory")
    assert "Open this URL" not in result.stdout
    assert sandbox.stats.token_requests == {}


def test_login_into_memory_when_allowed_opens_the_browser(
    sandbox: Sandbox, urls: SandboxUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []

    def open_browser(url: str) -> bool:
        # A browser following the sandbox's redirect back to the listener.
        def browse() -> None:
            with httpx2.Client(follow_redirects=True, timeout=30) as browser:
                opened.append(browser.get(url).status_code)

        threading.Thread(target=browse, daemon=True).start()
        return True

    monkeypatch.setattr("webbrowser.open", open_browser)
    result = run(*login_args(urls, "memory", free_port(), "--allow-memory", "--timeout", "30"))
    assert result.exit_code == 0, result.output
    # The sandbox's tokens live an hour: the message says when this one expires.
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
    assert re.search(
        rf"^Token stored for 'acme'; it expires {stamp} \(in 1 h\)\.$", result.stdout, re.M
    )
    assert opened == [200]


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.4, "0 s"),
        (45, "45 s"),
        (89, "1 min"),
        (3540, "59 min"),
        (3599.6, "1 h"),
        (5400, "1 h 30 min"),
        (86400, "24 h"),
        (3 * 86400, "3 d"),
    ],
)
def test_a_duration_reads_in_the_unit_a_person_would_use(seconds: float, said: str) -> None:
    assert duration(seconds) == said


def test_the_expiry_phrase_says_expires_expired_or_none_given() -> None:
    now = time.time()
    assert expires_phrase(Token(access_token="x", expires_at=now + 7200)).startswith("expires 20")
    assert expires_phrase(Token(access_token="x", expires_at=now + 7200)).endswith(" (in 2 h)")
    assert expires_phrase(Token(access_token="x", expires_at=now - 300)).endswith(" (5 min ago)")
    assert expires_phrase(Token(access_token="x", expires_at=now - 300)).startswith("expired 20")
    assert expires_phrase(Token(access_token="x")) == "has no expiry (the token endpoint gave none)"


def test_a_connection_that_sends_no_request_is_closed_once_overdue(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wiser_async.cli.login.REQUEST_HEAD_TIMEOUT", 0.2)
    port = free_port()
    closed: list[bytes] = []

    def open_browser(url: str) -> bool:
        def browse() -> None:
            # Silent until the listener gives up on it: recv returns b"" once it is closed.
            with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
                closed.append(idle.recv(1))
            with httpx2.Client(follow_redirects=True, timeout=30) as browser:
                browser.get(url)

        threading.Thread(target=browse, daemon=True).start()
        return True

    monkeypatch.setattr("webbrowser.open", open_browser)
    result = run(*login_args(urls, f"file:{tmp_path}/t", port, "--timeout", "60"))
    assert result.exit_code == 0, result.output
    assert closed == [b""]


def test_a_wrong_client_secret_fails_before_the_url_is_printed(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    wrong = "wrong-secret-7f3a"
    result = run(*login_args(urls, f"file:{tmp_path}/t", free_port(), "--no-browser"), secret=wrong)
    host = urls.origin.removeprefix("http://")
    assert_one_line_error(result, "refused the client credentials", "invalid_client", host)
    assert result.stdout == ""
    assert wrong not in result.output
    assert sandbox.stats.token_errors == {"invalid_client": 1}


def test_a_broken_store_fails_before_the_url_is_printed(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    directory = tmp_path / "tokens"
    anyio.run(save_then_damage, directory)
    result = run(*login_args(urls, f"file:{directory}", free_port(), "--no-browser"))
    assert_one_line_error(result, f"--store file:{directory}")
    assert result.stdout == ""
    assert sandbox.stats.token_requests == {}  # nothing was asked of the server


async def save_then_damage(directory: Path) -> None:
    """A store whose token of acme is there but unreadable."""
    store = FileTokenStore(directory)
    await store.save("acme", Token(access_token="a" * 20, refresh_token="r" * 20))
    async for path in anyio.Path(directory).iterdir():
        if await path.is_file():
            await path.write_text("{broken")


def test_a_port_in_use_is_one_line_naming_it(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(*login_args(urls, f"file:{tmp_path}/t", port, "--no-browser"))
    assert_one_line_error(result, f"port {port}", "in use", "--redirect-uri")
    assert result.stdout == ""


def test_an_unreachable_token_endpoint_names_the_host(urls: SandboxUrls, tmp_path: Path) -> None:
    port = free_port()
    args = login_args(urls, f"file:{tmp_path}/t", free_port(), "--no-browser")
    args[args.index("--token-url") + 1] = f"http://127.0.0.1:{port}/token"
    result = run(*args)
    assert_one_line_error(result, f"127.0.0.1:{port}", "--token-url")


def test_login_needs_a_loopback_redirect_uri_with_a_port(tmp_path: Path) -> None:
    for uri in ("https://example.com/cb", "http://127.0.0.1/cb", "http://10.0.0.1:80/cb"):
        result = run(
            "login", "-a", "x", "--store", f"file:{tmp_path}", "--client-id", "c",
            "--redirect-uri", uri,
        )  # fmt: skip
        assert_one_line_error(result, "--redirect-uri", "loopback")
