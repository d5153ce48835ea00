"""The contract's error table in one place: an HTTP answer -> a typed error.

An error body is read as the contract's envelope (``{"error": {"code",
"message", "requestId"}}``) or as RFC 7807 / 9457 problem details (``title``,
``detail``, validation errors under ``invalid-params``, ``invalidParams`` or
``errors``, a ``requestId`` member); the request id may also come in
``X-Request-Id``. Every piece of server text in an error is redacted (no
secret the client knows, control characters escaped), on one line and
bounded in length, so a message stays a few kilobytes whatever the body.
"""

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


# Room past a field's length for any secret begun inside it to be whole when redacted.
_SECRET_ROOM = 16384
# Members of an RFC 7807 / 9457 problem details object.
_PROBLEM_KEYS = ("type", "title", "status", "detail", "instance")
# Where the validation errors of a problem are, by product: RFC 7807's
# example, its camelCase twin, and RFC 9457's example (``errors``).
_PARAMS_KEYS = ("invalid-params", "invalidParams", "errors")
_MAX_PARAMS = 10


def _describe_body(
    content: bytes, content_type: str, redact: Callable[[str], str]
) -> tuple[dict[str, Any] | None, str | None]:
    """The error object (the envelope's ``error``, or a problem), else a short printable excerpt.

    Secrets are redacted before anything is cut short, so no part of one survives.
    """
    if not content.strip():
        return None, "empty body"
    try:
        decoded = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        if isinstance(decoded.get("error"), dict):
            return decoded["error"], None
        if "problem+json" in content_type or any(key in decoded for key in _PROBLEM_KEYS):
            return decoded, None
    if "html" in content_type or content.lstrip()[:1] == b"<":
        title = _TITLE.search(content[:4096])
        if title:
            text = redact(_SPACES.sub(" ", title.group(1).decode("utf-8", "replace")).strip())
            return None, f"HTML page titled {text[:_EXCERPT_LENGTH]!r}"
        return None, "HTML page"
    if decoded is None and "json" in content_type:
        return None, "unreadable JSON body"
    # Redacted before it is cut short: room for any secret to be whole.
    text = redact(
        _SPACES.sub(" ", content[: _EXCERPT_LENGTH + _SECRET_ROOM].decode("utf-8", "replace"))
    )
    return None, f"body {text.strip()[:_EXCERPT_LENGTH]!r}"


def _string(value: Any, redact: Callable[[str], str], limit: int) -> str | None:
    """Server text on one line (control characters escaped, as redacting does), at most
    `limit` characters (cut ones end in …)."""
    if not isinstance(value, str):
        return None
    text = redact(value[: limit + _SECRET_ROOM].strip())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(error: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((error[key] for key in keys if error.get(key) is not None), None)


def _invalid_params(
    error: dict[str, Any], redact: Callable[[str], str]
) -> tuple[tuple[tuple[str, str], ...], int]:
    """A problem's validation errors as ``(name, reason)`` pairs, and how many were left out."""
    entries = _first(error, _PARAMS_KEYS)
    if not isinstance(entries, list):
        return (), 0
    pairs: list[tuple[str, str]] = []
    for entry in entries[:_MAX_PARAMS]:
        if isinstance(entry, dict):
            # RFC 7807 says name and reason; RFC 9457's example, pointer and detail.
            name = _string(_first(entry, ("name", "pointer", "field")), redact, 100)
            reason = _string(_first(entry, ("reason", "detail", "message")), redact, 200)
        else:
            name, reason = None, _string(entry, redact, 200)
        if name or reason:
            pairs.append((name or "", reason or ""))
    return tuple(pairs), max(0, len(entries) - _MAX_PARAMS)


def _describe_params(pairs: tuple[tuple[str, str], ...], more: int) -> str:
    shown = [f"{name}: {reason}" if name and reason else name or reason for name, reason in pairs]
    if more:
        shown.append(f"{more} more")
    return f" (invalid parameters: {'; '.join(shown)})"


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
    error, excerpt = _describe_body(content, headers.get("content-type", "").lower(), redact)
    found = error or {}
    code = _string(found.get("code"), redact, 100)
    title = _string(found.get("title"), redact, 200)
    # The envelope's message and a problem's detail say the same thing.
    detail = _string(_first(found, ("detail", "message")), redact, 500)
    request_id = _string(found.get("requestId"), redact, 100) or _string(
        headers.get("x-request-id"), redact, 100
    )
    invalid_params, more_params = _invalid_params(found, redact)
    message = f"HTTP {status} {_reason(status)}"
    if code:
        message += f" [{code}]"
    said = [text for text in (title, detail) if text]
    if said:
        message += f": {': '.join(dict.fromkeys(said))}"
    elif excerpt:
        message += f" ({excerpt})"
    if invalid_params or more_params:
        message += _describe_params(invalid_params, more_params)
    if request_id:
        message += f" (request id {request_id})"
    details: dict[str, Any] = {
        "status_code": status,
        "method": method,
        "path": path,
        "code": code,
        "request_id": request_id,
        "title": title,
        "detail": detail,
        "invalid_params": invalid_params,
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
