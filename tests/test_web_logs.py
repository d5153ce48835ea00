"""The examples, run as their docstrings say, log no OAuth code, state or secret.

Each example's module docstring has a ``::`` block of shell commands: the
sandbox, the exports, the app (``uvicorn --workers 2`` for FastAPI, two
``python -m examples.aiohttp_app`` processes on one port for aiohttp). The
test parses that block and runs it: free ports instead of the documented
ones, everywhere they appear, ``REDIS_URL`` and a unique ``EXAMPLE_PREFIX``
added, ``python``/``uvicorn``/``wiser-async`` resolved to this venv. Then
alice connects her two customers (login, consent, callback, devices), replays
a callback (409) and sends one with a state the app never issued (400).

With every process stopped, their captured standard output and error prove:

* no code or state value of those callbacks appears anywhere, nor any
  ``code=``/``state=`` followed by a value;
* the access log is on: one line per callback, its query masked
  (``/wiser/callback?code=***&state=***``), with the status each one got;
* no secret appears: the client secret nowhere but the sandbox's banner
  that publishes it, the session secret and the app users' passwords nowhere.

The callback URL is followed on the test's port: the aiohttp docstring sets
no ``EXAMPLE_PUBLIC_URL``, so that app's redirect URI keeps its default port,
a documented one the test moved like the others.

A failure shows the offending line with the values masked, never the raw log.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

from tests.support import CLIENT_SECRET, consent, free_port
from tests.web_support import LOGIN_COOKIE, Browser, forget

pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(60)]

ROOT = Path(__file__).parent.parent
VENV_BIN = Path(sys.executable).parent
EXAMPLES = {
    "fastapi": ROOT / "examples" / "fastapi_app.py",
    "aiohttp": ROOT / "examples" / "aiohttp_app.py",
}
SANDBOX_PORT = "8089"
APP_PORTS = ("8000", "8001")
# What the documented commands run, as this venv runs it.
PROGRAMS = {
    "python": [sys.executable],
    "uvicorn": [sys.executable, "-m", "uvicorn"],
    "wiser-async": [sys.executable, "-m", "wiser_async"],
}
# The sandbox's start-up banner publishes its fixed test client (the only secret allowed).
SANDBOX_BANNER = f"Client id sandbox-client, secret {CLIENT_SECRET}. Ctrl-C stops."
LEAK = re.compile(r"(code|state)=[A-Za-z0-9_\-]{8,}")
# How failure messages mask any such value, whatever its length (as the filter does).
MASK = re.compile(r"(?i)\b(code|state|session_state)=[^&\s\"']*")
MASKED_CALLBACK = "/wiser/callback?code=***&state=***"
STOP_TIMEOUT = 10.0


@dataclass
class Command:
    """One documented command: its argv (this venv's) and environment."""

    argv: list[str]
    env: dict[str, str]


@dataclass
class Run:
    """An example running as documented: where it answers, its exports, its outputs after."""

    sandbox_port: int
    app_port: int
    exports: dict[str, str]
    outputs: list[Output] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # every code and state sent

    @property
    def secrets(self) -> dict[str, str]:
        """The secrets no log may show, by what they are: the client's, the app's."""
        found = {CLIENT_SECRET: "client secret"}
        if "EXAMPLE_SESSION_SECRET" in self.exports:
            found[self.exports["EXAMPLE_SESSION_SECRET"]] = "session secret"
        for entry in self.exports["EXAMPLE_USERS"].split():
            user, password, _ = entry.split(":", 2)
            found[password] = f"{user}'s password"
        return found

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def moved(self, url: str) -> str:
        """`url` with the test's ports in place of the documented ones."""
        return with_ports(url, self.sandbox_port, self.app_port)

    def masked(self, line: str) -> str:
        """`line` with every code, state and secret value masked."""
        for value in self.values:
            line = line.replace(value, "<value>")
        for secret, what in self.secrets.items():
            line = line.replace(secret, f"<{what}>")
        return MASK.sub(r"\1=<value>", line)

    def transcript(self, last: int = 30) -> str:
        """The last lines of each output, masked: what a failure shows."""
        shown = []
        for output in self.outputs:
            for stream, text in output.streams.items():
                lines = text.splitlines()[-last:]
                shown.append(f"--- {output.name} {stream} (last {len(lines)} lines)")
                shown += [self.masked(line) for line in lines]
        return "\n".join(shown)


@dataclass
class Output:
    """What one process wrote: its name, and each stream's text."""

    name: str
    streams: dict[str, str] = field(default_factory=dict)

    def lines(self) -> Iterator[tuple[str, int, str]]:
        for stream, text in self.streams.items():
            for number, line in enumerate(text.splitlines(), 1):
                yield stream, number, line


def literal_block(path: Path) -> list[str]:
    """The logical lines of the module docstring's ``::`` block (continuations joined)."""
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring is not None, f"{path.name} has no module docstring"
    lines = docstring.splitlines()
    start = next(index for index, line in enumerate(lines) if line.rstrip().endswith("::"))
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and not line[0].isspace():
            break
        block.append(line.strip())
    text = "\n".join(block).replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip()]


