"""The client every benchmark measures, set up as an application would.

Kept apart from the sandbox helpers: the RSS child imports only this and the
library, so its memory baseline holds what a user's process would hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth

__all__ = ["ACCOUNT", "MAX_IN_FLIGHT", "open_client"]

ACCOUNT = "acct"
MAX_IN_FLIGHT = 16
# The sandbox's fixed test credentials (see wiser_async.sandbox.Sandbox).
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


@asynccontextmanager
async def open_client(
    api_base_url: str, token_url: str, token: dict[str, Any], **options: Any
) -> AsyncIterator[AsyncWiserClient]:
    """An `AsyncWiserClient` for `ACCOUNT`, signed with a grant minted by the sandbox.

    Args:
        api_base_url: The sandbox's API base URL.
        token_url: The sandbox's token endpoint.
        token: A token response, as `SandboxProcess.issue_token` returns it.
        options: More `AsyncWiserClient` options (``rate_limit=``, ``http_client=``...).
            ``max_in_flight`` defaults to `MAX_IN_FLIGHT`.
    """
    store = MemoryTokenStore()
    await store.save(ACCOUNT, Token.from_response(token))
    options.setdefault("max_in_flight", MAX_IN_FLIGHT)
    async with (
        WiserOAuth(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=REDIRECT_URI,
            store=store,
            token_url=token_url,
        ) as oauth,
        AsyncWiserClient(
            oauth, ACCOUNT, config=ApiConfig(base_url=api_base_url), **options
        ) as client,
    ):
        yield client
