"""The sandbox's ASGI entry point: lifespan, and each request sent to its route."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from ._admin_routes import ADMIN_PREFIX, answer_admin
from ._api_routes import API_PREFIX, answer_api, find_route
from ._asgi import send_response
from ._http import Response, api_error
from ._oauth_routes import AUTHORIZE_PATH, TOKEN_PATH, answer_token

if TYPE_CHECKING:
    from ._asgi import Backend, Receive, Scope, Send

__all__ = ["OPENAPI_PATH", "dispatch"]

OPENAPI_PATH = "/openapi.json"


@cache
def _openapi() -> bytes:
    return files(__package__).joinpath("openapi.json").read_bytes()


async def dispatch(backend: Backend, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI 3 application of ``backend`` (``http`` and ``lifespan`` scopes)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    method: str = scope["method"]
    if path.startswith(API_PREFIX + "/"):
        found = find_route(path)
        if found is not None:
            route, entity_id = found
            await answer_api(backend, scope, receive, send, method, route, entity_id)
            return
    elif path == TOKEN_PATH and method == "POST":
        await answer_token(backend, scope, receive, send)
        return
    elif path == AUTHORIZE_PATH and method == "GET":
        query = scope["query_string"].decode("latin-1")
        await send_response(send, backend.oauth.authorize(query))
        return
    elif path == OPENAPI_PATH and method == "GET":
        body = _openapi()
        await send_response(send, Response(200, body, ((b"content-type", b"application/json"),)))
        return
    elif path.startswith(ADMIN_PREFIX):
        answer = await answer_admin(backend, method, path[len(ADMIN_PREFIX) :], receive)
        await send_response(send, answer)
        return
    await send_response(send, api_error(404, "not_found", "no such route"))
