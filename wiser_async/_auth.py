"""`httpx2.Auth` that signs API requests with an account's bearer token."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from typing import Protocol

import httpx2

from token_stores import Token

__all__ = ["BearerAuth", "TokenSource"]

# Re-sends after 401s of one request: the retry after a refresh, and tokens
# that expired on the way.
_MAX_RESENDS = 3


class TokenSource(Protocol):
    """What signs requests: `WiserOAuth` is one."""

    async def token(self, account: str, *, rejected: Token | None = None) -> Token:
        """A valid token of `account`; never `rejected` again."""
        ...


class BearerAuth(httpx2.Auth):
    """Puts the account's access token on each request; on 401, refreshes once and retries once.

    The refresh is the token source's single-flight refresh, so a burst of
    401s (a token revoked mid-session) costs one token-endpoint call.

    Args:
        tokens: Gives the account's tokens.
        account: Whose token signs.
        on_send: Called for each request sent (the first and every re-send).
    """

    def __init__(self, tokens: TokenSource, account: str, on_send: Callable[[], None]) -> None:
        self._tokens = tokens
        self.account = account
        self._on_send = on_send

    def __repr__(self) -> str:
        return f"BearerAuth(account={self.account!r})"

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        raise RuntimeError("BearerAuth works with httpx2.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._tokens.token(self.account)
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        self._on_send()
        response = yield request
        resent = 0
        while response.status_code == 401 and resent < _MAX_RESENDS:
            # One refresh and one retry after a 401. A token that had expired by
            # our own clock when the answer came ran out on the way (a request
            # held up on a loaded machine): that 401 says nothing of the grant,
            # and another token is tried, a bounded number of times.
            if resent and not token.expires_within(0):
                return
            token = await self._tokens.token(self.account, rejected=token)
            request.headers["Authorization"] = f"Bearer {token.access_token}"
            self._on_send()
            resent += 1
            response = yield request
