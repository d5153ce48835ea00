"""Helpers for tests that talk to the sandbox."""

from __future__ import annotations

import os
import pty
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx2

from token_stores import LockHeld, MemoryTokenStore, StoreUnavailable, Token, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth
from wiser_async.sandbox import Sandbox, SandboxUrls

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"

# The HTTP stack clients send through: "httpx2" (httpx2's own transport) or
# "aiohttp" (AiohttpTransport); set by the `http_stack` fixture.
HTTP_STACK = "httpx2"

# Retries without the production waits, so fault tests stay fast.
FAST_RETRY = RetryPolicy(
    attempts=4, timeout=10.0, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0
)


def make_oauth(urls: SandboxUrls, store: TokenStore | None = None, **options: Any) -> WiserOAuth:
    options.setdefault("redirect_uri", REDIRECT_URI)
    return WiserOAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        store=store if store is not None else MemoryTokenStore(),
        authorize_url=urls.authorize_url,
        token_url=urls.token_url,
        **options,
    )


async def issue(
    sandbox: Sandbox,
    store: TokenStore,
    account: str,
    *,
    customer: str = "default",
    lifetime: float | None = None,
    expired: bool = False,
) -> Token:
    """Store a grant minted by the sandbox; `expired` backdates its expiry."""
    token = Token.from_response(sandbox.issue_token(customer, lifetime=lifetime))
    if expired:
        token = Token(
            access_token=token.access_token,
            refresh_token=token.refresh_token,
            expires_at=time.time() - 1,
            issued_at=time.time() - 3601,
        )
    await store.save(account, token)
    return token


async def consent(url: str) -> str:
    """Play the browser on an authorization URL that consents at once; the callback URL."""
    async with httpx2.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


def stack_transport() -> httpx2.AsyncBaseTransport | None:
    """A new transport of the test's HTTP stack (`HTTP_STACK`); None for httpx2's own."""
    if HTTP_STACK == "aiohttp":
        from wiser_async.transports import AiohttpTransport

        return AiohttpTransport()
    return None


def make_client(
    oauth: WiserOAuth, urls: SandboxUrls, account: str = "acct", **options: Any
) -> AsyncWiserClient:
    """A client of the sandbox at `urls` on the test's HTTP stack.

    `config=` replaces the default `ApiConfig`; `transport=` or `http_client=`
    replaces the stack's transport.
    """
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("config", ApiConfig(base_url=urls.api_base_url))
    if "transport" not in options and "http_client" not in options:
        options["transport"] = stack_transport()
    return AsyncWiserClient(oauth, account, **options)


def free_port() -> int:
    """A loopback port nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secrets_of(*tokens: Token) -> list[str]:
    found = [CLIENT_SECRET]
    for token in tokens:
        found.append(token.access_token)
        if token.refresh_token:
            found.append(token.refresh_token)
    return found


def assert_no_secret(error: BaseException, secrets: list[str]) -> None:
    text = str(error) + repr(error)
    for secret in secrets:
        assert secret not in text


class FlakyStore:
    """A documented test helper: a real store whose writes (or everything) fail on demand.

    Stands for a store outage (Redis down, a full disk) at a chosen moment:
    set ``fail_writes`` (save, compare-and-set, delete) or ``fail_all``.
    Everything else goes to the wrapped store, which the test can read.
    """

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner
        self.fail_writes = False
        self.fail_all = False
        self.failed_writes = 0

    def _check(self, write: bool) -> None:
        if self.fail_all or (write and self.fail_writes):
            if write:
                self.failed_writes += 1
            raise StoreUnavailable("flaky store: injected outage")

    async def change_marker(self, key: str) -> Hashable:
        self._check(False)
        return await self.inner.change_marker(key)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def load(self, key: str) -> Token | None:
        self._check(False)
        return await self.inner.load(key)

    async def save(self, key: str, token: Token) -> None:
        self._check(True)
        await self.inner.save(key, token)

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        self._check(True)
        return await self.inner.compare_and_set(key, expected, token)

    async def delete(self, key: str) -> bool:
        self._check(True)
        return await self.inner.delete(key)

    async def keys(self) -> list[str]:
        self._check(False)
        return await self.inner.keys()

    def lock(self, key: str, *, timeout: float = 30.0) -> AbstractAsyncContextManager[LockHeld]:
        self._check(False)
        return self.inner.lock(key, timeout=timeout)


async def wait_until(condition: Callable[[], bool], *, timeout: float = 20.0) -> None:
    """Poll `condition` until it holds (fails the test after `timeout` seconds)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - set by another thread or process
            await anyio.sleep(0.01)


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """A redis-server of the test's own (AOF, fsync always) on `port`; stop it by its pid."""
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")


class PassThroughTransport(httpx2.AsyncBaseTransport):
    """A transport in front of `inner` (by default the test's HTTP stack's), which it closes."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or stack_transport() or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class HoldingTransport(PassThroughTransport):
    """Holds the requests `hold` picks until `together` of them are out at once.

    Proves concurrency without racing the machine's speed: a client that sends
    `together` such requests before any is answered opens the gate, which
    releases them and lets every later request through. Without that, each held
    request goes on after `patience` seconds, counted in `released_by_patience`.
    `peak` is the most requests held at once.
    """

    def __init__(
        self,
        hold: Callable[[httpx2.Request], bool],
        together: int,
        inner: httpx2.AsyncBaseTransport | None = None,
        patience: float = 10.0,
    ) -> None:
        super().__init__(inner)
        self.hold = hold
        self.together = together
        self.patience = patience
        self.held = 0
        self.peak = 0
        self.released_by_patience = 0
        self._gate: anyio.Event | None = None
        self._opened = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not self._opened and self.hold(request):
            await self._wait_at_gate()
        return await self.inner.handle_async_request(request)

    async def _wait_at_gate(self) -> None:
        if self._gate is None:
            self._gate = anyio.Event()
        gate = self._gate
        self.held += 1
        self.peak = max(self.peak, self.held)
        try:
            if self.held >= self.together:
                self._opened = True
                gate.set()
            with anyio.move_on_after(self.patience) as waited:
                await gate.wait()
            if waited.cancelled_caught:
                self.released_by_patience += 1
        finally:
            self.held -= 1


class CountingTransport(PassThroughTransport):
    """An HTTP transport that counts what passes through it (for pass-through checks).

    `started` counts requests handed to the inner transport, `open` the
    responses whose body has not been closed yet: a connection a cancelled
    call left checked out shows as `open > 0`.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        super().__init__(inner)
        self.started = 0
        self.open = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.started += 1
        self.open += 1
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            self.open -= 1
            raise
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_CountedStream(response, self),
            extensions=response.extensions,
        )


class _CountedStream(httpx2.AsyncByteStream):
    def __init__(self, response: httpx2.Response, owner: CountingTransport) -> None:
        self._response = response
        self._owner = owner
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.open -= 1
        await self._response.aclose()


def read_terminal(command: list[str], timeout: float) -> tuple[int, bytes]:
    """Run `command` with stderr on a pseudo-terminal; its exit code and what it showed there."""
    leader, follower = pty.openpty()
    try:
        completed = subprocess.run(
            command,
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
            check=False,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return completed.returncode, seen
