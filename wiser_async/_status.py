"""The contract's error table in one place: an HTTP answer -> a typed error."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ._redact import escape_controls
from .errors import (
    ApiError,
    AuthorizationRequired,
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    UnexpectedRedirect,
    WiserError,
)

__all__ = ["error_for_response", "parse_retry_after"]

_EXCERPT_LENGTH = 120
_SPACES = re.compile(r"\s+")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date).

    Returns None for a missing or unreadable value; never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


def _describe_body(
    content: bytes, content_type: str, redact: Callable[[str], str]
) -> tuple[dict[str, Any] | None, str | None]:
    """The error envelope if the body is one, else a short printable excerpt.

    Secrets are redacted before anything is cut short, so no part of one survives.
    """
    if not content.strip():
        return None, "empty body"
    try:
        decoded = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return decoded["error"], None
    if "html" in content_type or content.lstrip()[:1] == b"<":
        title = _TITLE.search(content[:4096])
        if title:
            text = redact(_SPACES.sub(" ", title.group(1).decode("utf-8", "replace")).strip())
            return None, f"HTML page titled {text[:_EXCERPT_LENGTH]!r}"
        return None, "HTML page"
    if decoded is None and "json" in content_type:
        return None, "unreadable JSON body"
    # Redacted before it is cut short: room for any secret to be whole.
    text = redact(_SPACES.sub(" ", content[: _EXCERPT_LENGTH + 16384].decode("utf-8", "replace")))
    return None, f"body {text.strip()[:_EXCERPT_LENGTH]!r}"


def _string(value: Any, redact: Callable[[str], str], limit: int) -> str | None:
    return redact(value)[:limit] if isinstance(value, str) and value else None


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    method: str,
    path: str,
    redact: Callable[[str], str] = escape_controls,
    account: str = "",
) -> WiserError:
    """The typed error of an answer with status >= 300: the one status -> error map.

    3xx -> UnexpectedRedirect (with ``location``), 400 -> BadRequest, 401 ->
    AuthorizationRequired (the token was refused after one refresh), 403 ->
    Forbidden, 404 -> NotFound, 429 -> RateLimited (with ``retry_after``),
    5xx -> ServerError, any other -> ApiError.

    Args:
        redact: Applied to all server text before it enters the error
            (blanks out secrets, escapes control characters).
        account: Whose token signed the request (named by a 401's error).
    """
    if status == 401:
        return AuthorizationRequired(
            account, "the API refused the token after a refresh", method=method, path=path
        )
    envelope, excerpt = _describe_body(content, headers.get("content-type", "").lower(), redact)
    code = _string(envelope.get("code"), redact, 100) if envelope else None
    server_message = _string(envelope.get("message"), redact, 500) if envelope else None
    request_id = _string(envelope.get("requestId"), redact, 100) if envelope else None
    message = f"HTTP {status} {_reason(status)}"
    if code:
        message += f" [{code}]"
    if server_message:
        message += f": {server_message}"
    elif excerpt:
        message += f" ({excerpt})"
    if request_id:
        message += f" (request id {request_id})"
    details: dict[str, Any] = {
        "status_code": status,
        "method": method,
        "path": path,
        "code": code,
        "request_id": request_id,
        "body_excerpt": excerpt,
    }
    if 300 <= status < 400:
        location = headers.get("location")
        shown = None if location is None else redact(location)[: _EXCERPT_LENGTH * 2]
        message = f"HTTP {status} {_reason(status)}: redirected to {shown!r}, not followed"
        return UnexpectedRedirect(message, location=shown, **details)
    if status == 400:
        return BadRequest(message, **details)
    if status == 403:
        return Forbidden(message, **details)
    if status == 404:
        return NotFound(message, **details)
    if status == 429:
        return RateLimited(
            message, retry_after=parse_retry_after(headers.get("retry-after")), **details
        )
    if status >= 500:
        return ServerError(message, **details)
    return ApiError(message, **details)
