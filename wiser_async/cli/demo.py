"""``wiser-async demo``: the sandbox, the OAuth flow, a crawl and a summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import click
import httpx2

from .. import ApiConfig, AsyncWiserClient, CrawlResult, WiserOAuth
from ._errors import reported
from ._sandboxes import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    PortfolioOptions,
    make_sandbox,
    with_portfolio,
)
from ._settings import DEFAULT_REDIRECT_URI

if TYPE_CHECKING:
    from ..sandbox import SandboxStats, SandboxUrls

__all__ = ["demo"]

DEMO_ACCOUNT = "demo-customer"


@click.command()
@with_portfolio
def demo(*, portfolio: PortfolioOptions) -> None:
    """Run the whole flow against a local sandbox and print a summary.

    Starts the sandbox on a loopback port, authorizes a customer with the
    authorization-code flow (PKCE; the sandbox consents at once, so no
    browser is needed), crawls the portfolio and summarizes it.
    """
    sandbox = make_sandbox(portfolio)
    with reported(), sandbox.serve_in_thread() as urls:
        click.echo(f"Sandbox listening at {urls.origin}")
        result = anyio.run(_demo, urls)
        sandbox_stats = sandbox.stats
    _print_demo(result, sandbox_stats)


async def _demo(urls: SandboxUrls) -> CrawlResult:
    async with WiserOAuth(
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        redirect_uri=DEFAULT_REDIRECT_URI,
        authorize_url=urls.authorize_url,
        token_url=urls.token_url,
        scopes=["energy-monitoring:read"],
    ) as oauth:
        request = oauth.authorization_request(login_hint=DEMO_ACCOUNT)
        click.echo("1. Authorization URL built, with state and a PKCE S256 challenge")
        # Play the browser: the sandbox consents at once and redirects to the
        # callback with a code; read that redirect instead of following it.
        async with httpx2.AsyncClient() as browser:
            consent = await browser.get(request.url)
        callback_url = consent.headers.get("location", "")
        click.echo(f"2. Consent given; redirected to {DEFAULT_REDIRECT_URI}?code=...&state=...")
        token = await oauth.complete_authorization(DEMO_ACCOUNT, callback_url, request)
        lifetime = f"{token.lifetime:.0f} s" if token.lifetime is not None else "unknown"
        click.echo(f"3. State checked, code exchanged, token stored (lifetime {lifetime})")
        async with AsyncWiserClient(
            oauth, DEMO_ACCOUNT, config=ApiConfig(base_url=urls.api_base_url)
        ) as client:
            result = await client.crawl()
            click.echo("4. Portfolio crawled")
            return result


def _print_demo(result: CrawlResult, sandbox_stats: SandboxStats) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    stats = result.stats
    counts = Table(title="Portfolio")
    counts.add_column("level")
    counts.add_column("count", justify="right")
    for level in ("locations", "sites", "rooms", "devices"):
        counts.add_row(level, str(getattr(stats, level)))
    console.print(counts)

    sample = Table(title="A few devices")
    for column in ("device", "room", "category", "reference", "status"):
        sample.add_column(column, no_wrap=True)
    if result.locations and result.locations[0].sites:
        site_tree = result.locations[0].sites[0]
        rows = [(device, "(no room)") for device in site_tree.devices]
        rows += [
            (device, room.room.name or room.room.id)
            for room in site_tree.rooms
            for device in room.devices
        ]
        for device, room_name in rows[:6]:
            sample.add_row(
                device.name or device.id,
                room_name,
                str(device.category or ""),
                device.commercial_reference or "",
                str(device.status or ""),
            )
    console.print(sample)
    unknown = sum(1 for device in result.devices() if device.extra)
    grants = ", ".join(
        f"{grant} {count}" for grant, count in sorted(sandbox_stats.token_requests.items())
    )
    console.print(
        f"Requests: {stats.requests} API requests ({stats.retries} retries), "
        f"peak {sandbox_stats.peak_in_flight} in flight; token endpoint: {grants}\n"
        f"Devices carrying fields this library does not know (kept in .extra): {unknown}\n"
        f"Failures: {len(result.failures)}; crawled in {stats.duration:.2f} s"
    )
