"""ASGI plumbing the sandbox's routes share: the request body, headers, the answer.

And the :class:`Backend` a route acts on: the sandbox, with the servers,
counters and fault plan its facade keeps private.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import attrs

from ._http import DroppedConnectionError, Response

if TYPE_CHECKING:
    from ._app import Sandbox
    from ._faults import FaultPlan
    from ._oauth import OAuthServer
    from ._stats import StatsRecorder

__all__ = [
    "MAX_BODY",
    "Backend",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header",
    "read_body",
    "send_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024


@attrs.frozen(eq=False)
class Backend:
    """What the routes answer from: one sandbox and its private parts.

    ``sandbox`` gives what may change between requests (its ``faults``) and its
    public operations; the others are the sandbox's own objects, not copies.
    """

    sandbox: Sandbox
    oauth: OAuthServer
    stats: StatsRecorder
    plan: FaultPlan
    lock: threading.Lock


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` past ``MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: Response, *, drop: bool = False) -> None:
    """Send ``response``; with ``drop``, cut the connection after its headers."""
    headers = [(b"content-length", str(len(response.body)).encode()), *response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if drop:
        raise DroppedConnectionError("sandbox dropped the connection")
    await send({"type": "http.response.body", "body": response.body})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower case), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
