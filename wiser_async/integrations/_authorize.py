"""The application's decision of who may act for which account, asked before anything is done.

The web integrations know customers' accounts (the keys their tokens are
stored under), not the application's users. `authorize(request, account)`
is the application's answer to "may the user behind this request act for
this account?". Both integrations require it, and ask it on the login route
before anything is stored, on the callback before the pending login is
taken, and in every helper that hands out a client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._http_errors import AccountRefused, AuthorizeFailed

__all__ = ["MISSING_AUTHORIZE", "Authorize", "allow_any_account", "decide", "warn_if_open"]

Authorize = Callable[[Any, str], bool | Awaitable[bool]]
"""``authorize(request, account) -> bool`` (or an awaitable bool), from the application."""

MISSING_AUTHORIZE = (
    "Wiser(...) needs authorize=: a function (request, account) -> bool, or an awaitable "
    "bool, answering whether the user behind a request may act for a customer's account. "
    "See the documentation, Web backends (docs/web-backends.md), 'Who may act for which account'. "
    "For demos and tests only: authorize=allow_any_account."
)

logger = logging.getLogger("wiser_async.web")


def allow_any_account(request: object, account: str) -> bool:
    """An `authorize` that lets anyone act for every account: for demos and tests only.

    With it, whoever reaches the routes may log in any account and read any
    customer's data. The integration logs a WARNING saying so when it starts.
    """
    return True


def warn_if_open(authorize: Authorize) -> None:
    """Log the risk of `allow_any_account` (called at start-up)."""
    if authorize is allow_any_account:
        logger.warning(
            "authorize=allow_any_account: anyone who reaches this app may log in any account "
            "and read every customer's data; use it for demos and tests only"
        )


async def decide(authorize: Authorize, request: object, account: str) -> None:
    """Ask `authorize`; return if it says True.

    Raises:
        AccountRefused: it said anything but True (403).
        AuthorizeFailed: it raised, or gave something other than a bool (500;
            the cause is chained for the server log).
    """
    try:
        answer = authorize(request, account)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as error:
        raise AuthorizeFailed(f"authorize({account!r}) raised {type(error).__name__}") from error
    if not isinstance(answer, bool):
        raise AuthorizeFailed(
            f"authorize({account!r}) returned a {type(answer).__name__}, not a bool"
        )
    if not answer:
        raise AccountRefused(account)
