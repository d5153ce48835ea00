"""Errors raised by wiser-async.

Every error names where it happened (the HTTP method and URL path, or the
account key) and never contains a secret: no token, client secret,
authorization code or PKCE verifier, in `str()` or `repr()`.

::

    WiserError
    ├── AuthorizationError            the OAuth2 flow could not give a usable token
    │   ├── AuthorizationRequired     the account must be authorized (again)
    │   ├── AuthorizationDenied       the user refused consent (error=access_denied)
    │   ├── AuthorizationFailed       another RFC 6749 4.1.2.1 error in the callback
    │   ├── StateMismatch             the callback's `state` is not the one we sent
    │   ├── IssuerMismatch            the callback's `iss` is not the expected issuer (RFC 9207)
    │   ├── AuthorizationReplayed     this authorization was completed already
    │   └── TokenEndpointError        the token endpoint refused (invalid_client, ...)
    ├── ApiError                      the API answered with an error status
    │   ├── BadRequest                400
    │   ├── Forbidden                 403: the customer gave no consent for this resource
    │   ├── NotFound                  404: gone (deleted between list and get)
    │   ├── RateLimited               429, after the retries allowed
    │   ├── ServerError               5xx, after the retries allowed
    │   └── UnexpectedRedirect        3xx: the API does not redirect; a proxy or a wrong URL does
    ├── TransportError                no HTTP answer, after the retries allowed
    │   ├── RequestTimeout            connect, read, write or pool timeout
    │   └── ConnectionFailed          refused, reset or dropped connection
    ├── DecodeError                   a body that is not the JSON the contract describes
    ├── PagingLoop                    a collection's pages repeat, or would never end
    ├── CrawlOutputError              a crawl output cannot be resumed as asked
    ├── ExportError                   a crawl output cannot be exported to that database
    ├── RateLimiterUnavailable        the Redis of a shared rate limit did not answer
    └── StoreError                    the token store failed (also a token_stores.TokenStoreError)
        ├── StoreUnavailable          the backing service or file system failed
        ├── LockTimeout               an account's lock was not acquired in time
        ├── CorruptTokenData          stored bytes are not a token; left for inspection
        │   └── ForeignToken          the token stored for an account names another one
        ├── DecryptionError           stored bytes were encrypted with another key
        │   └── UnboundToken          plain text, or sealed without its account
        ├── InsecurePermissions       a token file is readable by group or others
        └── UnsupportedTokenFormat    a token file written by a newer version

Each `StoreError` class is also the `token_stores` error of the same name (``except
token_stores.StoreUnavailable`` catches it too); the store's own exception is its ``__cause__``.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import token_stores

__all__ = [
    "ApiError",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationFailed",
    "AuthorizationReplayed",
    "AuthorizationRequired",
    "BadRequest",
    "ConnectionFailed",
    "CorruptTokenData",
    "CrawlOutputError",
    "DecodeError",
    "DecryptionError",
    "ExportError",
    "Forbidden",
    "ForeignToken",
    "InsecurePermissions",
    "IssuerMismatch",
    "LockTimeout",
    "NotFound",
    "PagingLoop",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "StateMismatch",
    "StoreError",
    "StoreUnavailable",
    "TokenEndpointError",
    "TransportError",
    "UnboundToken",
    "UnexpectedRedirect",
    "UnsupportedTokenFormat",
    "WiserError",
]

E = TypeVar("E", bound="StoreError")


class WiserError(Exception):
    """Base class of every error raised by wiser-async.

    Attributes:
        method: The HTTP method of the request that failed, if any.
        path: The URL path (with query) of that request, if any. Never secret.
        kind: What a crawl records a failure of this class as (a class
            attribute: ``forbidden``, ``timeout``, ``decode``...).
    """

    kind: ClassVar[str] = "error"
    method: str | None
    path: str | None

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None) -> None:
        where = f"{method} {path}: " if method and path else ""
        super().__init__(f"{where}{message}")
        self.message, self.method, self.path = message, method, path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only arguments do not pickle by default;
        # crawls running in worker processes send errors back.
        return (_rebuild, (type(self), self.__dict__.copy(), str(self)))


def _rebuild(cls: type[WiserError], state: dict[str, Any], text: str) -> WiserError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.__dict__.update(state)
    return error


class AuthorizationError(WiserError):
    """The OAuth2 flow could not give a usable token."""

    kind: ClassVar[str] = "authorization"


class AuthorizationRequired(AuthorizationError):
    """The account has no usable grant: the customer must authorize again.

    Raised when no token is stored, when the refresh token was rejected
    (``invalid_grant``) and no newer token is in the store, and when the API
    still answers 401 after one refresh.

    Attributes:
        account: The account key that needs authorization.
    """

    def __init__(
        self,
        account: str,
        reason: str,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(
            f"account {account!r} needs authorization: {reason}", method=method, path=path
        )
        self.account, self.reason = account, reason


class AuthorizationDenied(AuthorizationError):
    """The user refused consent (``error=access_denied`` in the callback)."""

    def __init__(self, description: str | None = None) -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"the user denied the authorization request{detail}")
        self.error, self.description = "access_denied", description


class AuthorizationFailed(AuthorizationError):
    """The authorization server redirected back with an RFC 6749 error.

    Attributes:
        error: The ``error`` code (``invalid_request``, ``invalid_scope``, ...).
        description: The ``error_description``, if any.
    """

    def __init__(self, error: str, description: str | None = None) -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"authorization failed with {error!r}{detail}")
        self.error, self.description = error, description


class StateMismatch(AuthorizationError):
    """The callback's ``state`` is missing or differs from the one sent.

    The callback may be forged (CSRF) or belong to another login attempt.
    """

    def __init__(self) -> None:
        super().__init__("the callback's state does not match the authorization request")


class IssuerMismatch(AuthorizationError):
    """The callback's ``iss`` is missing or is not the expected issuer (RFC 9207).

    The authorization response may come from another authorization server
    (a mix-up attack); its code is not exchanged.
    """

    def __init__(self, expected: str, received: str | None) -> None:
        got = "no iss" if received is None else f"iss {received!r}"
        super().__init__(f"the callback carries {got}, expected the issuer {expected!r}")
        self.expected, self.received = expected, received


class AuthorizationReplayed(AuthorizationError):
    """This authorization request (or its code) was completed already.

    A code is exchanged at most once: sending it again would make a server
    that detects code reuse revoke the grant it issued (RFC 6749 4.1.2).
    The token stored by the first completion is left as it is.
    """

    def __init__(self) -> None:
        super().__init__(
            "this authorization was completed already; the stored grant is unchanged "
            "(start a new authorization to log in again)"
        )


class TokenEndpointError(AuthorizationError):
    """The token endpoint refused a request or answered something unusable.

    Attributes:
        error: The RFC 6749 5.2 ``error`` code (``invalid_grant``,
            ``invalid_client``, ...), or when the endpoint gave none:
            ``server_error`` / ``temporarily_unavailable`` (a 5xx or 429 without
            an error body), ``invalid_response`` (an answer that is not a usable
            token or error), ``unsupported_token_type`` (not a Bearer token),
            ``unreachable`` (no connection), ``connection_lost`` (sent, no answer)
            or ``timeout``.
        description: The ``error_description``, if any (secrets redacted).
        status_code: The HTTP status, if an answer came.
        retry_after: Seconds the server asked to wait (``Retry-After``), if it said.
    """

    kind: ClassVar[str] = "token_endpoint"

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status_code: int | None = None,
        method: str | None = "POST",
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        detail = f": {description}" if description else ""
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(
            f"token endpoint error {error!r}{status}{detail}", method=method, path=path
        )
        self.error, self.description = error, description
        self.status_code, self.retry_after = status_code, retry_after


class ApiError(WiserError):
    """The API answered with an error status (its body read as the envelope or RFC 7807 / 9457).

    Attributes:
        status_code: The HTTP status.
        code: The ``error.code`` of the body, if the body had one.
        request_id: ``error.requestId``, a problem's ``requestId``, or ``X-Request-Id``.
        title: A problem's ``title``, if any.
        detail: A problem's ``detail`` (or the envelope's ``message``), if any.
        invalid_params: The parameters refused, as ``(name, reason)`` pairs: a
            problem's ``invalid-params``, ``invalidParams`` or ``errors``.
        body_excerpt: The start of a body that is neither (an HTML page from a proxy, say).
    """

    kind: ClassVar[str] = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        code: str | None = None,
        request_id: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        invalid_params: tuple[tuple[str, str], ...] = (),
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status_code = status_code
        self.code, self.request_id, self.body_excerpt = code, request_id, body_excerpt
        self.title, self.detail, self.invalid_params = title, detail, invalid_params


class BadRequest(ApiError):
    """400: a parameter was refused. Not retried."""

    kind: ClassVar[str] = "bad_request"


class Forbidden(ApiError):
    """403: the customer gave no consent for this resource."""

    kind: ClassVar[str] = "forbidden"


class NotFound(ApiError):
    """404: the resource does not exist (or no longer does)."""

    kind: ClassVar[str] = "not_found"


class RateLimited(ApiError):
    """429 after the retries allowed; ``retry_after``: seconds the server asked to wait, if any."""

    kind: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx after the retries allowed."""

    kind: ClassVar[str] = "server_error"


