"""`WiserOAuth`: the authorization-code flow, and tokens that stay fresh and are never lost."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import anyio
import attrs
import httpx2
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from token_stores import DEFAULT_LOCK_TIMEOUT, MemoryTokenStore, Token, TokenStore, TokenStoreError

from ._config import DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL
from ._redact import Secrets, install_log_filter
from ._token_endpoint import TokenEndpoint
from .errors import (
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationReplayed,
    AuthorizationRequired,
    IssuerMismatch,
    StateMismatch,
    TokenEndpointError,
    store_error,
)

__all__ = ["AuthorizationRequest", "WiserOAuth"]

logger = logging.getLogger("wiser_async.oauth")

# A refresh starts at most this fraction of a token's lifetime before expiry,
# whatever the leeway: a 60 s leeway on a 2 s token would refresh on every call.
MAX_LEEWAY_FRACTION = 0.25
# How long a refresh or a code exchange may take once started, whatever
# happens to its caller: the token endpoint's retries and the store's write.
FINISHING_LIMIT = 120.0
# Token-endpoint attempts per grant request; waits between them (seconds).
_GRANT_ATTEMPTS = 3
_GRANT_WAIT = (0.2, 1.0)
_MAX_RETRY_AFTER = 10.0
# Failures after which the token endpoint did not act, or may not have: worth another try.
_RETRYABLE_ERRORS = frozenset(
    {"unreachable", "connection_lost", "timeout", "server_error", "temporarily_unavailable"}
)
# Saving a new token: quick tries while the caller waits, then on later calls
# with a growing pause, for as long as the process lives.
_QUICK_SAVE_WAITS = (0.1, 0.3)
_SAVE_RETRY_FIRST, _SAVE_RETRY_MAX = 1.0, 30.0
# How long the taker of an expired lock waits for its previous holder's save
# before it sends the refresh token itself.
_TAKEOVER_WAIT = 10.0
# When the store is down and a refresh is due, a token that has not expired
# yet is used on, looking at the store again after this long.
_STORE_DOWN_RECHECK = 1.0
# Authorizations and codes remembered as completed, to refuse a replay.
_REMEMBERED_COMPLETIONS = 10_000
# Parameters of the authorization request that the flow sets itself.
_FLOW_PARAMETERS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "login_hint",
    }
)


@attrs.frozen(kw_only=True)
class AuthorizationRequest:
    """A pending authorization: send the user to `url`, keep the rest for the callback.

    A web backend keeps it server-side (`to_dict`) between the login
    redirect and the callback: it holds the PKCE verifier.

    Attributes:
        url: The authorization URL to redirect the user to.
        state: The anti-CSRF value the callback must echo.
        code_verifier: The PKCE secret (S256). Never shown by `repr`.
        redirect_uri: The callback URL the code will be sent to, and the one
            the code exchange names.
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


@attrs.define(eq=False)
class _Unsaved:
    """A token only this process holds: the store could not take it yet."""

    token: Token
    # What the store held before (compare-and-set); None: save unconditionally.
    expected: Token | None
    conditional: bool
    retry_at: float
    wait: float = _SAVE_RETRY_FIRST


@attrs.define(eq=False)
class _Account:
    """What this process knows of one account."""

    flight: anyio.Lock
    token: Token | None = None
    # Wall-clock times: when the token is due for a refresh; when to look at
    # the store's change marker again. `fresh_until` is the earliest of those
    # (and of a pending save's retry), so the hot path makes one comparison.
    refresh_at: float = -math.inf
    check_at: float = -math.inf
    fresh_until: float = -math.inf
    marker: Hashable = None
    unsaved: _Unsaved | None = None
    # Fingerprint of a token whose refresh token the server refused: not sent again.
    dead: str | None = None


class _Refused(Exception):
    """The refresh token was refused (``invalid_grant``) and the store shows nothing newer."""


