"""An httpx2 transport over aiohttp (asyncio only), from httpx-aiohttp."""

from __future__ import annotations

from typing import Any

from httpx_aiohttp.httpx2 import AiohttpTransport as _UpstreamTransport

from .._token_endpoint import default_ssl_context

__all__ = ["AiohttpTransport"]


class AiohttpTransport(_UpstreamTransport):
    """httpx2 requests sent through an aiohttp session (asyncio only)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("verify", default_ssl_context())
        super().__init__(**options)
