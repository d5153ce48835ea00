"""``wiser-async tokens list|show|delete``: stored tokens, values never shown."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

import anyio
import click

from token_stores import Token, TokenStore

from ._errors import reported
from ._settings import Settings, with_settings
from ._stores import open_token_store

__all__ = ["duration", "expires_phrase", "expiry", "tokens"]

T = TypeVar("T")

MEMORY_REFUSED: Final = (
    "a memory store is empty when this command starts; give the store the tokens were "
    "saved in (file:DIRECTORY or a redis:// URL), or add --allow-memory"
)

_allow_memory = click.option(
    "--allow-memory", is_flag=True, help="Accept --store memory (it holds nothing yet)."
)


@click.group()
def tokens() -> None:
    """Inspect and delete stored tokens (values are never shown)."""


@tokens.command("list")
@_allow_memory
@with_settings("store", "encryption_keys")
def tokens_list(settings: Settings, *, allow_memory: bool) -> None:
    """List the account keys with a stored token, and when each expires."""

    async def list_tokens(store: TokenStore) -> list[tuple[str, Token | None]]:
        return [(key, await store.load(key)) for key in await store.keys()]

    found = _with_store(settings, allow_memory, list_tokens)
    if not found:
        click.echo("No tokens stored.")
    for key, token in found:
        click.echo(f"{key}\t{expiry(token) if token else 'gone'}")


@tokens.command("show")
@click.argument("account")
@_allow_memory
@with_settings("store", "encryption_keys")
def tokens_show(settings: Settings, *, account: str, allow_memory: bool) -> None:
    """Show an account's token, redacted (exit code 1 if there is none)."""
    token = _with_store(settings, allow_memory, lambda store: store.load(account))
    if token is None:
        click.echo(f"No token stored for {account!r}.", err=True)
        sys.exit(1)
    click.echo(f"account        {account}")
    click.echo(f"access_token   {_redact(token.access_token)}")
    click.echo(f"refresh_token  {_redact(token.refresh_token)}")
    click.echo(f"token_type     {token.token_type}")
    click.echo(f"expires        {expiry(token)}")
    click.echo(f"issued_at      {_timestamp(token.issued_at)}")
    click.echo(f"scope          {token.scope or '-'}")
    click.echo(f"fingerprint    {token.fingerprint[:12]}")
    click.echo(f"other fields   {', '.join(sorted(token.extra)) or '-'} (values not shown)")


@tokens.command("delete")
@click.argument("account")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_allow_memory
@with_settings("store", "encryption_keys")
def tokens_delete(settings: Settings, *, account: str, yes: bool, allow_memory: bool) -> None:
    """Delete an account's token; the customer must authorize again (exit code 1 if none)."""
    if not yes and not _confirm(f"Delete the token of {account!r}?"):
        click.echo("Not deleted.")
        sys.exit(1)
    deleted = _with_store(settings, allow_memory, lambda store: store.delete(account))
    click.echo(f"Deleted the token of {account!r}." if deleted else f"No token for {account!r}.")
    sys.exit(0 if deleted else 1)


def _confirm(question: str) -> bool:
    # Not click.confirm: it turns Ctrl-C into a plain "Aborted!" (exit 1), not an interruption.
    click.echo(f"{question} [y/N]: ", nl=False)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        click.echo()
    return answer.strip().lower() in ("y", "yes")


def _with_store(
    settings: Settings, allow_memory: bool, action: Callable[[TokenStore], Awaitable[T]]
) -> T:
    """Run `action` on the store the settings name, closing it after; errors in one line."""
    store = open_token_store(settings, memory_refused=None if allow_memory else MEMORY_REFUSED)

    async def run() -> T:
        try:
            return await action(store)
        finally:
            await store.aclose()

    with reported(store=settings.store):
        return anyio.run(run)


def _redact(secret: str | None) -> str:
    return "-" if secret is None else f"*** ({len(secret)} characters)"


def _timestamp(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def expiry(token: Token) -> str:
    """When `token` expires, and in how long or how long ago.

    ``2026-12-07T20:14:09+00:00 (in 1 h)``, ``... (expired 5 min ago)``.
    """
    if token.expires_at is None:
        return "expiry unknown"
    left = token.expires_at - time.time()
    state = f"in {duration(left)}" if left > 0 else f"expired {duration(-left)} ago"
    return f"{_timestamp(token.expires_at)} ({state})"


def expires_phrase(token: Token) -> str:
    """What `token`'s expiry is, as a phrase after "it": ``expires 2026-... (in 1 h)``."""
    if token.expires_at is None:
        return "has no expiry (the token endpoint gave none)"
    left = token.expires_at - time.time()
    when = _timestamp(token.expires_at)
    if left > 0:
        return f"expires {when} (in {duration(left)})"
    return f"expired {when} ({duration(-left)} ago)"


def duration(seconds: float) -> str:
    """Seconds as a person reads them: ``45 s``, ``59 min``, ``1 h``, ``1 h 30 min``, ``3 d``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(whole / 86400)} d"
