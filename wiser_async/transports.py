"""HTTP transports for `AsyncWiserClient(..., transport=...)`, beyond httpx2's own.

``AiohttpTransport`` sends the client's requests through aiohttp (the
``aiohttp`` extra: ``pip install 'wiser-async[aiohttp]'``), at less CPU per
request than httpx2's own transport. It runs on asyncio only: on trio the
first request raises `RuntimeError`.
"""

from __future__ import annotations

from ._transport.aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport"]

# Shown as this module's, as the package's own names are: a traceback or repr
# says wiser_async.transports.AiohttpTransport, not a private module's path.
AiohttpTransport.__module__ = __name__
