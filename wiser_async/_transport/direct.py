"""Sending through the transport itself, for a client of the library's own making.

``httpx2.AsyncClient.send`` wraps each call in layers a client of ours has
no use for: cookies taken from every answer and sent back, event hooks,
redirect bookkeeping, a per-URL transport lookup for proxies, an INFO log
line, a timing wrapper around the body. On a loopback server they cost
about a third of a request's CPU. `send_direct` does what is left of
``send(request, auth=..., stream=True)``, driving the auth flow (the bearer
token, the refresh and re-send after a 401) itself. The `Session` uses it
only for an HTTP client it created itself, with no proxy variable set in
the environment (httpx2 would mount a proxy transport for those); a
borrowed client always sends through its own ``send``.
"""

from __future__ import annotations

import urllib.request

import httpx2

__all__ = ["proxies_configured", "send_direct"]


def proxies_configured() -> bool:
    """True if the environment names a proxy (``HTTPS_PROXY``, ``ALL_PROXY``...) for httpx2."""
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


async def send_direct(
    transport: httpx2.AsyncBaseTransport, request: httpx2.Request, auth: httpx2.Auth
) -> httpx2.Response:
    """`request`, signed by `auth`'s flow, sent through `transport`: its streamed response.

    A response the flow answers with another request (a 401, then a new
    token) is closed unread, and its connection with it: a server's 401
    body is never read.
    """
    flow = auth.async_auth_flow(request)
    try:
        request = await flow.__anext__()
        while True:
            response = await transport.handle_async_request(request)
            response.request = request
            try:
                request = await flow.asend(response)
            except StopAsyncIteration:
                return response
            except BaseException:
                await response.aclose()
                raise
            await response.aclose()
    finally:
        await flow.aclose()
