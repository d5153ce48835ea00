"""The client a crawling command (`crawl`, `queue worker`) reads the API with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2

from token_stores import TokenStore

from .. import ApiConfig, AsyncWiserClient, RateLimiter, WiserOAuth
from ._errors import CliError
from ._settings import Settings

__all__ = ["crawling_client", "http_transport"]


def http_transport(settings: Settings) -> httpx2.AsyncBaseTransport | None:
    """A new transport of the HTTP stack ``--http`` names; None for httpx2's own.

    Raises:
        CliError: ``--http aiohttp`` without the ``aiohttp`` extra installed.
    """
    if settings.http == "httpx2":
        return None
    try:
        from ..transports import AiohttpTransport
    except ImportError as exc:
        raise CliError(
            f"--http aiohttp{settings.origin('http')} needs the aiohttp extra "
            f"(pip install 'wiser-async[aiohttp]'): {exc}"
        ) from None
    return AiohttpTransport()


@asynccontextmanager
async def crawling_client(
    *,
    store: TokenStore,
    client_id: str,
    client_secret: str | None,
    token_url: str,
    auth_method: str,
    api: ApiConfig,
    account: str,
    concurrency: int,
    rate: float | RateLimiter | None,
    transport: httpx2.AsyncBaseTransport | None,
) -> AsyncIterator[AsyncWiserClient]:
    """A client for `account` (others through its crawl's ``accounts=``), and its OAuth.

    Args:
        transport: What sends the client's requests (see `http_transport`); the
            client closes it.
    """
    async with (
        WiserOAuth(
            client_id=client_id,
            client_secret=client_secret,
            store=store,
            token_url=token_url,
            token_endpoint_auth_method=auth_method,
        ) as oauth,
        AsyncWiserClient(
            oauth,
            account,
            config=api,
            max_in_flight=concurrency,
            rate_limit=rate,
            transport=transport,
        ) as client,
    ):
        yield client
