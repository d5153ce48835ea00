"""HTTP transports for `AsyncWiserClient(..., transport=...)`, beyond httpx2's own.

``AiohttpTransport`` sends the client's requests through aiohttp (the
``aiohttp`` extra: ``pip install 'wiser-async[aiohttp]'``). It runs on
asyncio only.
"""

from __future__ import annotations

from ._transport.aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport"]