def with_ports(line: str, sandbox_port: int, app_port: int) -> str:
    """`line` with the documented ports replaced by the test's."""
    line = re.sub(rf"\b{SANDBOX_PORT}\b", str(sandbox_port), line)
    return re.sub(rf"\b(?:{'|'.join(APP_PORTS)})\b", str(app_port), line)


def program(argv: list[str]) -> list[str]:
    assert argv[0] in PROGRAMS, f"the docstring runs {argv[0]!r}, which this test does not know"
    return [*PROGRAMS[argv[0]], *argv[1:]]


def shell_value(text: str, env: dict[str, str]) -> str:
    """A documented assignment's value: one shell word, or a ``$(...)`` command's output."""
    substitution = re.fullmatch(r"\$\((.*)\)", text)
    if substitution is None:
        (word,) = shlex.split(text)
        return word
    done = subprocess.run(
        program(shlex.split(substitution[1])),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def documented_commands(
    path: Path, sandbox_port: int, app_port: int, env: dict[str, str]
) -> list[Command]:
    """The commands the docstring runs, in order, with the environment each one gets."""
    exported = dict(env)
    commands = []
    lines = literal_block(path)
    text = "\n".join(lines)
    assert re.search(rf"\b{SANDBOX_PORT}\b", text), "the docstring names no sandbox port"
    assert re.search(rf"\b(?:{'|'.join(APP_PORTS)})\b", text), "the docstring names no app port"
    for line in lines:
        line = with_ports(line, sandbox_port, app_port)
        export = re.fullmatch(r"export ([A-Za-z_]\w*)=(.*)", line)
        if export is not None:
            exported[export[1]] = shell_value(export[2], exported)
            continue
        words = shlex.split(line)
        if words[-1] == "&":
            words.pop()
        own = dict(exported)
        while re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            own[name] = value
        commands.append(Command(program(words), own))
    return commands


@contextmanager
def documented_run(kind: str, directory: Path, redis_url: str, prefix: str) -> Iterator[Run]:
    """The example run as documented (its outputs are filled in when the block ends).

    Every process is stopped when the block ends (SIGTERM, SIGKILL to its
    process group after `STOP_TIMEOUT`); the outputs are read then, and
    each process must still have been running when it was stopped.
    """
    sandbox_port = app_port = free_port()
    while app_port == sandbox_port:
        app_port = free_port()
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("WISER_", "EXAMPLE_", "REDIS_"))
    }
    base |= {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDIS_URL": redis_url,
        "EXAMPLE_PREFIX": prefix,
    }
    commands = documented_commands(EXAMPLES[kind], sandbox_port, app_port, base)
    assert commands[0].argv[-3:] == ["sandbox", "--port", str(sandbox_port)]
    run = Run(
        sandbox_port,
        app_port,
        {
            name: value
            for name, value in commands[-1].env.items()
            if name not in base or base[name] != value
        },
    )
    started: list[tuple[Output, subprocess.Popen[bytes], dict[str, Path]]] = []
    try:
        for index, command in enumerate(commands):
            name = "sandbox" if index == 0 else f"{kind}-{index}"
            files = {stream: directory / f"{name}.{stream}" for stream in ("stdout", "stderr")}
            with files["stdout"].open("wb") as stdout, files["stderr"].open("wb") as stderr:
                process = subprocess.Popen(
                    command.argv,
                    cwd=ROOT,
                    env=command.env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,  # uvicorn's workers too can be killed by group
                )
            started.append((Output(name), process, files))
        yield run
    except BaseException as error:
        failed: BaseException | None = error
        raise
    else:
        failed = None
    finally:
        running = {id(process): process.poll() is None for _, process, _ in started}
        for _, process, _ in started:
            if process.poll() is None:
                process.terminate()
        for output, process, files in started:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            output.streams = {
                stream: file.read_text(errors="replace") for stream, file in files.items()
            }
            run.outputs.append(output)
        if failed is not None:
            failed.add_note(run.transcript())
    for output, process, _ in started:
        assert running[id(process)], f"{output.name} had exited ({process.returncode}) early"


