"""The client a crawling command (`crawl`, `queue worker`) reads the API with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from token_stores import TokenStore

from .. import ApiConfig, AsyncWiserClient, RateLimiter, WiserOAuth

__all__ = ["crawling_client"]


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
) -> AsyncIterator[AsyncWiserClient]:
    """A client for `account` (others through its crawl's ``accounts=``), and its OAuth."""
    async with (
        WiserOAuth(
            client_id=client_id,
            client_secret=client_secret,
            store=store,
            token_url=token_url,
            token_endpoint_auth_method=auth_method,
        ) as oauth,
        AsyncWiserClient(
            oauth, account, config=api, max_in_flight=concurrency, rate_limit=rate
        ) as client,
    ):
        yield client
