"""The examples served as the web tests run them, and a browser for httpx2 clients.

`serve_app` starts an example app in two worker processes on one port:
``uvicorn tests.web_apps:fastapi_app --workers 2`` for FastAPI, two
``python -m tests.web_apps`` processes sharing the port (SO_REUSEPORT) for
aiohttp. The app users are `USERS` (``EXAMPLE_USERS``).

`Browser` is one keep-alive connection (so one worker) with cookies kept
the way a browser keeps them on ``http://127.0.0.1``: ``Secure`` cookies
included (browsers treat loopback as a secure context; httpx2's cookie jar
does not), and the app user it signs in as (a session cookie for FastAPI,
HTTP Basic for aiohttp).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from email.utils import parsedate_to_datetime
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import anyio
import httpx2

from tests.support import CLIENT_SECRET, free_port
from token_stores import RedisTokenStore
from wiser_async.integrations._session import SECURE_LOGIN_COOKIE
from wiser_async.sandbox import SandboxProcess

ROOT = Path(__file__).parent.parent
LOGIN_COOKIE = SECURE_LOGIN_COOKIE  # the examples keep the default, Secure
# App users and the customers' accounts each may act for.
USERS = {
    "alice": ("alice-password", ("acme", "globex", "hooli", "umbrella")),
    "mallory": ("mallory-password", ("initech",)),
}
USERS_ENV = " ".join(
    f"{name}:{password}:{','.join(accounts)}" for name, (password, accounts) in USERS.items()
)


@contextmanager
def serve_app(
    kind: str,
    sandbox_process: SandboxProcess,
    redis_url: str,
    label: str,
    *,
    log_level: str = "warning",
) -> Iterator[tuple[str, str, list[str]]]:
    """An example app in two worker processes on one port: its origin, token-key prefix, logs.

    The logs (each process's standard output and error, in a file: a pipe
    nobody reads would block a busy server) are filled in when the block
    ends; whatever they hold must hold no client secret.
    """
    port, prefix = free_port(), f"{label}-{uuid.uuid4().hex[:12]}"
    origin = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "EXAMPLE_PREFIX": prefix,
        "EXAMPLE_SANDBOX_URL": sandbox_process.urls.origin,
        "EXAMPLE_PUBLIC_URL": origin,
        "EXAMPLE_USERS": USERS_ENV,
        "EXAMPLE_SESSION_SECRET": uuid.uuid4().hex,
        "WEB_APPS_LOG_LEVEL": log_level,
    }
    if kind == "fastapi":
        commands = [
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.web_apps:fastapi_app",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                log_level,
            ]
        ]
    else:
        commands = [[sys.executable, "-m", "tests.web_apps", "--port", str(port)]] * 2
    logs: list[str] = []
    with ExitStack() as files:
        outputs = [files.enter_context(tempfile.TemporaryFile("w+")) for _ in commands]
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
            for command, output in zip(commands, outputs, strict=True)
        ]
        try:
            yield origin, prefix, logs
        finally:
            for process in processes:
                process.terminate()
            for process, output in zip(processes, outputs, strict=True):
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                output.seek(0)
                logs.append(output.read())
    assert all(CLIENT_SECRET not in log for log in logs)


async def fingerprints(store: RedisTokenStore) -> dict[str, str]:
    """The stored grants, each by its fingerprint (to show none changed)."""
    found = {}
    for key in await store.keys():
        token = await store.load(key)
        assert token is not None
        found[key] = token.fingerprint
    return found


async def forget(redis_url: str, prefix: str) -> None:
    """Delete what an app left under `prefix`: its grants, then anything else (pending logins)."""
    from redis.asyncio import Redis

    store = RedisTokenStore(redis_url, prefix=prefix)
    try:
        for key in await store.keys():
            await store.delete(key)
    finally:
        await store.aclose()
    raw = Redis.from_url(redis_url)
    try:
        left = [key async for key in raw.scan_iter(match=f"{prefix}:*")]
        if left:
            await raw.delete(*left)
    finally:
        await raw.aclose()


class Browser:
    """One keep-alive connection to an app, with a browser's cookies and an app user.

    Attributes:
        worker: The pid of the worker it reached (``X-Worker``).
        cookies: Cookie values by name, as a loopback browser keeps them.
        attributes: The last ``Set-Cookie`` of each name (its attributes).
    """

    def __init__(self, client: httpx2.AsyncClient, worker: str, kind: str) -> None:
        self.client, self.worker, self.kind = client, worker, kind
        self.cookies: dict[str, str] = {}
        self.attributes: dict[str, Morsel[str]] = {}
        self.user: tuple[str, str] | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    def _keep(self, response: httpx2.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                self.attributes[name] = morsel
                expires = morsel["expires"]
                gone = morsel["max-age"] == "0" or (
                    expires and parsedate_to_datetime(expires).timestamp() < time.time()
                )
                if gone:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def get(
        self, url: str, *, cookies: dict[str, str] | None = None, **options: Any
    ) -> httpx2.Response:
        """GET `url` with this browser's cookies (or `cookies` instead) and app user."""
        return await self.request("GET", url, cookies=cookies, **options)

    async def request(
        self, method: str, url: str, *, cookies: dict[str, str] | None = None, **options: Any
    ) -> httpx2.Response:
        jar = self.cookies if cookies is None else cookies
        headers = dict(options.pop("headers", {}))
        if jar:
            headers["cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
        if self.kind == "aiohttp" and self.user is not None:
            options["auth"] = self.user
        response = await self.client.request(method, url, headers=headers, **options)
        if cookies is None:
            self._keep(response)
        return response

    async def sign_in(self, user: str) -> None:
        """Become `user` of `USERS`: the FastAPI example's form, or HTTP Basic for aiohttp."""
        password = USERS[user][0]
        self.user = (user, password)
        if self.kind == "fastapi":
            answer = await self.request(
                "POST", "/login", data={"username": user, "password": password}
            )
            assert answer.status_code == 303, answer.text

    async def login(self, account: str) -> tuple[str, str]:
        """Start the Wiser login of `account`: the authorization URL and the login cookie."""
        answer = await self.get(f"/wiser/login/{account}")
        assert answer.status_code == 302, answer.text
        assert "code_challenge" in answer.headers["location"]
        return answer.headers["location"], self.cookies[LOGIN_COOKIE]


async def pinned_connections(origin: str) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    """Clients of one keep-alive connection each, with the worker each one reached."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client = httpx2.AsyncClient(
            base_url=origin, limits=httpx2.Limits(max_connections=1), timeout=20
        )
        try:
            answer = await client.get("/wiser/nothing-here")
        except httpx2.TransportError:
            await client.aclose()
            await anyio.sleep(0.1)
            continue
        yield answer.headers["x-worker"], client


async def browsers(origin: str, kind: str, per_worker: int) -> dict[str, list[Browser]]:
    """`per_worker` browsers of one keep-alive connection each, on each of the two workers."""
    found: dict[str, list[Browser]] = {}
    async for worker, client in pinned_connections(origin):
        if (worker not in found and len(found) == 2) or len(found.get(worker, ())) == per_worker:
            await client.aclose()
        else:
            found.setdefault(worker, []).append(Browser(client, worker, kind))
        if len(found) == 2 and all(len(pinned) == per_worker for pinned in found.values()):
            return found
    raise AssertionError(f"did not reach two workers {per_worker} times each")


async def two_workers(origin: str, kind: str) -> tuple[Browser, Browser]:
    """A browser on each of the two workers."""
    found = await browsers(origin, kind, 1)
    (first,), (second,) = found.values()
    return first, second
