"""What a crawl's summary says of a whole output, shared by `crawl` and `queue merge`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import click

from .. import Failure

__all__ = [
    "LEVELS",
    "accounts_refused_client",
    "accounts_to_log_in",
    "print_failures",
    "print_holdings",
    "refused_client_line",
]

LEVELS: Final = ("location", "site", "room", "device")
# How the crawl records an account the token endpoint refused to refresh for
# because it refused the client (RFC 6749 5.2 ``invalid_client``): a failure
# of kind ``client`` for the whole account.
_CLIENT_REFUSED_KIND: Final = "client"


def _refused_client(failure: Failure) -> bool:
    return failure.kind == _CLIENT_REFUSED_KIND


def accounts_refused_client(failures: Sequence[Failure]) -> list[str]:
    """Accounts left unread because the token endpoint refused the client credentials.

    Their grants are untouched (the server refuses the client before it reads
    the refresh token): the client id or secret needs fixing, not a login.
    """
    return sorted({failure.account for failure in failures if _refused_client(failure)})


def refused_client_line(endpoint: str, client: str, accounts: int) -> str:
    """The error line for accounts left unread because the client credentials were refused.

    Args:
        endpoint: The token endpoint, as the command names it.
        client: The credentials, as the command names them (never the secret).
        accounts: How many accounts were left unread.
    """
    return (
        f"error: {endpoint} refused the client credentials (invalid_client) for {accounts} "
        f"account(s): check {client}; their grants are unchanged, no login is needed"
    )


def accounts_to_log_in(failures: Sequence[Failure]) -> list[str]:
    """Accounts whose grant is gone (or never was): a ``login`` authorizes them again."""
    return sorted(
        {
            failure.account
            for failure in failures
            if failure.kind == "authorization" and not _refused_client(failure)
        }
    )


def print_holdings(output: Path, accounts: int, items: Mapping[str, int]) -> None:
    """``OUTPUT holds N accounts: L locations, S sites, R rooms, D devices.``"""
    whole = ", ".join(f"{items.get(kind, 0)} {kind}s" for kind in LEVELS)
    click.echo(f"{output} holds {accounts} account{'s' if accounts != 1 else ''}: {whole}.")


def print_failures(failures: Sequence[Failure]) -> None:
    """How many parts could not be read, by kind, then each of them."""
    kinds = Counter(failure.kind for failure in failures)
    click.echo(
        f"{len(failures)} part(s) could not be read ("
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        + "):"
    )
    # Sorted: the same output gives the same summary, however its runs interleaved.
    for failure in sorted(failures, key=lambda f: (f.account, f.resource, f.kind, f.message)):
        status = f" {failure.status}" if failure.status else ""
        click.echo(
            f"  {failure.account} {failure.resource}: {failure.kind}{status}: {failure.message}"
        )