async def answers(origin: str, *, timeout: float = 30.0) -> None:
    """Wait until something answers HTTP at `origin`."""
    async with httpx2.AsyncClient(base_url=origin, timeout=5) as client:
        with anyio.fail_after(timeout):
            while True:
                try:
                    await client.get("/")
                except httpx2.TransportError:
                    await anyio.sleep(0.05)
                else:
                    return


def app_user(exports: dict[str, str], name: str) -> tuple[str, list[str]]:
    """The password and accounts ``EXAMPLE_USERS`` gives the app user `name`."""
    for entry in exports["EXAMPLE_USERS"].split():
        user, password, accounts = entry.split(":", 2)
        if user == name:
            return password, accounts.split(",")
    raise AssertionError(f"the docstring's EXAMPLE_USERS has no {name}")


async def sign_in(browser: Browser, user: str, password: str) -> None:
    """The documented sign-in: the FastAPI example's form, HTTP Basic for aiohttp."""
    browser.user = (user, password)
    if browser.kind == "fastapi":
        answer = await browser.request(
            "POST", "/login", data={"username": user, "password": password}
        )
        assert answer.status_code == 303, answer.status_code


async def drive(kind: str, run: Run) -> None:
    """Alice's two logins, a replay and a forged state (their codes and states: `run.values`)."""
    await answers(run.sandbox)
    await answers(run.origin)
    password, accounts = app_user(run.exports, "alice")
    assert len(accounts) >= 2, accounts
    browser = Browser(httpx2.AsyncClient(base_url=run.origin, timeout=20), worker="?", kind=kind)
    try:
        await sign_in(browser, "alice", password)
        callbacks = []
        for account in accounts[:2]:
            url, cookie = await browser.login(account)
            callback = urlsplit(await consent(url))
            assert callback.path == "/wiser/callback", callback.path
            assert f"{callback.scheme}://{callback.netloc}" == run.origin
            query = parse_qs(callback.query)
            run.values += query["code"] + query["state"]
            target = f"{callback.path}?{callback.query}"
            done = await browser.get(target)
            assert done.status_code == 302, done.status_code
            assert done.headers["location"] == f"/customers/{account}/devices"
            devices = await browser.get(done.headers["location"])
            assert devices.status_code == 200, devices.status_code
            assert devices.json()["devices"]
            callbacks.append((target, cookie))
        target, cookie = callbacks[0]
        replay = await browser.get(target, cookies={LOGIN_COOKIE: cookie})
        assert replay.status_code == 409, replay.status_code
        code, state = f"forged{uuid.uuid4().hex}", uuid.uuid4().hex
        run.values += [code, state]
        forged = await browser.get(f"/wiser/callback?code={code}&state={state}")
        assert forged.status_code == 400, forged.status_code
    finally:
        await browser.aclose()


@pytest.mark.parametrize("kind", ["fastapi", "aiohttp"])
async def test_documented_example_logs_callbacks_masked_and_no_code_state_or_secret(
    kind: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"web-logs-{uuid.uuid4().hex[:12]}"
    try:
        with documented_run(kind, tmp_path, redis_url, prefix) as run:
            await drive(kind, run)
    finally:
        await forget(redis_url, prefix)
    assert len(run.values) == 6
    assert all(len(value) >= 8 for value in run.values)

    leaks = [
        f"{output.name} {stream}:{number}: {run.masked(line)}"
        for output in run.outputs
        for stream, number, line in output.lines()
        if LEAK.search(line) or any(value in line for value in run.values)
    ]
    assert not leaks, "a code or state value in the logs:\n" + "\n".join(leaks)

    secrets = [
        f"{output.name} {stream}:{number}: {run.masked(line)}"
        for output in run.outputs
        for stream, number, line in output.lines()
        if any(secret in line for secret in run.secrets)
        and not (output.name == "sandbox" and line == SANDBOX_BANNER)
    ]
    assert not secrets, "a secret in the logs:\n" + "\n".join(secrets)

    callbacks = [
        line
        for output in run.outputs
        if output.name != "sandbox"
        for _, _, line in output.lines()
        if '"GET /wiser/callback' in line
    ]
    assert all(MASKED_CALLBACK in line for line in callbacks), "\n".join(
        run.masked(line) for line in callbacks
    )
    statuses = sorted(  # the callbacks sent, each logged once
        match[1] for line in callbacks if (match := re.search(r'HTTP/1\.1" (\d{3})\b', line))
    )
    assert statuses == ["302", "302", "400", "409"], "\n".join(
        run.masked(line) for line in callbacks
    )