class _Superseded(Exception):
    """Another process refreshed while this one waited to try again: its token is in the store."""


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
        if leeway < 0 or leeway_jitter < 0:
            raise ValueError("leeway and leeway_jitter must not be negative")
        if not revocation_check_interval > 0:
            raise ValueError("revocation_check_interval must be positive")
        if isinstance(scopes, str):
            raise TypeError("scopes is a list of scopes, not one string")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.scopes = tuple(scopes)
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.issuer = issuer
        self.leeway = leeway
        self.leeway_jitter = leeway_jitter
        self.lock_timeout = lock_timeout
        self.default_token_lifetime = default_token_lifetime
        self.revocation_check_interval = revocation_check_interval
        self._secrets = Secrets()
        self._secrets.add_shared(client_secret)
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
        self._accounts: dict[str, _Account] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()

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
            for account, state in list(self._accounts.items()):
                if state.unsaved is not None:
                    await self._save_unsaved(account, state)
                if state.unsaved is not None:
                    logger.error(
                        "the newest token of account %r could not be saved and is lost with this "
                        "process; the store keeps the one before, which the server may no longer "
                        "accept",
                        account,
                    )
            await self._endpoint.aclose()

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
        return sorted(key for key, state in self._accounts.items() if state.unsaved is not None)

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
        extra = dict(extra_params or {})
        owned = sorted(_FLOW_PARAMETERS & extra.keys())
        if owned:
            raise ValueError(
                f"extra_params cannot set {', '.join(owned)}: the flow sets them "
                "(use the scopes=, login_hint= and redirect_uri= arguments)"
            )
        if not all(isinstance(value, str) for value in extra.values()):
            raise ValueError("extra_params values must be strings")
        code_verifier = generate_token(64)
        state = generate_token(32)
        chosen = self.scopes if scopes is None else tuple(scopes)
        params = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", redirect_uri),
            *([("scope", " ".join(chosen))] if chosen else []),
            ("state", state),
            ("code_challenge", _s256(code_verifier)),
            ("code_challenge_method", "S256"),
            *([("login_hint", login_hint)] if login_hint is not None else []),
            *extra.items(),
        ]
        return AuthorizationRequest(
            url=add_params_to_uri(self.authorize_url, params),
            state=state,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
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
        params = dict(parse_qsl(urlsplit(callback_url).query, keep_blank_values=True))
        state = params.get("state", "")
        # Checked before anything else: an error from a forged callback means nothing.
        if not hmac.compare_digest(state.encode(), request.state.encode()):
            raise StateMismatch
        if self.issuer is not None and params.get("iss") != self.issuer:
            received = params.get("iss")
            raise IssuerMismatch(
                self.issuer, None if received is None else self.redact(received)[:200]
            )
        if _digest("state", request.state) in self._completed:
            raise AuthorizationReplayed
        error = params.get("error")
        description = params.get("error_description")
        if description is not None:
            description = self.redact(description)[:500]
        if error == "access_denied":
            raise AuthorizationDenied(description)
        if error:
            raise AuthorizationFailed(self.redact(error)[:100], description)
        code = params.get("code")
        if not code:
            raise AuthorizationFailed("invalid_request", "the callback carries no code")
        self._remember(_digest("state", request.state))
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
        spent = _digest("code", code)
        if spent in self._completed:
            raise AuthorizationReplayed
        self._remember(spent)
        self._secrets.add_one_time(code, code_verifier)
        state = self._state(account)
        # A code is single-use: once exchanged, the token must reach the store.
        with _finishing("code exchange", self._endpoint.path):
            token = await self._grant(
                account,
                "authorization_code",
                {"code": code, "code_verifier": code_verifier, "redirect_uri": redirect_uri},
                stored=None,
            )
            state.dead = None
            await self._store_new(account, state, token, expected=None, conditional=False)
        return token

    def _remember(self, digest: str) -> None:
        self._completed[digest] = None
        while len(self._completed) > _REMEMBERED_COMPLETIONS:
            self._completed.popitem(last=False)

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
        state = self._accounts.get(account)
        if state is not None and rejected is None and time.time() < state.fresh_until:
            return state.token  # type: ignore[return-value] # fresh_until is finite only with a token
        return await self._token_slow(account, rejected, refresh=False, scopes=None)

    async def access_token(self, account: str) -> str:
        """The access token string of `account` (see `token`)."""
        return (await self.token(account)).access_token

    async def refresh(self, account: str, *, scopes: Sequence[str] | None = None) -> Token:
        """Refresh the token of `account` now, whatever its expiry.

        Args:
            scopes: Ask for these scopes (a subset of those granted, RFC 6749
                section 6); by default no scope is sent and the grant keeps its own.
        """
        return await self._token_slow(account, None, refresh=True, scopes=scopes)

    async def forget(self, account: str) -> bool:
        """Delete the account's token from the store and this process. True if one was stored.

        Other processes sharing the store stop using it within
        `revocation_check_interval` seconds of their next use.
        """
        self._accounts.pop(account, None)
        try:
            return await self.store.delete(account)
        except TokenStoreError as exc:
            raise store_error(exc) from exc

    def _state(self, account: str) -> _Account:
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account(anyio.Lock())
        return state

    def _refresh_time(self, token: Token) -> float:
        if token.expires_at is None:
            # No expiry known: use it until the API answers 401.
            return math.inf
        lifetime = token.lifetime
        leeway = self.leeway
        if lifetime is not None:
            leeway = min(leeway, lifetime * MAX_LEEWAY_FRACTION)
        leeway *= 1.0 + self.leeway_jitter * random.random()
        return token.expires_at - leeway

    def _use(self, account: str, state: _Account, token: Token, marker: Hashable) -> None:
        """Make `token` the one this process answers with."""
        if state.token is None or state.token.fingerprint != token.fingerprint:
            state.refresh_at = self._refresh_time(token)
        state.token = token
        state.marker = marker
        state.check_at = time.time() + self.revocation_check_interval
        self._secrets.set_tokens(account, token.access_token, token.refresh_token)
        self._update_fresh_until(state)

    def _update_fresh_until(self, state: _Account) -> None:
        until = min(state.refresh_at, state.check_at)
        if state.unsaved is not None:
            until = min(until, state.unsaved.retry_at)
        state.fresh_until = until if state.token is not None else -math.inf

    def _drop(self, account: str, state: _Account) -> None:
        state.token = None
        state.unsaved = None
        state.fresh_until = state.refresh_at = -math.inf

    def _usable(self, state: _Account, rejected: Token | None) -> bool:
        token = state.token
        if token is None or time.time() >= state.refresh_at:
            return False
        return rejected is None or token.fingerprint != rejected.fingerprint

    async def _token_slow(
        self, account: str, rejected: Token | None, *, refresh: bool, scopes: Sequence[str] | None
    ) -> Token:
        state = self._state(account)
        async with state.flight:
            now = time.time()
            if state.unsaved is not None and now >= state.unsaved.retry_at:
                await self._save_unsaved(account, state)
            if state.token is not None and now >= state.check_at and rejected is None:
                await self._check_store(account, state)
            if not refresh and self._usable(state, rejected):
                self._update_fresh_until(state)
                return state.token  # type: ignore[return-value] # _usable checked it
            return await self._refresh(account, state, rejected, force=refresh, scopes=scopes)

    async def _marker(self, account: str) -> Hashable:
        try:
            marker: Hashable = await self.store.change_marker(account)
        except TokenStoreError:
            return _UNKNOWN
        return marker

    async def _check_store(self, account: str, state: _Account) -> None:
        """Look whether another process deleted or replaced the token (no round trip if not)."""
        state.check_at = time.time() + self.revocation_check_interval
        self._update_fresh_until(state)
        if state.unsaved is not None:
            return  # its save, retried on its own schedule, decides between ours and the store's
        marker = await self._marker(account)
        if marker is _UNKNOWN or marker == state.marker:
            return  # unchanged, or the store cannot tell now: use the token on
        try:
            current = await self.store.load(account)
        except TokenStoreError:
            return
        if current is None:
            logger.info("the token of account %r was deleted from the store", account)
            self._drop(account, state)
        elif state.token is not None and current.fingerprint != state.token.fingerprint:
            logger.debug("the token of account %r was replaced in the store", account)
            self._use(account, state, current, marker)
        else:
            state.marker = marker

    async def _refresh(
        self,
        account: str,
        state: _Account,
        rejected: Token | None,
        *,
        force: bool,
        scopes: Sequence[str] | None,
    ) -> Token:
        try:
            async with self.store.lock(account, timeout=self.lock_timeout) as held:
                taken_over = bool(getattr(held, "taken_over", False))
                try:
                    return await self._refresh_locked(
                        account, state, rejected, force, scopes, taken_over=taken_over
                    )
                except _Refused as refused:
                    stored = refused.args[0]
                    if taken_over:
                        # The lock's previous holder outlived its lease: it may have spent
                        # the refresh token and be about to save what it got.
                        newer = await self._await_late_save(
                            account, stored, self.lock_timeout, "its refresh token was refused"
                        )
                        if newer is not None:
                            self._use(account, state, newer, await self._marker(account))
                            return newer
                    state.dead = stored.fingerprint
                    self._drop(account, state)
                    raise AuthorizationRequired(
                        account, "the refresh token was rejected (invalid_grant)"
                    ) from None
        except TokenStoreError as exc:
            token = state.token
            if (
                token is not None
                and not force
                and not token.expires_within(0)
                and (rejected is None or token.fingerprint != rejected.fingerprint)
            ):
                # The store is down but the token has not expired: use it on, and try again soon.
                logger.warning(
                    "token store unavailable for account %r (%s); using its current token until "
                    "it expires",
                    account,
                    type(exc).__name__,
                )
                state.refresh_at = min(
                    token.expires_at or math.inf, time.time() + _STORE_DOWN_RECHECK
                )
                self._update_fresh_until(state)
                return token
            raise store_error(exc) from exc

    async def _refresh_locked(
        self,
        account: str,
        state: _Account,
        rejected: Token | None,
        force: bool,
        scopes: Sequence[str] | None,
        *,
        taken_over: bool,
    ) -> Token:
        marker = await self._marker(account)
        if state.unsaved is not None:
            # The store answers again: the token only this process holds goes first.
            await self._save_unsaved(account, state)
        stored = await self.store.load(account)
        pending = state.unsaved
        # The newest token: ours while the store still cannot take it.
        current = pending.token if pending is not None else stored
        expected, conditional = (
            (pending.expected, pending.conditional) if pending is not None else (stored, True)
        )
        if current is None:
            self._drop(account, state)
            raise AuthorizationRequired(account, "no token is stored")
        if state.token is None or state.token.fingerprint != current.fingerprint:
            self._use(account, state, current, marker)
        else:
            state.marker = marker
        if not force and self._usable(state, rejected):
            # Another process refreshed while this one waited for the lock.
            return current
        if current.refresh_token is None:
            raise AuthorizationRequired(account, "the token expired and there is no refresh token")
        if state.dead == current.fingerprint:
            raise AuthorizationRequired(account, "the refresh token was rejected (invalid_grant)")
        if taken_over and pending is None:
            # The lock's previous holder outlived its lease (a paused process): it may be
            # mid-refresh with this very refresh token. Sending it again would spend it
            # twice, which a server detecting reuse answers by revoking the grant.
            newer = await self._await_late_save(
                account, current, _TAKEOVER_WAIT, "it took over an expired lock"
            )
            if newer is not None:
                self._use(account, state, newer, await self._marker(account))
                return newer
        params = {"refresh_token": current.refresh_token}
        if scopes is not None:
            params["scope"] = " ".join(scopes)
        # From here the refresh runs to its end even if the caller is
        # cancelled (a deadline, a closed web request, Ctrl-C): once the server
        # has rotated the refresh token, only keeping the new one keeps the grant.
        with _finishing("refresh", self._endpoint.path):
            try:
                new = await self._grant(account, "refresh_token", params, stored=current)
            except _Superseded as superseded:
                latest = superseded.args[0]
                state.unsaved = None
                self._use(account, state, latest, await self._marker(account))
                return latest  # type: ignore[no-any-return]
            except TokenEndpointError as exc:
                if exc.error != "invalid_grant":
                    raise
                # Another process may have refreshed with a lock we could not see
                # (an expired lease): its token is in the store.
                latest = await self._load_quietly(account)
                if latest is not None and latest.fingerprint != current.fingerprint:
                    state.unsaved = None
                    self._use(account, state, latest, await self._marker(account))
                    return latest
                raise _Refused(current) from None
            if new.refresh_token is None:
                # RFC 6749 section 6: the server may keep the refresh token unchanged.
                new = attrs.evolve(new, refresh_token=current.refresh_token)
            if new.scope is None and current.scope is not None:
                # RFC 6749 section 5.1: an answer without scope grants the scope asked for.
                new = attrs.evolve(new, scope=current.scope)
            logger.info("refreshed the token of account %r", account)
            return await self._store_new(
                account, state, new, expected=expected, conditional=conditional
            )

    async def _grant(
        self, account: str, grant_type: str, params: Mapping[str, str], *, stored: Token | None
    ) -> Token:
        """One grant, retried where the server did not act or may not have.

        Before a refresh token is sent again, the store is read: if another
        process has refreshed meanwhile, `_Superseded` carries its token, and
        the refresh token is not spent twice.
        """
        for attempt in range(1, _GRANT_ATTEMPTS + 1):
            try:
                return await self._endpoint.request(grant_type, params, account=account)
            except TokenEndpointError as exc:
                if exc.error not in _RETRYABLE_ERRORS or attempt == _GRANT_ATTEMPTS:
                    raise
                wait = _GRANT_WAIT[min(attempt, len(_GRANT_WAIT)) - 1] * (1 + random.random())
                if exc.retry_after is not None:
                    if exc.retry_after > _MAX_RETRY_AFTER:
                        raise
                    wait = exc.retry_after
                logger.info(
                    "token endpoint %s for account %r (%s); trying again in %.1f s",
                    grant_type,
                    account,
                    exc.error,
                    wait,
                )
                await anyio.sleep(wait)
                if stored is not None:
                    latest = await self._load_quietly(account)
                    if latest is not None and latest.fingerprint != stored.fingerprint:
                        raise _Superseded(latest) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _load_quietly(self, account: str) -> Token | None:
        try:
            return await self.store.load(account)
        except TokenStoreError:
            return None

    async def _await_late_save(
        self, account: str, stored: Token, limit: float, why: str
    ) -> Token | None:
        """Poll the store for a token newer than `stored`, for up to `limit` seconds."""
        logger.warning(
            "account %r: %s; waiting up to %g s for the lock's previous holder to save "
            "the token it may have received",
            account,
            why,
            limit,
        )
        delay = 0.05
        with anyio.move_on_after(limit):
            while True:
                latest = await self._load_quietly(account)
                if latest is not None and latest.fingerprint != stored.fingerprint:
                    return latest
                await anyio.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        return None

    async def _store_new(
        self,
        account: str,
        state: _Account,
        token: Token,
        *,
        expected: Token | None,
        conditional: bool,
    ) -> Token:
        """Save a token the server just issued; keep it in the process if the store fails."""
        for wait in (*_QUICK_SAVE_WAITS, None):
            try:
                if not conditional:
                    await self.store.save(account, token)
                elif not await self.store.compare_and_set(account, expected, token):
                    # The store changed after it was read, despite the lock: the store wins.
                    latest = await self.store.load(account)
                    if latest is None:
                        self._drop(account, state)
                        raise AuthorizationRequired(
                            account, "the token was deleted during a refresh"
                        )
                    token = latest
            except TokenStoreError as exc:
                if wait is None:
                    logger.warning(
                        "could not save the new token of account %r (%s); this process keeps it "
                        "and saves it when the store is back",
                        account,
                        type(exc).__name__,
                    )
                    break
                await anyio.sleep(wait)
            else:
                state.unsaved = None
                self._use(account, state, token, await self._marker(account))
                return token
        state.unsaved = _Unsaved(
            token=token,
            expected=expected,
            conditional=conditional,
            retry_at=time.time() + _SAVE_RETRY_FIRST,
        )
        self._use(account, state, token, _UNKNOWN)
        return token

    async def _save_unsaved(self, account: str, state: _Account) -> bool:
        """One more try at saving the token only this process holds. True once saved."""
        unsaved = state.unsaved
        if unsaved is None:
            return True
        try:
            if not unsaved.conditional:
                await self.store.save(account, unsaved.token)
                saved = True
            else:
                saved = await self.store.compare_and_set(account, unsaved.expected, unsaved.token)
            if not saved:
                current = await self.store.load(account)
                saved = current is not None and current.fingerprint == unsaved.token.fingerprint
                if not saved:
                    # Deleted or replaced meanwhile: the store's word stands.
                    logger.warning(
                        "account %r changed in the store while its newest token waited to be "
                        "saved; the store's state is kept",
                        account,
                    )
                    state.unsaved = None
                    if current is None:
                        self._drop(account, state)
                    else:
                        self._use(account, state, current, await self._marker(account))
                    return False
        except TokenStoreError:
            unsaved.wait = min(unsaved.wait * 2, _SAVE_RETRY_MAX)
            unsaved.retry_at = time.time() + unsaved.wait
            self._update_fresh_until(state)
            return False
        logger.info("saved the token of account %r that had waited for the store", account)
        state.unsaved = None
        self._use(account, state, unsaved.token, await self._marker(account))
        return True


# The marker when the store could not tell: never equal to a real one.
_UNKNOWN: Hashable = object()


def _s256(verifier: str) -> str:
    challenge: str = create_s256_code_challenge(verifier)  # type: ignore[no-untyped-call]
    return challenge


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


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
