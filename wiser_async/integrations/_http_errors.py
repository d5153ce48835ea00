"""Errors of the library and of the login flow, as HTTP answers a web backend can send.

| error | status | says |
|---|---|---|
| `LoginError`: unknown / used / expired login, other browser | 400 / 409 / 410 / 403 | |
| `AuthorizationDenied` | 403 | the customer declined |
| `AuthorizationRequired` | 401 | the customer must log in again |
| other `AuthorizationError` (state, issuer, a failed exchange) | 400 | start the login again |
| `NotFound` | 404 | |
| `Forbidden` | 403 | |
| `RateLimited`, `RateLimiterUnavailable` | 503 + ``Retry-After`` | try later |
| `TransportError` (timeout, connection) | 504 | |
| other `ApiError`, `DecodeError` | 502 | |
| `StoreError` | 503 | |

Details carry the library's messages, which never hold a secret.
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

__all__ = ["HttpAnswer", "LoginError", "http_answer"]


class LoginError(WiserError):
    """A callback that cannot complete a login: `status` and `reason` say why.

    Reasons: ``unknown`` (a state this backend never issued), ``used`` (a
    replayed callback), ``expired`` (past the pending login's TTL),
    ``other_browser`` (the session cookie is not the login's), ``bad_request``.
    """

    STATUS: ClassVar[dict[str, int]] = {
        "unknown": 400,
        "bad_request": 400,
        "used": 409,
        "expired": 410,
    }

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = self.STATUS.get(reason, 403)


@attrs.frozen
class HttpAnswer:
    """An HTTP answer for an error: status, a short title, a detail, headers."""

    status: int
    title: str
    detail: str
    headers: dict[str, str] = attrs.field(factory=dict)
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.title, "detail": self.detail}
        if self.reason is not None:
            body["reason"] = self.reason
        return body


def _unavailable(status: int | None) -> bool:
    return status is not None and (status >= 500 or status == 429)


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds or 1.0)))}


def http_answer(error: BaseException) -> HttpAnswer | None:
    """The HTTP answer for a library error; None for anything else (let it be a 500)."""
    if isinstance(error, LoginError):
        return HttpAnswer(error.status, "login failed: start again", str(error), {}, error.reason)
    if isinstance(error, AuthorizationRequired):
        return HttpAnswer(401, "log in again", str(error), {}, "authorization_required")
    if isinstance(error, AuthorizationDenied):
        return HttpAnswer(403, "authorization declined", str(error), {}, "denied")
    if isinstance(error, TokenEndpointError) and _unavailable(error.status_code):
        detail = str(error)
        return HttpAnswer(
            503, "authorization server unavailable", detail, _retry_after(error.retry_after)
        )
    if isinstance(error, AuthorizationError):
        return HttpAnswer(400, "login failed: start again", str(error), {}, "failed")
    if isinstance(error, RateLimited):
        return HttpAnswer(503, "busy: try later", str(error), _retry_after(error.retry_after))
    if isinstance(error, RateLimiterUnavailable | StoreError):
        return HttpAnswer(503, "temporarily unavailable", str(error), _retry_after(1.0))
    if isinstance(error, NotFound):
        return HttpAnswer(404, "not found", str(error))
    if isinstance(error, Forbidden):
        return HttpAnswer(403, "forbidden by the API", str(error))
    if isinstance(error, TransportError):
        return HttpAnswer(504, "the API did not answer", str(error))
    if isinstance(error, ApiError | DecodeError):
        return HttpAnswer(502, "the API failed", str(error))
    return None
