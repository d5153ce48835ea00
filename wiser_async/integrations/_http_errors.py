"""Errors of the library and of the web routes, as HTTP answers a web backend can send.

| error | status | the browser reads |
|---|---|---|
| `BadAccountKey` | 400 | the account-key rule |
| `AccountRefused` (``authorize`` said no) | 403 | |
| `AuthorizeFailed` (``authorize`` raised) | 500 | |
| `LoginError`: unknown / used / expired, other browser, full | 400/409/410/403/503 | what to do |
| `AuthorizationDenied` | 403 | the customer declined |
| `AuthorizationRequired` | 401 | the customer must log in again |
| `TokenEndpointError` 5xx / 429 | 503 + ``Retry-After`` | |
| other `AuthorizationError` (state, issuer, a failed exchange) | 400 | start the login again |
| `RateLimited`, `RateLimiterUnavailable`, `StoreError` | 503 + ``Retry-After`` | try later |
| `NotFound` / `Forbidden` | 404 / 403 | |
| `TransportError` (timeout, connection) | 504 | |
| other `ApiError`, `DecodeError` | 502 | |

Browsers read a short title, the public text of the integration's own
errors, and a request id; the library's message (which may name a Redis
host, a file or the token endpoint's words) goes to the server log only,
under the same id.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from ..errors import (
    ApiError,
    AuthorizationDenied,
    AuthorizationError,
    AuthorizationRequired,
    DecodeError,
    Forbidden,
    NotFound,
    RateLimited,
    RateLimiterUnavailable,
    StoreError,
    TokenEndpointError,
    TransportError,
    WiserError,
)

__all__ = [
    "ACCOUNT_RULE",
    "AccountRefused",
    "AuthorizeFailed",
    "BadAccountKey",
    "HttpAnswer",
    "LoginError",
    "WebError",
    "http_answer",
]

ACCOUNT_RULE = "an account key is 1 to 128 characters, each a letter, a digit or one of . _ @ -"
"""What an account key in a route may be, as the 400 answer to another one says."""


class WebError(WiserError):
    """A request the web integration refuses: `status`, `reason`, and a `public` text.

    The public text is written by the integration for browsers; it never
    holds a secret or a detail of the deployment.
    """

    status: int = 400
    reason: str = "bad_request"
    title: str = "bad request"

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


class BadAccountKey(WebError):
    """The route's account is not an account key (`ACCOUNT_RULE`)."""

    reason = "bad_account_key"
    title = "not an account key"

    def __init__(self) -> None:
        super().__init__(f"not an account key: {ACCOUNT_RULE}", public=ACCOUNT_RULE)


class AccountRefused(WebError):
    """The application's ``authorize`` said this request may not act for the account."""

    status = 403
    reason = "not_authorized"
    title = "forbidden"

    def __init__(self, account: str) -> None:
        super().__init__(f"authorize refused account {account!r}")


class AuthorizeFailed(WebError):
    """The application's ``authorize`` raised or gave no bool (the cause is chained)."""

    status = 500
    reason = "internal_error"
    title = "internal error"


class LoginError(WebError):
    """A login or callback that cannot go on: `status` and `reason` say why.

    Reasons: ``unknown`` (a state this backend does not know), ``used`` (a
    replayed callback), ``expired`` (past the pending login's TTL),
    ``other_browser`` (not the login cookie of the login), ``cross_site`` (a
    login started from another site's page), ``bad_request``,
    ``busy`` (too many logins waiting; 503 with ``Retry-After``).
    """

    title = "login failed: start again"
    STATUS: ClassVar[dict[str, int]] = {
        "unknown": 400,
        "bad_request": 400,
        "used": 409,
        "expired": 410,
        "other_browser": 403,
        "cross_site": 403,
        "busy": 503,
    }

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, public=message)
        self.reason = reason
        self.status = self.STATUS.get(reason, 403)


@attrs.frozen
class HttpAnswer:
    """An HTTP answer for an error: status, a short title, a public text (or none), headers."""

    status: int
    title: str
    public: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    reason: str | None = None

    def to_json(self, request_id: str) -> dict[str, object]:
        body: dict[str, object] = {"error": self.title}
        if self.reason is not None:
            body["reason"] = self.reason
        if self.public is not None:
            body["detail"] = self.public
        body["request_id"] = request_id
        return body


def _unavailable(status: int | None) -> bool:
    return status is not None and (status >= 500 or status == 429)


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds or 1.0)))}


def http_answer(error: BaseException) -> HttpAnswer | None:
    """The HTTP answer for a library error; None for anything else (let it be a 500)."""
    if isinstance(error, WebError):
        headers = _retry_after(5.0) if error.status == 503 else {}
        return HttpAnswer(error.status, error.title, error.public, headers, error.reason)
    if isinstance(error, AuthorizationRequired):
        return HttpAnswer(401, "log in again", None, {}, "authorization_required")
    if isinstance(error, AuthorizationDenied):
        return HttpAnswer(403, "authorization declined", "the customer declined", {}, "denied")
    if isinstance(error, TokenEndpointError) and _unavailable(error.status_code):
        headers = _retry_after(error.retry_after)
        return HttpAnswer(503, "authorization server unavailable", None, headers)
    if isinstance(error, AuthorizationError):
        return HttpAnswer(400, "login failed: start again", None, {}, "failed")
    if isinstance(error, RateLimited):
        return HttpAnswer(503, "busy: try later", None, _retry_after(error.retry_after))
    if isinstance(error, RateLimiterUnavailable | StoreError):
        return HttpAnswer(503, "temporarily unavailable", None, _retry_after(1.0))
    if isinstance(error, NotFound):
        return HttpAnswer(404, "not found")
    if isinstance(error, Forbidden):
        return HttpAnswer(403, "forbidden by the API")
    if isinstance(error, TransportError):
        return HttpAnswer(504, "the API did not answer")
    if isinstance(error, ApiError | DecodeError):
        return HttpAnswer(502, "the API failed")
    return None
