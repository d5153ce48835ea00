"""Grant requests to the token endpoint: retried where safe, finished despite cancellation."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import anyio

from token_stores import Token, TokenStore, TokenStoreError

from ._token_endpoint import TokenEndpoint
from .errors import TokenEndpointError

__all__ = ["FINISHING_LIMIT", "Superseded", "finishing", "grant", "load_quietly"]

logger = logging.getLogger("wiser_async.oauth")

# How long a refresh or a code exchange may take once started, whatever
# happens to its caller: the token endpoint's retries and the store's write.
FINISHING_LIMIT = 120.0
# Token-endpoint attempts per grant request; waits between them (seconds).
_GRANT_ATTEMPTS = 3
_GRANT_WAIT = (0.2, 1.0)
_MAX_RETRY_AFTER = 10.0
# Failures after which the token endpoint did not act, or may not have: worth another try.
_RETRYABLE_ERRORS = frozenset(
    {"unreachable", "connection_lost", "timeout", "server_error", "temporarily_unavailable"}
)


class Superseded(Exception):
    """Another process refreshed while this one waited to try again: its token is in the store."""


async def grant(
    endpoint: TokenEndpoint,
    store: TokenStore,
    account: str,
    grant_type: str,
    params: Mapping[str, str],
    *,
    stored: Token | None,
) -> Token:
    """One grant, retried where the server did not act or may not have.

    Before a refresh token is sent again, the store is read: if another
    process has refreshed meanwhile, `Superseded` carries its token, and
    the refresh token is not spent twice.
    """
    for attempt in range(1, _GRANT_ATTEMPTS + 1):
        try:
            return await endpoint.request(grant_type, params, account=account)
        except TokenEndpointError as exc:
            if exc.error not in _RETRYABLE_ERRORS or attempt == _GRANT_ATTEMPTS:
                raise
            wait = _GRANT_WAIT[min(attempt, len(_GRANT_WAIT)) - 1] * (1 + random.random())
            if exc.retry_after is not None:
                if exc.retry_after > _MAX_RETRY_AFTER:
                    raise
                wait = exc.retry_after
            logger.info(
                "token endpoint %s for account %r (%s); trying again in %.1f s",
                grant_type,
                account,
                exc.error,
                wait,
            )
            await anyio.sleep(wait)
            if stored is not None:
                latest = await load_quietly(store, account)
                if latest is not None and latest.fingerprint != stored.fingerprint:
                    raise Superseded(latest) from None
    raise AssertionError("unreachable")  # pragma: no cover


async def load_quietly(store: TokenStore, account: str) -> Token | None:
    """The stored token of `account`, or None when the store fails."""
    try:
        return await store.load(account)
    except TokenStoreError:
        return None


@contextmanager
def finishing(what: str, path: str) -> Iterator[None]:
    """Shield a token-endpoint call and the save after it from cancellation, for a bounded time."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(FINISHING_LIMIT):
                yield
        except TimeoutError:
            raise TokenEndpointError(
                "timeout", f"the {what} did not finish within {FINISHING_LIMIT:g} s", path=path
            ) from None
