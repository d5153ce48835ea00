"""`WiserOAuth`: the authorization-code flow, and tokens that stay fresh and are never lost.

The facade: the authorization-request side lives in `_authorization`, the
per-account token keeping in `_token_keeper`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import httpx2

from token_stores import DEFAULT_LOCK_TIMEOUT, MemoryTokenStore, Token, TokenStore

from ._config import DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL
from .errors import AuthorizationReplayed

# The authorization-request side (and authlib under it) is imported by the
# first authorization: a worker that only refreshes tokens never pays for it.
if TYPE_CHECKING:
    from ._authorization import AuthorizationRequest, ReplayMemory
    from ._redact import Secrets

__all__ = ["WiserOAuth"]


class WiserOAuth:
    """OAuth2 authorization-code flow with PKCE, and tokens that stay fresh and are never lost.

    One instance serves any number of accounts (customer authorizations),
    each named by an account key; create one per process. Tokens live in a
    `TokenStore`; the valid token of each account is also held in memory, so
    an API request costs no store round trip.

    - **Single-flight refresh:** however many tasks need a fresh token for an
      account at once, one refreshes and the others wait for it. Across
      processes the store's lock does the same, and a process re-reads the
      store after taking the lock, so it uses another process's refresh
      rather than repeating it (which, with refresh-token rotation, fails).
    - **Never lost:** if the store cannot take a token the server just issued
      (an outage, a full disk), this process keeps it, answers with it and
      saves it as soon as the store takes writes again.
    - **Revocation reaches every process:** every `revocation_check_interval`
      seconds of use, an account's token is checked against the store's
      change marker (no round trip while nothing changes); a token deleted or
      replaced elsewhere stops being used here.

    Args:
        client_id: The application's client id.
        client_secret: The application's client secret (never logged or shown);
            None for a public client (``token_endpoint_auth_method="none"``).
        redirect_uri: The registered callback URL; needed to authorize (unless
            each `authorization_request` names one), not to use stored tokens.
        store: Where tokens are kept; a `MemoryTokenStore` by default.
        scopes: Scopes requested at authorization, joined with spaces. A
            refresh asks for no scope: it keeps what was granted.
        authorize_url: The authorization endpoint.
        token_url: The token endpoint.
        issuer: The authorization server's issuer identifier. When set, the
            callback must carry it as ``iss`` (RFC 9207), or the code is not
            exchanged (`IssuerMismatch`).
        leeway: Refresh this many seconds before expiry (at most a quarter of
            the token's lifetime, so short-lived tokens are not refreshed on
            every call).
        leeway_jitter: Up to this fraction is added to the leeway, at random
            per process, so that processes do not all refresh at once.
        token_endpoint_auth_method: ``"client_secret_post"`` (the contract's
            form fields), ``"client_secret_basic"`` (HTTP Basic, id and secret
            form-urlencoded first as RFC 6749 section 2.3.1 says) or ``"none"``.
        timeout: Seconds allowed for each token-endpoint request.
        lock_timeout: Seconds to wait for the store's lock of an account.
        default_token_lifetime: Seconds an access token lives when the token
            answer has no usable ``expires_in`` (the contract's 3600 s); None:
            unknown, used until the API answers 401.
        revocation_check_interval: Seconds between looks at the store's change
            marker of an account in use: the bound on how long a token deleted
            by another process is still used here.
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
        issuer: str | None = None,
        leeway: float = 60.0,
        leeway_jitter: float = 0.1,
        token_endpoint_auth_method: str = "client_secret_post",  # noqa: S107 - a method name
        timeout: float = 10.0,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        default_token_lifetime: float | None = 3600.0,
        revocation_check_interval: float = 0.5,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        # The token endpoint, the keeper and the redaction of secrets are imported
        # by the first `WiserOAuth`, not by the package's import.
        from ._redact import Secrets, install_log_filter
        from ._token_endpoint import TokenEndpoint
        from ._token_keeper import TokenKeeper

        if leeway < 0 or leeway_jitter < 0:
            raise ValueError("leeway and leeway_jitter must not be negative")
        if not revocation_check_interval > 0:
            raise ValueError("revocation_check_interval must be positive")
        if isinstance(scopes, str):
            raise TypeError("scopes is a list of scopes, not one string")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scopes = tuple(scopes)
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.issuer = issuer
        self.default_token_lifetime = default_token_lifetime
        self._secrets = Secrets()
        self._secrets.add_client(client_id, client_secret)
        install_log_filter()
        self._endpoint = TokenEndpoint(
            url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=token_endpoint_auth_method,
            timeout=timeout,
            transport=transport,
            secrets=self._secrets,
            default_lifetime=default_token_lifetime,
        )
        # The store and the refresh settings belong to the keeper; the
        # properties below read and set them there, so a change takes effect.
        self._keeper = TokenKeeper(
            store=store if store is not None else MemoryTokenStore(),
            endpoint=self._endpoint,
            secrets=self._secrets,
            leeway=leeway,
            leeway_jitter=leeway_jitter,
            lock_timeout=lock_timeout,
            revocation_check_interval=revocation_check_interval,
        )

    @functools.cached_property
    def _replays(self) -> ReplayMemory:
        # Authorizations and codes completed already, to refuse a replay.
        from ._authorization import ReplayMemory

        return ReplayMemory()

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
        """Save any token the store could not take yet (one last try), then close the pool."""
        with anyio.CancelScope(shield=True):
            await self._keeper.save_unsaved_tokens()
            await self._endpoint.aclose()

    @property
    def store(self) -> TokenStore:
        """Where tokens are kept."""
        return self._keeper.store

    @store.setter
    def store(self, store: TokenStore) -> None:
        self._keeper.store = store

    @property
    def leeway(self) -> float:
        """Refresh this many seconds before expiry (at most a quarter of the lifetime)."""
        return self._keeper.leeway

    @leeway.setter
    def leeway(self, leeway: float) -> None:
        self._keeper.leeway = leeway

    @property
    def leeway_jitter(self) -> float:
        """Up to this fraction is added to the leeway, at random."""
        return self._keeper.leeway_jitter

    @leeway_jitter.setter
    def leeway_jitter(self, leeway_jitter: float) -> None:
        self._keeper.leeway_jitter = leeway_jitter

    @property
    def lock_timeout(self) -> float:
        """Seconds to wait for the store's lock of an account."""
        return self._keeper.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, lock_timeout: float) -> None:
        self._keeper.lock_timeout = lock_timeout

    @property
    def revocation_check_interval(self) -> float:
        """Seconds between looks at the store's change marker of an account in use."""
        return self._keeper.revocation_check_interval

    @revocation_check_interval.setter
    def revocation_check_interval(self, revocation_check_interval: float) -> None:
        self._keeper.revocation_check_interval = revocation_check_interval

    @property
    def secrets(self) -> Secrets:
        """The secrets this instance knows, which server text is redacted of."""
        return self._secrets

    @property
    def token_requests(self) -> dict[str, int]:
        """Token-endpoint requests sent, by grant type."""
        return dict(self._endpoint.requests)

    @property
    def unsaved_accounts(self) -> list[str]:
        """Accounts whose newest token only this process holds (the store could not take it)."""
        return self._keeper.unsaved_accounts

    def redact(self, text: str, account: str | None = None) -> str:
        """`text` (server text) with the secrets this instance knows replaced by ``***``."""
        return self._secrets.redact(text, account)

    # -- authorization-code flow -------------------------------------------------

    def authorization_request(
        self,
        *,
        scopes: Sequence[str] | None = None,
        login_hint: str | None = None,
        redirect_uri: str | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> AuthorizationRequest:
        """Start an authorization: a URL carrying a fresh `state` and a PKCE S256 challenge.

        Args:
            scopes: Scopes for this request instead of the instance's.
            login_hint: Passed to the authorization server as ``login_hint``.
            redirect_uri: The callback for this request instead of the
                instance's (a web backend serving several hosts); carried in
                the returned request and used by the code exchange.
            extra_params: More query parameters (``prompt``, ``audience``...);
                they cannot change the ones the flow sets.

        Raises:
            ValueError: no redirect URI, or `extra_params` names a flow parameter.
        """
        redirect_uri = redirect_uri or self.redirect_uri
        if redirect_uri is None:
            raise ValueError(
                "an authorization request needs a redirect URI: WiserOAuth(redirect_uri=...) "
                "or authorization_request(redirect_uri=...)"
            )
        from ._authorization import build_authorization_request

        return build_authorization_request(
            authorize_url=self.authorize_url,
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            scopes=self.scopes if scopes is None else tuple(scopes),
            login_hint=login_hint,
            extra_params=extra_params,
        )

    async def complete_authorization(
        self, account: str, callback_url: str, request: AuthorizationRequest
    ) -> Token:
        """Finish an authorization from the URL the user was redirected back to.

        Checks `state` in constant time, then ``iss`` when `issuer` is set,
        turns an RFC 6749 error into a typed error, exchanges the code once
        (with the PKCE verifier) and stores the token.

        Raises:
            StateMismatch: the callback's state is missing or not `request.state`.
            IssuerMismatch: ``iss`` is missing or not `issuer` (RFC 9207).
            AuthorizationReplayed: this request was completed already; the
                stored grant is left as it is.
            AuthorizationDenied: the user refused (``error=access_denied``).
            AuthorizationFailed: another error, or no code, in the callback.
            TokenEndpointError: the code exchange was refused.
            StoreError: the store failed (the token is kept in this process).
        """
        from ._authorization import callback_code

        code = callback_code(
            callback_url, request, issuer=self.issuer, redact=self.redact, replays=self._replays
        )
        return await self.exchange_code(
            account, code, code_verifier=request.code_verifier, redirect_uri=request.redirect_uri
        )

    async def exchange_code(
        self, account: str, code: str, *, code_verifier: str, redirect_uri: str | None = None
    ) -> Token:
        """Exchange an authorization code for a token and store it under `account`.

        A code is exchanged at most once by this instance: a second call with
        the same code raises `AuthorizationReplayed` without sending it.
        """
        redirect_uri = redirect_uri or self.redirect_uri
        if redirect_uri is None:
            raise ValueError("a code exchange needs the redirect_uri of its authorization")
        if self._replays.seen("code", code):
            raise AuthorizationReplayed
        self._replays.remember("code", code)
        self._secrets.add_one_time(code, code_verifier)
        return await self._keeper.exchange_code(
            account, code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
        )

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
            StoreError: the store failed and no unexpired token is at hand.
        """
        return await self._keeper.token(account, rejected=rejected)

    async def access_token(self, account: str) -> str:
        """The access token string of `account` (see `token`)."""
        return (await self.token(account)).access_token

    async def refresh(self, account: str, *, scopes: Sequence[str] | None = None) -> Token:
        """Refresh the token of `account` now, whatever its expiry.

        Args:
            scopes: Ask for these scopes (a subset of those granted, RFC 6749
                section 6); by default no scope is sent and the grant keeps its own.
        """
        return await self._keeper.refresh(account, scopes=scopes)

    async def forget(self, account: str) -> bool:
        """Delete the account's token from the store and this process. True if one was stored.

        Other processes sharing the store stop using it within
        `revocation_check_interval` seconds of their next use.
        """
        return await self._keeper.forget(account)
