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
    │   └── TokenEndpointError        the token endpoint refused (invalid_client, ...)
    ├── ApiError                      the API answered with an error status
    │   ├── BadRequest                400
    │   ├── Forbidden                 403: the customer gave no consent for this resource
    │   ├── NotFound                  404: gone (deleted between list and get)
    │   ├── RateLimited               429, after the retries allowed
    │   └── ServerError               5xx, after the retries allowed
    ├── TransportError                no HTTP answer, after the retries allowed
    │   ├── RequestTimeout            connect, read, write or pool timeout
    │   └── ConnectionFailed          refused, reset or dropped connection
    └── DecodeError                   a body that is not the JSON the contract describes

Token-store failures (`token_stores.TokenStoreError`) pass through unchanged:
they belong to the store, not to the API.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationFailed",
    "AuthorizationRequired",
    "BadRequest",
    "ConnectionFailed",
    "DecodeError",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "StateMismatch",
    "TokenEndpointError",
    "TransportError",
    "WiserError",
]


class WiserError(Exception):
    """Base class of every error raised by wiser-async.

    Attributes:
        method: The HTTP method of the request that failed, if any.
        path: The URL path (with query) of that request, if any. Never secret.
    """

    method: str | None
    path: str | None

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None) -> None:
        where = f"{method} {path}: " if method and path else ""
        super().__init__(f"{where}{message}")
        self.message = message
        self.method = method
        self.path = path

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
        self.account = account
        self.reason = reason


class AuthorizationDenied(AuthorizationError):
    """The user refused consent (``error=access_denied`` in the callback)."""

    def __init__(self, description: str | None = None) -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"the user denied the authorization request{detail}")
        self.error = "access_denied"
        self.description = description


class AuthorizationFailed(AuthorizationError):
    """The authorization server redirected back with an RFC 6749 error.

    Attributes:
        error: The ``error`` code (``invalid_request``, ``invalid_scope``, ...).
        description: The ``error_description``, if any.
    """

    def __init__(self, error: str, description: str | None = None) -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"authorization failed with {error!r}{detail}")
        self.error = error
        self.description = description


class StateMismatch(AuthorizationError):
    """The callback's ``state`` is missing or differs from the one sent.

    The callback may be forged (CSRF) or belong to another login attempt.
    """

    def __init__(self) -> None:
        super().__init__("the callback's state does not match the authorization request")


class TokenEndpointError(AuthorizationError):
    """The token endpoint refused a request or answered something unusable.

    Attributes:
        error: The RFC 6749 5.2 ``error`` code, or a short description of the
            failure when the endpoint gave none (``"server_error"``, ...).
        description: The ``error_description``, if any.
        status_code: The HTTP status, if an answer came.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status_code: int | None = None,
        method: str | None = "POST",
        path: str | None = None,
    ) -> None:
        detail = f": {description}" if description else ""
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(
            f"token endpoint error {error!r}{status}{detail}", method=method, path=path
        )
        self.error = error
        self.description = description
        self.status_code = status_code


class ApiError(WiserError):
    """The API answered with an error status.

    Attributes:
        status_code: The HTTP status.
        code: The ``error.code`` of the body, if the body had one.
        request_id: The ``error.requestId`` of the body, if any.
        body_excerpt: The start of a body that was not the JSON error
            envelope (an HTML page from a proxy, say), for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        code: str | None = None,
        request_id: str | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body_excerpt = body_excerpt


class BadRequest(ApiError):
    """400: a parameter was refused. Not retried."""


class Forbidden(ApiError):
    """403: the customer gave no consent for this resource."""


class NotFound(ApiError):
    """404: the resource does not exist (or no longer does)."""


class RateLimited(ApiError):
    """429 after the retries allowed.

    Attributes:
        retry_after: Seconds the server asked to wait, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx after the retries allowed."""


class TransportError(WiserError):
    """No HTTP answer: timeout, refused, reset or dropped connection."""


class RequestTimeout(TransportError):
    """A connect, read, write or pool timeout, after the retries allowed."""


class ConnectionFailed(TransportError):
    """The connection failed or dropped, after the retries allowed."""


class DecodeError(WiserError):
    """A body that is not the JSON the contract describes.

    The message says what was wrong and where (a JSON path), never a value
    that could be a secret.
    """
