"""``wiser-async sandbox``: serve the API emulator on a port until interrupted."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import click

from ._errors import CliError
from ._sandboxes import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    PortfolioOptions,
    make_sandbox,
    with_portfolio,
)

if TYPE_CHECKING:
    from ..sandbox import SandboxUrls

__all__ = ["sandbox_command"]


@click.command("sandbox")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="WISER_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    envvar="WISER_PORT",
    show_envvar=True,
    help="Port to listen on (0: any free one).",
)
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=0.0, min_open=True),
    default=3600.0,
    show_default=True,
    envvar="WISER_TOKEN_LIFETIME",
    show_envvar=True,
    help="Seconds an access token lives.",
)
@with_portfolio
def sandbox_command(
    *, host: str, port: int, token_lifetime: float, portfolio: PortfolioOptions
) -> None:
    """Serve the API emulator and its OAuth server until interrupted (Ctrl-C)."""
    from ..sandbox import serve

    sandbox = make_sandbox(portfolio, access_token_lifetime=token_lifetime)

    def ready(urls: SandboxUrls) -> None:
        click.echo(f"API:       {urls.api_base_url}")
        click.echo(f"Authorize: {urls.authorize_url}")
        click.echo(f"Token:     {urls.token_url}")
        click.echo(f"Client id {SANDBOX_CLIENT_ID}, secret {SANDBOX_CLIENT_SECRET}. Ctrl-C stops.")

    try:
        serve(sandbox, host, port, ready)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} on {host} is in use: choose another with --port") from None
        raise CliError(
            f"cannot listen on {host}:{port} (--host, --port): {exc.strerror or exc}"
        ) from None
