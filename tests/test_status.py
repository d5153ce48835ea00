"""The contract's error table, mapped in one place (`wiser_async._status`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wiser_async._status import error_for_response, parse_retry_after
from wiser_async.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    WiserError,
)

JSON = {"content-type": "application/json"}
ENVELOPE = b'{"error": {"code": "consent_required", "message": "no consent", "requestId": "r-1"}}'


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (403, Forbidden),
        (404, NotFound),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (418, ApiError),
    ],
)
def test_each_status_maps_to_its_error_class(status: int, kind: type[ApiError]) -> None:
    error = error_for_response(status, JSON, ENVELOPE, method="GET", path="/sites/s1")
    assert type(error) is kind
    assert isinstance(error, WiserError)
    assert error.status_code == status
    assert error.method == "GET"
    assert error.path == "/sites/s1"
    assert str(error).startswith(f"GET /sites/s1: HTTP {status}")


def test_error_envelope_fields_are_kept() -> None:
    error = error_for_response(403, JSON, ENVELOPE, method="GET", path="/sites/s1")
    assert isinstance(error, ApiError)
    assert error.code == "consent_required"
    assert error.request_id == "r-1"
    assert "no consent" in str(error)
    assert "r-1" in str(error)


def test_html_error_page_gives_its_title_not_the_markup() -> None:
    html = b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>x</body>"
    error = error_for_response(
        503, {"content-type": "text/html"}, html, method="GET", path="/locations"
    )
    assert isinstance(error, ServerError)
    assert "HTML page titled '503 Service Temporarily Unavailable'" in str(error)
    assert "<body>" not in str(error)


def test_truncated_json_error_body_still_gives_a_clear_error() -> None:
    error = error_for_response(400, JSON, b'{"error": {"code": "inv', method="GET", path="/x")
    assert isinstance(error, BadRequest)
    assert "unreadable JSON body" in str(error)
    assert error.code is None


def test_empty_error_body_is_named() -> None:
    error = error_for_response(502, {}, b"", method="GET", path="/x")
    assert "empty body" in str(error)


def test_rate_limited_carries_retry_after_seconds() -> None:
    error = error_for_response(429, {"retry-after": "7"}, b"", method="GET", path="/x")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        ("-4", 0.0),
        ("Wed, 26 Nov 2026 10:00:30 GMT", 30.0),
        ("Wed, 26 Nov 2026 09:59:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    value: str | None, expected: float | None
) -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected
