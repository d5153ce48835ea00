"""The framework-agnostic half of the web integrations: one process's resources and the login flow.

`WebCore` builds, per process, one `WiserOAuth` (from a factory, inside the
event loop), one `AsyncWiserClient` (no placeholder account for the user to
invent), a pending-login store and an optional shared rate limiter; it
closes all of them. Requests use `client_for(account)`, which shares the
pool, the limits and the token cache.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs

from .. import AsyncWiserClient, AuthorizationRequest, RateLimiter, WiserOAuth
from ._http_errors import LoginError
from ._pending import DEFAULT_PENDING_TTL, MemoryPendingStore, PendingLogin, PendingStore, Taken
from ._session import new_session_id, session_digest, session_matches, usable

__all__ = ["ACCOUNT_PATTERN", "LoginCookie", "LoginStart", "WebCore", "error_page", "to_json"]

ACCOUNT_PATTERN = r"[A-Za-z0-9._@-]{1,128}"
_ACCOUNT = re.compile(ACCOUNT_PATTERN)
_MESSAGES = {
    Taken.UNKNOWN: "this login is not known here (a foreign or forged state)",
    Taken.USED: "this login was completed already (a replayed callback)",
    Taken.EXPIRED: "this login waited too long for its callback and expired",
}


@attrs.frozen
class LoginStart:
    """Where to send the browser, and the session cookie to set (None: keep the browser's)."""

    url: str
    set_cookie: str | None


@attrs.frozen
class LoginCookie:
    """The browser-session cookie a login sets, decided once for every framework.

    Always HttpOnly and SameSite=Lax (the callback is a top-level GET from the
    authorization server, which Lax lets through).
    """

    value: str = attrs.field(repr=False)
    max_age: int
    path: str
    secure: bool


def to_json(client: AsyncWiserClient, value: Any) -> Any:
    """`value` with every model replaced by the API's JSON (camelCase): lists, tuples, dicts."""
    if isinstance(value, list | tuple):
        return [to_json(client, item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(client, item) for key, item in value.items()}
    if attrs.has(type(value)):
        return client.to_wire(value)
    return value


class WebCore:
    """One process's Wiser resources and the login flow of a web backend.

    Args:
        oauth: Builds the process's `WiserOAuth` (called once, in the event loop).
        pending: Builds the pending-login store (default: memory, one worker only).
        rate_limit: A number (per process), or a factory of a shared limiter
            such as ``lambda: RedisRateLimiter(url, key=..., rate=...)``.
        success_url: Where the callback redirects after a login; ``{account}``
            is replaced by the account.
        pending_ttl: Seconds a login may wait for its callback.
        login_hint: The ``login_hint`` sent for an account (default: none).
        secure_cookie: Mark the session cookie ``Secure`` (None: when the
            request came over https).
        client_options: Passed to `AsyncWiserClient` (``config=``, ``retry=``...).
    """

    def __init__(
        self,
        *,
        oauth: Callable[[], WiserOAuth],
        pending: Callable[[], PendingStore] = MemoryPendingStore,
        rate_limit: float | Callable[[], RateLimiter] | None = None,
        success_url: str = "/",
        pending_ttl: float = DEFAULT_PENDING_TTL,
        login_hint: Callable[[str], str | None] | None = None,
        secure_cookie: bool | None = None,
        **client_options: Any,
    ) -> None:
        self._make_oauth = oauth
        self._make_pending = pending
        self._rate_limit = rate_limit
        self.success_url = success_url
        self.pending_ttl = pending_ttl
        self.login_hint = login_hint
        self.secure_cookie = secure_cookie
        self._client_options = client_options
        self._client: AsyncWiserClient | None = None
        self._pending: PendingStore | None = None

    def __repr__(self) -> str:
        return f"WebCore(open={self._client is not None}, success_url={self.success_url!r})"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[WebCore]:
        """Build the process's resources; close them all on the way out."""
        async with AsyncExitStack() as stack:
            oauth = self._make_oauth()
            stack.push_async_callback(oauth.store.aclose)  # after the OAuth's last save
            await stack.enter_async_context(oauth)
            rate_limit: Any = self._rate_limit
            if callable(rate_limit):
                rate_limit = rate_limit()
                if hasattr(rate_limit, "__aenter__"):
                    rate_limit = await stack.enter_async_context(rate_limit)
            # The process's client; its own account is never used to sign.
            self._client = await stack.enter_async_context(
                AsyncWiserClient(oauth, "", rate_limit=rate_limit, **self._client_options)
            )
            self._pending = self._make_pending()
            stack.push_async_callback(self._pending.aclose)
            try:
                yield self
            finally:
                self._client = self._pending = None

    @property
    def client(self) -> AsyncWiserClient:
        """The process's client (inside `open`)."""
        if self._client is None:
            raise RuntimeError("the Wiser integration is not started (lifespan / cleanup_ctx)")
        return self._client

    @property
    def oauth(self) -> WiserOAuth:
        """The process's `WiserOAuth`."""
        return self.client.oauth

    @property
    def pending(self) -> PendingStore:
        """The pending-login store."""
        self.client  # noqa: B018 - raises when not started
        assert self._pending is not None  # noqa: S101 - set with the client
        return self._pending

    def client_for(self, account: str) -> AsyncWiserClient:
        """A client of `account` sharing the process's pool, limits and token cache."""
        if not _ACCOUNT.fullmatch(account):
            raise LoginError("bad_request", "not an account key")
        return self.client.for_account(account)

    def json(self, value: Any) -> Any:
        """`value` with models as the API's JSON (see `to_json`)."""
        return to_json(self.client, value)

    def login_cookie(self, start: LoginStart, *, path: str, https: bool) -> LoginCookie | None:
        """The cookie `start` asks to set, for a request made over https or not (None: none)."""
        if start.set_cookie is None:
            return None
        return LoginCookie(
            value=start.set_cookie,
            max_age=int(self.pending_ttl) + 60,
            path=path,
            secure=https if self.secure_cookie is None else self.secure_cookie,
        )

    async def start_login(
        self, account: str, *, session_id: str | None, redirect_uri: str | None = None
    ) -> LoginStart:
        """Store a pending login of `account` bound to the browser; where to send it."""
        if not _ACCOUNT.fullmatch(account):
            raise LoginError("bad_request", "not an account key")
        fresh = None if usable(session_id) else new_session_id()
        session = fresh or session_id
        assert session is not None  # noqa: S101 - one of them is set
        hint = self.login_hint(account) if self.login_hint is not None else None
        request = self.oauth.authorization_request(login_hint=hint, redirect_uri=redirect_uri)
        await self.pending.put(
            PendingLogin(
                account=account,
                state=request.state,
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                session_digest=session_digest(session),
                expires_at=time.time() + self.pending_ttl,
            )
        )
        return LoginStart(request.url, fresh)

    async def finish_login(
        self, callback_url: str, state: str | None, *, session_id: str | None
    ) -> str:
        """Complete a callback; the account it logged in.

        Raises:
            LoginError: unknown, used or expired login, or another browser's.
            AuthorizationError: denied, failed, or the code exchange refused.
        """
        if not state or len(state) > 512:
            raise LoginError("bad_request", "the callback carries no usable state")
        taken = await self.pending.take(state)
        if isinstance(taken, Taken):
            raise LoginError(taken.value, _MESSAGES[taken])
        if not session_matches(session_id, taken.session_digest):
            raise LoginError(
                "other_browser", "this callback comes from another browser than its login"
            )
        request = AuthorizationRequest(
            url="",
            state=taken.state,
            code_verifier=taken.code_verifier,
            redirect_uri=taken.redirect_uri,
        )
        await self.oauth.complete_authorization(taken.account, callback_url, request)
        return taken.account

    def success_location(self, account: str) -> str:
        """Where a completed login goes."""
        return self.success_url.replace("{account}", account)

    async def summary(self) -> dict[str, Any]:
        """Every stored account's counts of locations, sites, rooms and devices, and what failed."""
        accounts = sorted(await self.oauth.store.keys())
        result = await self.client.crawl(accounts=accounts) if accounts else None
        counts: dict[str, dict[str, int]] = {account: {} for account in accounts}
        for node in result.nodes() if result else ():
            kinds = counts[node.account]
            kinds[node.kind + "s"] = kinds.get(node.kind + "s", 0) + 1
        return {
            "accounts": counts,
            "complete": result.complete if result else True,
            "failures": [failure.to_dict() for failure in result.failures] if result else [],
        }


def error_page(title: str, detail: str, login_again: str | None = None) -> str:
    """A small HTML page for a failed login (escaped; no secret is ever in the texts)."""
    from html import escape

    link = f'<p><a href="{escape(login_again)}">Log in again</a></p>' if login_again else ""
    return (
        f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
        f"<p>{escape(detail)}</p>{link}"
    )
