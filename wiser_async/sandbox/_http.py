"""The few HTTP pieces the sandbox's routes share: an answer and its encodings."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import httpx2

__all__ = ["DroppedConnectionError", "Response", "api_error", "encode_json", "json_response"]

Headers = tuple[tuple[bytes, bytes], ...]

_JSON = ((b"content-type", b"application/json"),)
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


def api_error(status: int, code: str, message: str, headers: Headers = ()) -> Response:
    """The API's JSON error body, with a fresh ``requestId``."""
    request_id = f"req-{next(_request_ids):08x}"
    body = {"error": {"code": code, "message": message, "requestId": request_id}}
    return json_response(status, body, ((b"x-request-id", request_id.encode()), *headers))
