"""HTTP transports for `AsyncWiserClient(..., transport=...)`, beyond httpx2's own.

``AiohttpTransport`` sends the client's requests through aiohttp (the
``aiohttp`` extra: ``pip install 'wiser-async[aiohttp]'``), at less CPU per
request than httpx2's own transport. Given to the client itself, requests go
straight through its aiohttp session, with no httpx2 request or response
built around them; wrapped in a transport of your own (or given to an
``httpx2.AsyncClient``), it is an ordinary httpx2 transport. Either way the
same limits, timeouts, size bounds and typed errors apply. It runs on
asyncio only: on trio the first request raises `RuntimeError`.
"""

from __future__ import annotations

from ._transport.aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport"]

# Shown as this module's, as the package's own names are: a traceback or repr
# says wiser_async.transports.AiohttpTransport, not a private module's path.
AiohttpTransport.__module__ = __name__
