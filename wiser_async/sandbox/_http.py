"""The few HTTP pieces the sandbox's routes share: an answer and its encodings."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import attrs
import httpx2

__all__ = [
    "ERROR_FORMATS",
    "DroppedConnectionError",
    "ErrorFormat",
    "Response",
    "api_error",
    "encode_json",
    "json_response",
]

Headers = tuple[tuple[bytes, bytes], ...]
ErrorFormat: TypeAlias = Literal["envelope", "invalid-params", "invalidParams"]
ERROR_FORMATS: tuple[ErrorFormat, ...] = ("envelope", "invalid-params", "invalidParams")

_JSON = ((b"content-type", b"application/json"),)
_PROBLEM = b"application/problem+json"
_request_ids = itertools.count(1)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as an API would send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class DroppedConnectionError(httpx2.RemoteProtocolError):
    """Raised by the app to cut an answer short.

    Over uvicorn it closes the socket mid-body; in-process, httpx2's
    ``ASGITransport`` re-raises it. Either way the client sees an
    :class:`httpx2.RemoteProtocolError`.
    """


@attrs.frozen
class Response:
    """A complete answer: status, headers (without Content-Length) and body."""

    status: int
    body: bytes = b""
    headers: Headers = ()


def json_response(status: int, value: Any, headers: Headers = ()) -> Response:
    """An ``application/json`` answer."""
    return Response(status, encode_json(value), _JSON + headers)


def api_error(
    status: int,
    code: str,
    message: str,
    headers: Headers = (),
    *,
    form: ErrorFormat = "envelope",
    invalid_params: Sequence[tuple[str, str]] = (),
) -> Response:
    """The API's JSON error body, with a fresh request id (also in ``X-Request-Id``).

    Args:
        form: ``"envelope"``: the contract's ``{"error": {"code", "message",
            "requestId"}}``. ``"invalid-params"`` or ``"invalidParams"``: RFC
            7807 problem details (``application/problem+json``) as the sibling
            APIs send them: ``type`` (naming ``code``), ``title``, ``status``,
            ``detail`` (the message), ``requestId``, and the parameters
            refused under that key, each ``{"name", "reason"}``.
        invalid_params: The parameters refused, as ``(name, reason)`` pairs
            (problem details only: the envelope has no place for them).
    """
    request_id = f"req-{next(_request_ids):08x}"
    echoed = ((b"x-request-id", request_id.encode()), *headers)
    if form == "envelope":
        body = {"error": {"code": code, "message": message, "requestId": request_id}}
        return json_response(status, body, echoed)
    problem: dict[str, Any] = {
        "type": f"urn:wiser-sandbox:problem:{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": message,
        "requestId": request_id,
    }
    if invalid_params:
        problem[form] = [{"name": name, "reason": reason} for name, reason in invalid_params]
    return Response(status, encode_json(problem), ((b"content-type", _PROBLEM), *echoed))