class UnexpectedRedirect(ApiError):
    """A 3xx answer, not followed (a token must not go elsewhere); ``location``: the
    ``Location`` the server gave, if any (secrets redacted)."""

    kind: ClassVar[str] = "redirect"

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class TransportError(WiserError):
    """No HTTP answer: timeout, refused, reset or dropped connection."""

    kind: ClassVar[str] = "connection"


class RequestTimeout(TransportError):
    """A connect, read, write or pool timeout, after the retries allowed."""

    kind: ClassVar[str] = "timeout"


class ConnectionFailed(TransportError):
    """The connection failed or dropped, after the retries allowed."""

    kind: ClassVar[str] = "connection"


class DecodeError(WiserError):
    """A body that is not the JSON the contract describes: says where (a JSON path), no value."""

    kind: ClassVar[str] = "decode"


class PagingLoop(WiserError):
    """A collection's paging would not end: a page of ids it gave already (a repeat, a circle),
    or more pages or items than its first page's total allows (else
    `PageFormat.max_items_without_total`)."""

    kind: ClassVar[str] = "paging_loop"


class CrawlOutputError(WiserError):
    """A crawl output cannot be resumed as asked (the message says why): no checkpoint, a
    damaged one, an output changed since, or a resume with other accounts,
    ``devices_by``, page size or base URL than it began with."""

    kind: ClassVar[str] = "output"


class ExportError(WiserError):
    """A crawl output cannot be exported to that database: the message says why."""

    kind: ClassVar[str] = "export"


class RateLimiterUnavailable(WiserError):
    """The Redis of a shared rate limit (`RedisRateLimiter`) did not answer within its
    ``patience``. The request was not sent: it could have exceeded the agreed rate."""

    kind: ClassVar[str] = "rate_limiter"


class StoreError(WiserError, token_stores.TokenStoreError):
    """The token store failed; the store's own error is the ``__cause__``. Also a
    `token_stores.TokenStoreError`: code written against the store keeps catching it."""

    kind: ClassVar[str] = "store"

    @classmethod
    def wrap(cls: type[E], error: token_stores.TokenStoreError) -> E:
        """This class's error carrying `error`'s message and attributes."""
        wrapped = cls.__new__(cls)
        Exception.__init__(wrapped, str(error))
        wrapped.__dict__.update(error.__dict__)
        wrapped.message, wrapped.method, wrapped.path = str(error), None, None
        wrapped.__cause__ = error
        return wrapped


class StoreUnavailable(StoreError, token_stores.StoreUnavailable):
    """The store's backend failed (Redis down, I/O error); it may work when it is back."""


class LockTimeout(StoreError, token_stores.LockTimeout):
    """The lock of an account was not acquired within the timeout."""


class CorruptTokenData(StoreError, token_stores.CorruptTokenData):
    """Stored data exists but is not a valid token; it is left as it is."""


class DecryptionError(StoreError, token_stores.DecryptionError):
    """Stored data could not be decrypted with the configured keys."""


class InsecurePermissions(StoreError, token_stores.InsecurePermissions):
    """A token file can be read by users other than its owner."""


class UnsupportedTokenFormat(StoreError, token_stores.UnsupportedTokenFormat):
    """A token file was written by a newer version of the store; upgrade to read it."""


class ForeignToken(CorruptTokenData, token_stores.ForeignToken):
    """The token stored for an account names another account (copied or moved there): refused."""


class UnboundToken(DecryptionError, token_stores.UnboundToken):
    """An encrypted store holds a plaintext token, or one sealed without its account: refused."""


# The most specific first: a store's error takes the first class it is an instance of.
_STORE_ERRORS: tuple[type[StoreError], ...] = (ForeignToken, UnboundToken)
_STORE_ERRORS += tuple(StoreError.__subclasses__())


def store_error(error: token_stores.TokenStoreError) -> StoreError:
    """The `StoreError` of a store's error (the class of the same name, else `StoreError`)."""
    if isinstance(error, StoreError):
        return error
    for cls in _STORE_ERRORS:
        if isinstance(error, cls.__bases__[1]):
            return cls.wrap(error)
    return StoreError.wrap(error)
