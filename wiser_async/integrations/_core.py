"""The framework-agnostic half of the web integrations: one process's resources and the login flow.

`WebCore` builds, per process, one `WiserOAuth` (from a factory, inside the
event loop), one `AsyncWiserClient` (no placeholder account for the user to
invent), a pending-login store and an optional shared rate limiter; it
closes all of them. Requests use `client_for(request, account)`, which asks
the application's `authorize` first and shares the pool, the limits and the
token cache.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs

from .. import AsyncWiserClient, AuthorizationRequest, RateLimiter, WiserOAuth
from ._authorize import MISSING_AUTHORIZE, Authorize, decide, warn_if_open
from ._http_errors import AuthorizeFailed, BadAccountKey, HttpAnswer, LoginError, http_answer
from ._pending import DEFAULT_PENDING_TTL, MemoryPendingStore, PendingLogin, PendingStore, Taken
from ._session import cookie_digest, cookie_name, new_browser_id, new_cookie, usable

__all__ = ["ACCOUNT_PATTERN", "LoginCookie", "LoginStart", "WebCore", "error_page", "to_json"]

ACCOUNT_PATTERN = r"[A-Za-z0-9._@-]{1,128}"
_ACCOUNT = re.compile(ACCOUNT_PATTERN)
_MESSAGES = {
    Taken.UNKNOWN: "this login is not known here (never started here, or long expired)",
    Taken.USED: "this login was completed already (a replayed callback)",
    Taken.EXPIRED: "this login waited too long for its callback and expired",
}
_OTHER_BROWSER = (
    "this callback does not come from the browser that started the login "
    "(another browser, or its login cookie is missing)"
)
_CROSS_SITE = "this login was started from another site: start it from this application"
_BUSY = "too many logins are waiting for their callback: try again in a minute"
logger = logging.getLogger("wiser_async.web")


@attrs.frozen
class LoginCookie:
    """The login cookie a login sets, decided once for every framework.

    Always new (a value the browser brought is never kept), HttpOnly,
    SameSite=Lax (the callback is a top-level GET from the authorization
    server, which Lax lets through), Path=/; ``Secure`` and named
    ``__Host-wiser_login`` unless the integration was told
    ``secure_cookie=False``.
    """

    name: str
    value: str = attrs.field(repr=False)
    max_age: int
    secure: bool
    path: str = "/"


@attrs.frozen
class LoginStart:
    """Where to send the browser, and the login cookie to set."""

    url: str = attrs.field(repr=False)  # carries the state
    cookie: LoginCookie


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
        authorize: Required. ``authorize(request, account) -> bool`` (or an
            awaitable bool): may the user behind this framework request act
            for this account? Asked before a login is stored, before a
            callback takes its login, and by every helper that hands out a
            client; anything but True is a 403, an exception a 500.
            `allow_any_account` lets anyone act for every account: demos and
            tests only (a WARNING is logged at start-up).
        pending: Builds the pending-login store (default: memory, one worker only).
        rate_limit: A number (per process), or a factory of a shared limiter
            such as ``lambda: RedisRateLimiter(url, key=..., rate=...)``.
        success_url: Where the callback redirects after a login; ``{account}``
            is replaced by the account.
        pending_ttl: Seconds a login may wait for its callback.
        login_hint: The ``login_hint`` sent for an account (default: none).
        secure_cookie: Mark the login cookie ``Secure`` (and name it
            ``__Host-wiser_login``). Browsers keep Secure cookies on
            ``http://127.0.0.1`` and ``http://localhost``; False only for
            plain-http development on another host.
        client_options: Passed to `AsyncWiserClient` (``config=``, ``retry=``...).
    """

    def __new__(cls, *args: Any, **options: Any) -> WebCore:
        # Before the arguments are bound, so that the error names the README section.
        if options.get("authorize") is None:
            raise TypeError(MISSING_AUTHORIZE)
        return super().__new__(cls)

    def __init__(
        self,
        *,
        oauth: Callable[[], WiserOAuth],
        authorize: Authorize,
        pending: Callable[[], PendingStore] = MemoryPendingStore,
        rate_limit: float | Callable[[], RateLimiter] | None = None,
        success_url: str = "/",
        pending_ttl: float = DEFAULT_PENDING_TTL,
        login_hint: Callable[[str], str | None] | None = None,
        secure_cookie: bool = True,
        **client_options: Any,
    ) -> None:
        if not callable(authorize):
            raise TypeError(MISSING_AUTHORIZE)
        self._make_oauth = oauth
        self.authorize = authorize
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
        warn_if_open(self.authorize)
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
        """The process's client (inside `open`); it asks no `authorize`: the routes do."""
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

    @property
    def cookie_name(self) -> str:
        """The login cookie's name (``__Host-wiser_login`` when Secure, else ``wiser_login``)."""
        return cookie_name(self.secure_cookie)

    async def check(self, request: object, account: str) -> None:
        """Refuse a malformed account key (400), then anything `authorize` does not allow (403).

        Raises:
            BadAccountKey: `account` breaks the account-key rule.
            AccountRefused: `authorize` said no.
            AuthorizeFailed: `authorize` raised or gave no bool.
        """
        if not _ACCOUNT.fullmatch(account):
            raise BadAccountKey
        await decide(self.authorize, request, account)

    async def client_for(self, request: object, account: str) -> AsyncWiserClient:
        """The client of `account` for this request, once `authorize` allowed it.

        It shares the process's pool, limits and token cache.
        """
        await self.check(request, account)
        return self.client.for_account(account)

    def json(self, value: Any) -> Any:
        """`value` with models as the API's JSON (see `to_json`)."""
        return to_json(self.client, value)

    async def start_login(
        self,
        request: object,
        account: str,
        *,
        cookie: str | None,
        fetch_site: str | None = None,
        redirect_uri: str | None = None,
    ) -> LoginStart:
        """Store a pending login of `account` bound to the browser; where to send it.

        `cookie` is the login cookie the browser brought, if any: its earlier
        logins move to the new cookie, its login of `account` is replaced.
        `fetch_site` is the request's ``Sec-Fetch-Site``: a login another site
        started (``cross-site``) is refused, as the user may never have meant
        to replace the account's grant.

        Raises:
            BadAccountKey, AccountRefused, AuthorizeFailed: see `check` (nothing stored).
            LoginError: ``cross_site``; ``busy``, a bound of the pending store is
                reached (nothing stored either way).
        """
        if fetch_site == "cross-site":
            raise LoginError("cross_site", _CROSS_SITE)
        await self.check(request, account)
        fresh = new_cookie()
        hint = self.login_hint(account) if self.login_hint is not None else None
        authorization = self.oauth.authorization_request(login_hint=hint, redirect_uri=redirect_uri)
        login = PendingLogin(
            account=account,
            state=authorization.state,
            code_verifier=authorization.code_verifier,
            redirect_uri=authorization.redirect_uri,
            browser=new_browser_id(),
            expires_at=time.time() + self.pending_ttl,
        )
        started = await self.pending.start(
            login,
            cookie=cookie_digest(fresh),
            previous_cookie=cookie_digest(cookie) if usable(cookie) else None,
        )
        if not started:
            raise LoginError("busy", _BUSY)
        return LoginStart(
            authorization.url,
            LoginCookie(
                name=self.cookie_name,
                value=fresh,
                max_age=int(self.pending_ttl) + 60,
                secure=self.secure_cookie,
            ),
        )

    async def finish_login(
        self, request: object, callback_url: str, state: str | None, *, cookie: str | None
    ) -> str:
        """Complete a callback; the account it logged in.

        The login is taken only once the browser and `authorize` agree: a
        callback from another browser, or without the login cookie, leaves
        the login for its own browser.

        Raises:
            LoginError: unknown, used or expired login, or another browser's.
            AccountRefused, AuthorizeFailed: see `check`.
            AuthorizationError: denied, failed, or the code exchange refused.
        """
        if not state or len(state) > 512:
            raise LoginError("bad_request", "the callback carries no usable state")
        found = await self.pending.find(state)
        if isinstance(found, Taken):
            raise LoginError(found.value, _MESSAGES[found])
        browser = await self.pending.browser(cookie_digest(cookie)) if usable(cookie) else None
        if browser is None or not hmac.compare_digest(browser, found.browser):
            raise LoginError("other_browser", _OTHER_BROWSER)
        await decide(self.authorize, request, found.account)
        taken = await self.pending.take(state)
        if isinstance(taken, Taken):  # another request of this browser took it meanwhile
            raise LoginError(taken.value, _MESSAGES[taken])
        authorization = AuthorizationRequest(
            url="",
            state=taken.state,
            code_verifier=taken.code_verifier,
            redirect_uri=taken.redirect_uri,
        )
        await self.oauth.complete_authorization(taken.account, callback_url, authorization)
        return taken.account

    def success_location(self, account: str) -> str:
        """Where a completed login goes."""
        return self.success_url.replace("{account}", account)

    def answer(
        self, error: BaseException, *, method: str, path: str
    ) -> tuple[HttpAnswer, str] | None:
        """The HTTP answer for `error` and a new request id, logged; None: not ours (a 500).

        The browser gets the answer's title and public text with the id; the
        error's message goes to the ``wiser_async.web`` log at WARNING (an
        `authorize` that raised: ERROR, with its traceback) under the same id.
        `path` is logged quoted (a decoded path may hold a line break): pass it
        without its query.
        """
        answer = http_answer(error)
        if answer is None:
            return None
        request_id = secrets.token_hex(8)
        if isinstance(error, AuthorizeFailed):
            logger.error(
                "request %s: %s %r -> %d: %s",
                request_id,
                method,
                path,
                answer.status,
                error,
                exc_info=error.__cause__ or error,
            )
        else:
            logger.warning(
                "request %s: %s %r -> %d %s: %s",
                request_id,
                method,
                path,
                answer.status,
                answer.reason or answer.title,
                error,
            )
        return answer, request_id

    async def summary(self, request: object, accounts: Iterable[str]) -> dict[str, Any]:
        """Counts of locations, sites, rooms and devices of `accounts`, and what failed.

        Each account is checked with `authorize` first (any refusal: 403).
        """
        chosen = sorted(set(accounts))
        for account in chosen:
            await self.check(request, account)
        result = await self.client.crawl(accounts=chosen) if chosen else None
        counts: dict[str, dict[str, int]] = {account: {} for account in chosen}
        for node in result.nodes() if result else ():
            kinds = counts[node.account]
            kinds[node.kind + "s"] = kinds.get(node.kind + "s", 0) + 1
        return {
            "accounts": counts,
            "complete": result.complete if result else True,
            "failures": [failure.to_dict() for failure in result.failures] if result else [],
        }


def error_page(answer: HttpAnswer, request_id: str, login_again: str | None = None) -> str:
    """A small HTML page for a refused login or callback (escaped; no secret, no internals)."""
    from html import escape

    text = f"<p>{escape(answer.public)}</p>" if answer.public else ""
    link = f'<p><a href="{escape(login_again)}">Log in again</a></p>' if login_again else ""
    return (
        f"<!doctype html><title>{escape(answer.title)}</title><h1>{escape(answer.title)}</h1>"
        f"{text}<p>Request id: {escape(request_id)}</p>{link}"
    )
