"""The OAuth2 server: authorization code flow with PKCE, refresh-token rotation.

State lives in memory behind one lock, because the app may serve on a thread
while a test mints or revokes tokens from another. No secret (token, code,
verifier, client secret) is ever put in a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import attrs

from ._http import Headers, Response, json_response
from ._stats import StatsRecorder

__all__ = ["DEFAULT_SCOPE", "OAuthServer"]

DEFAULT_SCOPE = "energy-monitoring:read"
_CODE_LIFETIME = 600.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
# Expired access tokens are swept every so many issued, keeping memory bounded in long runs.
_SWEEP_EVERY = 1024


@attrs.define(eq=False)
class _Grant:
    """One consent: the family of tokens descending from one authorization code."""

    customer: str
    scope: str
    lifetime: float
    refresh_token: str | None = None
    access_tokens: dict[str, float] = attrs.Factory(dict)  # token -> monotonic expiry

    def revoke(self, access: dict[str, _Grant]) -> None:
        for token in self.access_tokens:
            access.pop(token, None)
        self.access_tokens.clear()
        self.refresh_token = None


@attrs.define(eq=False)
class _Code:
    redirect_uri: str
    challenge: str
    customer: str
    scope: str
    expires_at: float
    redeemed: bool = False
    grant: _Grant | None = None


class _OAuthError(Exception):
    def __init__(
        self, error: str, description: str, status: int = 400, *, reuse: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.reuse = reuse
        self.headers: Headers = ()


def _pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def _redirect(uri: str, params: Mapping[str, str]) -> Response:
    return Response(302, b"", ((b"location", _with_query(uri, params).encode()), *_NO_STORE))


def _scopes(value: Sequence[str] | None) -> frozenset[str] | None:
    if isinstance(value, str):
        raise TypeError("granted_scopes must be a collection of scopes, not one string")
    return None if value is None else frozenset(value)


def _uris(value: Sequence[str] | None) -> frozenset[str] | None:
    if isinstance(value, str):
        raise TypeError("redirect_uris must be a collection of URIs, not one string")
    return None if value is None else frozenset(value)


@attrs.define(kw_only=True, eq=False)
class OAuthServer:
    """Clients, codes, grants and tokens of the sandbox's authorization server."""

    client_id: str
    _client_secret: str = attrs.field(repr=False)
    redirect_uris: frozenset[str] | None = attrs.field(converter=_uris)
    access_token_lifetime: float = attrs.field(validator=attrs.validators.gt(0.0))
    revoke_family_on_reuse: bool
    consent: str = attrs.field(validator=attrs.validators.in_(("approve", "deny")))
    issuer: str | None = None
    granted_scopes: frozenset[str] | None = attrs.field(default=None, converter=_scopes)
    _stats: StatsRecorder = attrs.field(repr=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _codes: dict[str, _Code] = attrs.field(init=False, factory=dict, repr=False)
    _access: dict[str, _Grant] = attrs.field(init=False, factory=dict, repr=False)
    _refresh: dict[str, _Grant] = attrs.field(init=False, factory=dict, repr=False)
    _issued: int = attrs.field(init=False, default=0, repr=False)

    # -- bearer tokens --------------------------------------------------------

    def customer_for(self, access_token: str) -> str | None:
        """The customer a live access token acts for, or ``None``."""
        with self._lock:
            grant = self._access.get(access_token)
            if grant is None:
                return None
            if grant.access_tokens[access_token] <= time.monotonic():
                del self._access[access_token], grant.access_tokens[access_token]
                return None
            return grant.customer

    def revoke_access_tokens(self, customer: str | None = None) -> int:
        """Invalidate live access tokens (of one customer, or all); count them."""
        now = time.monotonic()
        revoked = 0
        with self._lock:
            for token, grant in list(self._access.items()):
                if customer is None or grant.customer == customer:
                    del self._access[token]
                    if grant.access_tokens.pop(token) > now:
                        revoked += 1
        return revoked

    def issue_token(self, customer: str, lifetime: float | None) -> dict[str, Any]:
        """A fresh grant for ``customer``, as if it had gone through the browser flow."""
        if lifetime is not None and lifetime <= 0:
            raise ValueError("lifetime must be > 0")
        grant = _Grant(customer, DEFAULT_SCOPE, lifetime or self.access_token_lifetime)
        with self._lock:
            return self._mint(grant)

    def _mint(self, grant: _Grant) -> dict[str, Any]:
        """New access and refresh tokens for ``grant``; the previous refresh token dies."""
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        now = time.monotonic()
        grant.access_tokens[access_token] = now + grant.lifetime
        grant.refresh_token = refresh_token
        self._access[access_token] = grant
        self._refresh[refresh_token] = grant
        self._issued += 1
        if self._issued % _SWEEP_EVERY == 0:
            for token, owner in list(self._access.items()):
                if owner.access_tokens[token] <= now:
                    del self._access[token], owner.access_tokens[token]
        lifetime = grant.lifetime
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
            "refresh_token": refresh_token,
            "scope": grant.scope,
        }

    # -- authorize endpoint ---------------------------------------------------

    def _redirect_allowed(self, uri: str) -> bool:
        if self.redirect_uris is not None:
            return uri in self.redirect_uris
        try:
            parts = urlsplit(uri)
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS and not parts.fragment

    def authorize(self, query: str) -> Response:
        """Answer ``GET authorize``: consent is automatic (or always denied)."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        if params.get("client_id") != self.client_id:
            # Never redirect for an unknown client (RFC 6749, 4.1.2.1).
            return json_response(
                400, {"error": "invalid_client", "error_description": "unknown client_id"}
            )
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri):
            return json_response(
                400,
                {"error": "invalid_request", "error_description": "redirect_uri not allowed"},
            )
        answer = {"state": params["state"]} if "state" in params else {}
        if self.issuer is not None:
            # RFC 9207: every authorization response names its issuer.
            answer["iss"] = self.issuer
        if len(pairs) != len(params):
            return _redirect(redirect_uri, {"error": "invalid_request", **answer})
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **answer})
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not _PKCE.fullmatch(challenge):
            return _redirect(
                redirect_uri,
                {
                    "error": "invalid_request",
                    "error_description": "PKCE with code_challenge_method=S256 is required",
                    **answer,
                },
            )
        if self.consent == "deny":
            return _redirect(redirect_uri, {"error": "access_denied", **answer})
        scope = params.get("scope") or DEFAULT_SCOPE
        if self.granted_scopes is not None:
            # The server may grant less than asked (RFC 6749 3.3).
            scope = " ".join(sorted(set(scope.split()) & self.granted_scopes))
            if not scope:
                return _redirect(redirect_uri, {"error": "invalid_scope", **answer})
        code = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Codes are stored in expiry order: drop the stale ones from the front.
            for stale in list(self._codes):
                if self._codes[stale].expires_at > now:
                    break
                del self._codes[stale]
            self._codes[code] = _Code(
                redirect_uri=redirect_uri,
                challenge=challenge,
                customer=params.get("login_hint") or "default",
                scope=scope,
                expires_at=now + _CODE_LIFETIME,
            )
        return _redirect(redirect_uri, {"code": code, **answer})

    # -- token endpoint -------------------------------------------------------

    def token(self, body: bytes, authorization: str | None) -> Response:
        """Answer ``POST token`` (form-encoded)."""
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        grant_type = form.get("grant_type") or "(none)"
        try:
            self._authenticate_client(form, authorization)
            answer = self._grant(grant_type, form, repeated=len(pairs) != len(form))
        except _OAuthError as exc:
            self._stats.token_request(grant_type, exc.error, reuse=exc.reuse)
            error = {"error": exc.error, "error_description": exc.description}
            return json_response(exc.status, error, exc.headers + _NO_STORE)
        self._stats.token_request(grant_type, None)
        return json_response(200, answer, _NO_STORE)

    def _grant(self, grant_type: str, form: dict[str, str], *, repeated: bool) -> dict[str, Any]:
        if repeated:
            raise _OAuthError("invalid_request", "a parameter is repeated")
        if grant_type == "authorization_code":
            return self._redeem_code(form)
        if grant_type == "refresh_token":
            return self._refresh_grant(form)
        raise _OAuthError("unsupported_grant_type", "unsupported grant_type")

    def _authenticate_client(self, form: dict[str, str], authorization: str | None) -> None:
        basic = None
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                client_id, _, secret = decoded.partition(":")
                basic = unquote_plus(client_id), unquote_plus(secret)
            except ValueError:
                basic = ("", "")
        posted = "client_secret" in form
        if basic is not None and posted:
            raise _OAuthError("invalid_request", "use one client authentication method")
        if basic is not None:
            client_id, secret = basic
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        ok = client_id == self.client_id and hmac.compare_digest(
            secret.encode(), self._client_secret.encode()
        )
        if not ok or (basic is not None and form.get("client_id", client_id) != client_id):
            error = _OAuthError("invalid_client", "client authentication failed", 401)
            if basic is not None:
                error.headers = ((b"www-authenticate", b'Basic realm="wiser-sandbox"'),)
            raise error

    def _redeem_code(self, form: dict[str, str]) -> dict[str, Any]:
        code, verifier = form.get("code"), form.get("code_verifier")
        redirect_uri = form.get("redirect_uri")
        if not code or not verifier or redirect_uri is None:
            raise _OAuthError(
                "invalid_request", "code, redirect_uri and code_verifier are required"
            )
        with self._lock:
            entry = self._codes.get(code)
            if entry is None or entry.expires_at <= time.monotonic():
                raise _OAuthError("invalid_grant", "unknown or expired authorization code")
            if entry.redeemed:
                # A replayed code may be stolen: what it issued is revoked (RFC 6749, 4.1.2).
                if entry.grant is not None:
                    entry.grant.revoke(self._access)
                raise _OAuthError("invalid_grant", "authorization code already used")
            # Any attempt spends the code, so a wrong verifier cannot be retried.
            entry.redeemed = True
            if entry.redirect_uri != redirect_uri:
                raise _OAuthError("invalid_grant", "redirect_uri differs from the authorization")
            if not _PKCE.fullmatch(verifier) or not hmac.compare_digest(
                _pkce_s256(verifier).encode(), entry.challenge.encode()
            ):
                raise _OAuthError("invalid_grant", "code_verifier does not match")
            entry.grant = _Grant(entry.customer, entry.scope, self.access_token_lifetime)
            return self._mint(entry.grant)

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError("invalid_request", "refresh_token is required")
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None:
                raise _OAuthError("invalid_grant", "unknown refresh token")
            if grant.refresh_token is None:
                raise _OAuthError("invalid_grant", "refresh token revoked")
            if not hmac.compare_digest(token.encode(), grant.refresh_token.encode()):
                if self.revoke_family_on_reuse:
                    grant.revoke(self._access)
                raise _OAuthError("invalid_grant", "refresh token already rotated away", reuse=True)
            scope = form.get("scope")
            if scope is not None and not set(scope.split()) <= set(grant.scope.split()):
                raise _OAuthError("invalid_scope", "scope exceeds the original grant")
            return self._mint(grant)
