"""The admin routes under ``/_sandbox/``: counters, faults and tokens, for tests to drive."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._asgi import read_body
from ._http import Response, api_error, json_response

if TYPE_CHECKING:
    from ._asgi import Backend, Receive

__all__ = ["ADMIN_PREFIX", "answer_admin"]

ADMIN_PREFIX = "/_sandbox/"


def _json_object(body: bytes | None) -> dict[str, Any] | Response:
    if body is None:
        return api_error(413, "payload_too_large", "request body too large")
    try:
        value = json.loads(body) if body.strip() else {}
    except ValueError:
        return api_error(400, "invalid_json", "body is not JSON")
    if not isinstance(value, dict):
        return api_error(400, "invalid_json", "body must be a JSON object")
    return value


async def answer_admin(backend: Backend, method: str, action: str, receive: Receive) -> Response:
    """The answer to ``method`` on the admin route ``action`` (the path past the prefix)."""
    sandbox = backend.sandbox
    if (method, action) == ("GET", "stats"):
        return json_response(200, sandbox.stats.to_json())
    if (method, action) == ("POST", "reset-stats"):
        sandbox.reset_stats()
        return Response(204)
    if (method, action) not in (
        ("PATCH", "faults"),
        ("POST", "tokens"),
        ("POST", "revoke-access-tokens"),
    ):
        return api_error(404, "not_found", "no such admin route")
    body = _json_object(await read_body(receive))
    if isinstance(body, Response):
        return body
    try:
        return _admin_write(backend, action, body)
    except ValueError as exc:
        return api_error(400, "invalid_request", str(exc))


def _admin_write(backend: Backend, action: str, body: dict[str, Any]) -> Response:
    sandbox = backend.sandbox
    if action == "faults":
        with backend.lock:
            sandbox.faults.update(body)
        return json_response(200, sandbox.faults.to_json())
    customer = body.get("customer")
    if customer is not None and not isinstance(customer, str):
        raise ValueError("customer must be a string")
    if action == "revoke-access-tokens":
        return json_response(200, {"revoked": sandbox.revoke_access_tokens(customer)})
    lifetime = body.get("lifetime")
    if lifetime is not None and not isinstance(lifetime, int | float):
        raise ValueError("lifetime must be a number")
    return json_response(200, sandbox.issue_token(customer or "default", lifetime=lifetime))
