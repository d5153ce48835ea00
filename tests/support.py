"""Helpers for tests that talk to the sandbox."""

from __future__ import annotations

import socket
import time
from typing import Any

from token_stores import MemoryTokenStore, Token, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth
from wiser_async.sandbox import Sandbox, SandboxUrls

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"

# Retries without the production waits, so fault tests stay fast.
FAST_RETRY = RetryPolicy(
    attempts=4, deadline=10.0, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0
)


def make_oauth(urls: SandboxUrls, store: TokenStore | None = None, **options: Any) -> WiserOAuth:
    return WiserOAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
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


def make_client(
    oauth: WiserOAuth, urls: SandboxUrls, account: str = "acct", **options: Any
) -> AsyncWiserClient:
    options.setdefault("retry", FAST_RETRY)
    return AsyncWiserClient(oauth, account, config=ApiConfig(base_url=urls.api_base_url), **options)


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
