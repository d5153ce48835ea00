"""`WiserOAuth`: the authorization-code flow and single-flight token refresh."""

from __future__ import annotations

import hmac
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import anyio
import attrs
import httpx2
import stamina
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from token_stores import DEFAULT_LOCK_TIMEOUT, MemoryTokenStore, Token, TokenStore

from ._config import DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL
from .errors import (
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationRequired,
    StateMismatch,
    TokenEndpointError,
)

__all__ = ["AuthorizationRequest", "WiserOAuth"]

# A refresh starts at most this fraction of a token's lifetime before expiry,
# whatever the leeway: a 60 s leeway on a 2 s token would refresh on every call.
MAX_LEEWAY_FRACTION = 0.25
# Statuses of the token endpoint after which a request is safely repeated:
# the server did not act on it.
_TOKEN_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@attrs.frozen(kw_only=True)
class AuthorizationRequest:
    """A pending authorization: send the user to `url`, keep the rest for the callback.

    A web backend keeps `state` and `code_verifier` server-side (in the
    user's session) between the login redirect and the callback.

    Attributes:
        url: The authorization URL to redirect the user to.
        state: The anti-CSRF value the callback must echo.
        code_verifier: The PKCE secret (S256). Never shown by `repr`.
        redirect_uri: The callback URL the code will be sent to.
    """

    url: str
    state: str
    code_verifier: str = attrs.field(repr=False)
    redirect_uri: str

    def to_dict(self) -> dict[str, str]:
        """What the callback needs, for a server-side session (it holds the verifier)."""
        return {
            "state": self.state,
            "code_verifier": self.code_verifier,
            "redirect_uri": self.redirect_uri,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> AuthorizationRequest:
        """Rebuild a pending authorization from `to_dict`'s output (``url`` is not kept)."""
        return cls(
            url="",
            state=data["state"],
            code_verifier=data["code_verifier"],
            redirect_uri=data["redirect_uri"],
        )


@attrs.frozen
class _Cached:
    token: Token
    # Wall-clock time after which this process refreshes the token.
    refresh_at: float


class WiserOAuth:
    """OAuth2 authorization-code flow with PKCE, and tokens that stay fresh.

    One instance serves any number of accounts (customer authorizations),
    each named by an account key. Tokens live in a `TokenStore`; the valid
    token of each account is also cached in memory, so an API request costs
    no store round trip.

    Refresh is single-flight: however many tasks need a fresh token for an
    account at once, one of them refreshes and the others wait for it. Across
    processes the store's lock does the same, and a process re-reads the store
    after taking the lock, so it uses another process's refresh rather than
    repeating it (which, with refresh-token rotation, would fail).

    Args:
        client_id: The application's client id.
        client_secret: The application's client secret (never logged or shown).
        redirect_uri: The registered callback URL; needed to authorize, not
            to use and refresh stored tokens.
        store: Where tokens are kept; a `MemoryTokenStore` by default.
        scopes: Scopes requested, joined with spaces.
        authorize_url: The authorization endpoint.
        token_url: The token endpoint.
        leeway: Refresh this many seconds before expiry (at most a quarter of
            the token's lifetime, so short-lived tokens are not refreshed on
            every call).
        leeway_jitter: Up to this fraction is added to the leeway, at random
            per process, so that processes do not all refresh at once.
        token_endpoint_auth_method: ``"client_secret_post"`` (the contract's
            form fields) or ``"client_secret_basic"`` (HTTP Basic).
        timeout: Seconds allowed for each token-endpoint request.
        lock_timeout: Seconds to wait for the store's lock of an account.
        default_token_lifetime: Seconds an access token lives when the token
            response has no usable ``expires_in`` (the contract's 3600 s);
            None: unknown, refreshed only after a 401.
        transport: An httpx2 transport for the token endpoint, such as the
            sandbox's in-process one.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None,
        redirect_uri: str | None = None,
        store: TokenStore | None = None,
        scopes: Sequence[str] = (),
        authorize_url: str = DEFAULT_AUTHORIZE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        leeway: float = 60.0,
        leeway_jitter: float = 0.1,
        token_endpoint_auth_method: str = "client_secret_post",  # noqa: S107 - a method name
        timeout: float = 10.0,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        default_token_lifetime: float | None = 3600.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if leeway < 0 or leeway_jitter < 0:
            raise ValueError("leeway and leeway_jitter must not be negative")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.scopes = tuple(scopes)
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.leeway = leeway
        self.leeway_jitter = leeway_jitter
        self.lock_timeout = lock_timeout
        self.default_token_lifetime = default_token_lifetime
        self._token_path = urlsplit(token_url).path or "/"
        client_kwargs: dict[str, Any] = {"timeout": timeout}
        if transport is not None:
            client_kwargs["transport"] = transport
        self._oauth_client = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=token_endpoint_auth_method,
            scope=" ".join(self.scopes) or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            **client_kwargs,
        )
        self._cache: dict[str, _Cached] = {}
        self._flights: dict[str, anyio.Lock] = {}
        # Fingerprints of tokens whose refresh token the server rejected: they
        # are not sent again until the store holds another token.
        self._dead: dict[str, str] = {}
        self.token_requests: dict[str, int] = {"authorization_code": 0, "refresh_token": 0}

    def __repr__(self) -> str:
        return (
            f"WiserOAuth(client_id={self.client_id!r}, redirect_uri={self.redirect_uri!r}, "
            f"store={self.store!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the token endpoint's connection pool."""
        await self._oauth_client.aclose()

    # -- authorization-code flow -------------------------------------------------

    def authorization_request(
        self,
        *,
        scopes: Sequence[str] | None = None,
        login_hint: str | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> AuthorizationRequest:
        """Start an authorization: a URL carrying a fresh `state` and a PKCE S256 challenge.

        Args:
            scopes: Scopes for this request instead of the instance's.
            login_hint: Passed to the authorization server as ``login_hint``.
            extra_params: More query parameters for the authorization URL.
        """
        if self.redirect_uri is None:
            raise ValueError("an authorization request needs WiserOAuth(redirect_uri=...)")
        code_verifier = generate_token(64)
        state = generate_token(32)
        params: dict[str, Any] = dict(extra_params or {})
        if scopes is not None:
            params["scope"] = " ".join(scopes)
        if login_hint is not None:
            params["login_hint"] = login_hint
        url, _ = self._oauth_client.create_authorization_url(
            self.authorize_url, state=state, code_verifier=code_verifier, **params
        )
        return AuthorizationRequest(
            url=url, state=state, code_verifier=code_verifier, redirect_uri=self.redirect_uri
        )

    async def complete_authorization(
        self, account: str, callback_url: str, request: AuthorizationRequest
    ) -> Token:
        """Finish an authorization from the URL the user was redirected back to.

        Checks `state` in constant time, turns an RFC 6749 error into a typed
        error, exchanges the code (with the PKCE verifier) and stores the token.

        Raises:
            StateMismatch: the callback's state is missing or not `request.state`.
            AuthorizationDenied: the user refused (``error=access_denied``).
            AuthorizationFailed: another error, or no code, in the callback.
            TokenEndpointError: the code exchange was refused.
        """
        query = urlsplit(callback_url).query
        params = dict(parse_qsl(query, keep_blank_values=True))
        state = params.get("state", "")
        # Checked before anything else: an error from a forged callback means nothing.
        if not hmac.compare_digest(state.encode(), request.state.encode()):
            raise StateMismatch
        error = params.get("error")
        if error == "access_denied":
            raise AuthorizationDenied(params.get("error_description"))
        if error:
            raise AuthorizationFailed(error, params.get("error_description"))
        code = params.get("code")
        if not code:
            raise AuthorizationFailed("invalid_request", "the callback carries no code")
        return await self.exchange_code(
            account, code, code_verifier=request.code_verifier, redirect_uri=request.redirect_uri
        )

    async def exchange_code(
        self, account: str, code: str, *, code_verifier: str, redirect_uri: str | None = None
    ) -> Token:
        """Exchange an authorization code for a token and store it under `account`."""
        redirect_uri = redirect_uri or self.redirect_uri
        if redirect_uri is None:
            raise ValueError("a code exchange needs the redirect_uri of its authorization")
        # A code is single-use: once exchanged, the token must reach the store.
        with _finishing("code exchange", self._token_path):
            token = await self._token_request(
                "authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
            )
            await self.store.save(account, token)
        self._dead.pop(account, None)
        self._cache[account] = self._cached(token)
        return token

    # -- tokens ------------------------------------------------------------------

    async def token(self, account: str, *, rejected: Token | None = None) -> Token:
        """A valid token of `account`, refreshed first if it is near expiry.

        Args:
            account: The account key.
            rejected: A token the API just refused (401): it will not be
                returned again; a newer one is, refreshing if needed.

        Raises:
            AuthorizationRequired: no token, or the refresh token is no longer valid.
            TokenEndpointError: the token endpoint failed otherwise.
            token_stores.TokenStoreError: the store failed.
        """
        cached = self._cache.get(account)
        if cached is not None and rejected is None and time.time() < cached.refresh_at:
            return cached.token
        return await self._refresh_single_flight(account, rejected)

    async def access_token(self, account: str) -> str:
        """The access token string of `account` (see `token`)."""
        return (await self.token(account)).access_token

    async def forget(self, account: str) -> bool:
        """Delete the account's token from the store and the cache. True if one was stored."""
        self._cache.pop(account, None)
        self._dead.pop(account, None)
        return await self.store.delete(account)

    def _cached(self, token: Token) -> _Cached:
        if token.expires_at is None:
            # No expiry known: use it until the API answers 401.
            return _Cached(token, float("inf"))
        lifetime = token.lifetime
        leeway = self.leeway
        if lifetime is not None:
            leeway = min(leeway, lifetime * MAX_LEEWAY_FRACTION)
        leeway *= 1.0 + self.leeway_jitter * random.random()
        return _Cached(token, token.expires_at - leeway)

    def _usable(self, cached: _Cached, rejected: Token | None) -> bool:
        if rejected is not None and cached.token.fingerprint == rejected.fingerprint:
            return False
        return time.time() < cached.refresh_at

    async def _refresh_single_flight(self, account: str, rejected: Token | None) -> Token:
        flight = self._flights.get(account)
        if flight is None:
            flight = self._flights[account] = anyio.Lock()
        async with flight:
            # Whoever held the lock before us may have refreshed already.
            cached = self._cache.get(account)
            if cached is not None and self._usable(cached, rejected):
                return cached.token
            async with self.store.lock(account, timeout=self.lock_timeout):
                return await self._refresh_locked(account, rejected)

    async def _refresh_locked(self, account: str, rejected: Token | None) -> Token:
        current = await self.store.load(account)
        if current is None:
            self._cache.pop(account, None)
            raise AuthorizationRequired(account, "no token is stored")
        cached = self._cached(current)
        if self._usable(cached, rejected):
            # Another process refreshed while this one waited for the lock.
            self._cache[account] = cached
            return current
        if current.refresh_token is None:
            raise AuthorizationRequired(account, "the token expired and there is no refresh token")
        if self._dead.get(account) == current.fingerprint:
            raise AuthorizationRequired(account, "the refresh token was rejected (invalid_grant)")
        # From here the refresh runs to its end even if the caller is
        # cancelled (a deadline, a closed web request, Ctrl-C): once the server
        # has rotated the refresh token, only saving the new one keeps the grant.
        with _finishing("refresh", self._token_path):
            return await self._refresh_and_save(account, current, current.refresh_token)

    async def _refresh_and_save(self, account: str, current: Token, refresh_token: str) -> Token:
        try:
            new = await self._token_request("refresh_token", refresh_token=refresh_token)
        except TokenEndpointError as exc:
            if exc.error != "invalid_grant":
                raise
            # Another process may have refreshed with a lock we could not see
            # (an expired lease): its token is in the store.
            latest = await self.store.load(account)
            if latest is not None and latest.fingerprint != current.fingerprint:
                self._cache[account] = self._cached(latest)
                return latest
            self._dead[account] = current.fingerprint
            self._cache.pop(account, None)
            raise AuthorizationRequired(
                account, "the refresh token was rejected (invalid_grant)"
            ) from None
        if new.refresh_token is None:
            # RFC 6749 6: the server may keep the refresh token unchanged.
            new = attrs.evolve(new, refresh_token=current.refresh_token)
        if not await self.store.compare_and_set(account, current, new):
            # The store changed after we read it, despite the lock: the store wins.
            latest = await self.store.load(account)
            if latest is None:
                raise AuthorizationRequired(account, "the token was deleted during a refresh")
            new = latest
        self._cache[account] = self._cached(new)
        return new

    async def _token_request(self, grant_type: str, **params: str) -> Token:
        """One token-endpoint call, retried only where the server did not act on it."""
        self.token_requests[grant_type] = self.token_requests.get(grant_type, 0) + 1
        try:
            async for attempt in stamina.retry_context(
                on=_token_call_retryable, attempts=3, timeout=30.0, wait_initial=0.2, wait_max=2.0
            ):
                with attempt:
                    if grant_type == "refresh_token":
                        response = await self._oauth_client.refresh_token(
                            self.token_url, refresh_token=params["refresh_token"]
                        )
                    else:
                        response = await self._oauth_client.fetch_token(
                            self.token_url, grant_type=grant_type, **params
                        )
        except OAuthError as exc:
            raise TokenEndpointError(
                str(exc.error), exc.description or None, path=self._token_path
            ) from None
        except httpx2.HTTPStatusError as exc:
            raise TokenEndpointError(
                "server_error", status_code=exc.response.status_code, path=self._token_path
            ) from None
        except httpx2.TimeoutException as exc:
            raise TokenEndpointError("timeout", type(exc).__name__, path=self._token_path) from None
        except httpx2.TransportError as exc:
            raise TokenEndpointError(
                "unreachable", type(exc).__name__, path=self._token_path
            ) from None
        except ValueError as exc:
            # authlib's message for a body that is not a JSON object; no secret in it.
            raise TokenEndpointError("invalid_response", str(exc), path=self._token_path) from None
        try:
            return Token.from_response(dict(response), default_lifetime=self.default_token_lifetime)
        except ValueError as exc:
            raise TokenEndpointError("invalid_response", str(exc), path=self._token_path) from None


# How long a refresh or a code exchange may take once started, whatever
# happens to its caller: the token endpoint's retries and the store's write.
FINISHING_LIMIT = 120.0


@contextmanager
def _finishing(what: str, path: str) -> Iterator[None]:
    """Shield a token-endpoint call and the save after it from cancellation, for a bounded time."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(FINISHING_LIMIT):
                yield
        except TimeoutError:
            raise TokenEndpointError(
                "timeout", f"the {what} did not finish within {FINISHING_LIMIT:g} s", path=path
            ) from None


def _token_call_retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return True
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code in _TOKEN_RETRY_STATUSES
    return False
