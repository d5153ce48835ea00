"""The ``wiser-async`` command line (needs the ``cli`` extra).

::

    wiser-async demo        sandbox + OAuth flow + portfolio read, no credentials needed
    wiser-async sandbox     serve the emulator on a loopback port
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import anyio
import click
import httpx2

from . import ApiConfig, AsyncWiserClient, WiserOAuth
from .models import Device, Location, Room, Site

__all__ = ["main"]

DEMO_ACCOUNT = "demo-customer"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"


@click.group()
@click.version_option(package_name="wiser-async")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Client of the Wiser Energy Monitoring Cloud API."""
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.option("--locations", default=3, show_default=True, help="Locations in the portfolio.")
@click.option("--sites-per-location", default=4, show_default=True)
@click.option("--rooms-per-site", default=3, show_default=True)
@click.option("--devices-per-site", default=12, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic portfolio.")
@click.option("--latency", default=0.0, show_default=True, help="Sandbox latency per request (s).")
def demo(
    locations: int,
    sites_per_location: int,
    rooms_per_site: int,
    devices_per_site: int,
    seed: int,
    latency: float,
) -> None:
    """Run the whole flow against a local sandbox and print a summary.

    Starts the sandbox on a loopback port, authorizes a customer with the
    authorization-code flow (PKCE; the sandbox consents at once, so no
    browser is needed), reads the portfolio and summarizes it.
    """
    from .sandbox import Faults, PortfolioSpec, Sandbox

    sandbox = Sandbox(
        PortfolioSpec(
            seed=seed,
            locations=locations,
            sites_per_location=sites_per_location,
            rooms_per_site=rooms_per_site,
            devices_per_site=devices_per_site,
        ),
        faults=Faults(latency=latency),
    )
    with sandbox.serve_in_thread() as urls:
        click.echo(f"Sandbox listening at {urls.origin}")
        summary = anyio.run(_demo, urls.api_base_url, urls.authorize_url, urls.token_url)
        stats = sandbox.stats
    _print_summary(summary, sandbox_requests=stats.requests, token_calls=stats.token_requests)


async def _demo(api_base_url: str, authorize_url: str, token_url: str) -> dict[str, Any]:
    async with WiserOAuth(
        client_id="sandbox-client",
        client_secret="sandbox-secret",  # noqa: S106 - the sandbox's published test secret
        redirect_uri=DEMO_REDIRECT_URI,
        authorize_url=authorize_url,
        token_url=token_url,
        scopes=["portfolio.read"],
    ) as oauth:
        request = oauth.authorization_request(login_hint=DEMO_ACCOUNT)
        click.echo("1. Authorization URL built (state + PKCE S256)")
        # Play the browser: the sandbox consents at once and redirects to the
        # callback with a code; read that redirect instead of following it.
        async with httpx2.AsyncClient() as browser:
            consent = await browser.get(request.url)
        callback_url = consent.headers.get("location", "")
        click.echo(f"2. Consent given; redirected to {DEMO_REDIRECT_URI}?code=...&state=...")
        token = await oauth.complete_authorization(DEMO_ACCOUNT, callback_url, request)
        lifetime = f"{token.lifetime:.0f} s" if token.lifetime is not None else "unknown"
        click.echo(f"3. Code exchanged; token stored for {DEMO_ACCOUNT!r} (lifetime {lifetime})")
        started = time.perf_counter()
        async with AsyncWiserClient(
            oauth, DEMO_ACCOUNT, config=ApiConfig(base_url=api_base_url)
        ) as client:
            tree = await _read_portfolio(client)
            tree["duration"] = time.perf_counter() - started
            tree["requests"] = client.stats.requests
            tree["retries"] = client.stats.retries
        click.echo("4. Portfolio read")
        return tree


async def _read_portfolio(client: AsyncWiserClient) -> dict[str, Any]:
    locations: list[Location] = []
    sites: list[Site] = []
    rooms: list[Room] = []
    devices: list[Device] = []
    async for location in client.locations.iter():
        locations.append(location)
        async for site in client.sites.iter(location.id):
            sites.append(site)
            rooms.extend(await client.rooms.list(site.id))
            devices.extend(await client.devices.list(site_id=site.id, page_size=500))
    return {"locations": locations, "sites": sites, "rooms": rooms, "devices": devices}


def _print_summary(
    summary: dict[str, Any], *, sandbox_requests: int, token_calls: dict[str, int]
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = Table(title="Portfolio", show_header=True)
    counts.add_column("level")
    counts.add_column("count", justify="right")
    for level in ("locations", "sites", "rooms", "devices"):
        counts.add_row(level, str(len(summary[level])))
    console.print(counts)

    devices: list[Device] = summary["devices"]
    sample = Table(title=f"Sample devices ({min(5, len(devices))} of {len(devices)})")
    for column in ("id", "site", "room", "category", "reference", "status"):
        sample.add_column(column)
    for device in devices[:5]:
        sample.add_row(
            device.id,
            device.site_id or "",
            device.room_id or "(no room)",
            str(device.category or ""),
            device.commercial_reference or "",
            str(device.status or ""),
        )
    console.print(sample)
    unknown = sum(1 for d in devices if d.extra)
    grants = ", ".join(f"{grant}: {count}" for grant, count in sorted(token_calls.items()))
    console.print(
        f"Requests made: {summary['requests']} API ({summary['retries']} retries), "
        f"sandbox counted {sandbox_requests}; token endpoint calls: {grants or 'none'}\n"
        f"Devices with fields unknown to this library (kept in .extra): {unknown}\n"
        f"Read in {summary['duration']:.2f} s"
    )


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--locations", default=3, show_default=True)
@click.option("--sites-per-location", default=4, show_default=True)
@click.option("--rooms-per-site", default=3, show_default=True)
@click.option("--devices-per-site", default=12, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--latency", default=0.0, show_default=True)
@click.option("--token-lifetime", default=3600.0, show_default=True)
def sandbox_command(
    host: str,
    port: int,
    locations: int,
    sites_per_location: int,
    rooms_per_site: int,
    devices_per_site: int,
    seed: int,
    latency: float,
    token_lifetime: float,
) -> None:
    """Serve the API emulator and its OAuth server until interrupted."""
    from .sandbox import Faults, PortfolioSpec, Sandbox, serve

    sandbox = Sandbox(
        PortfolioSpec(
            seed=seed,
            locations=locations,
            sites_per_location=sites_per_location,
            rooms_per_site=rooms_per_site,
            devices_per_site=devices_per_site,
        ),
        access_token_lifetime=token_lifetime,
        faults=Faults(latency=latency),
    )

    def ready(urls: Any) -> None:
        click.echo(f"API:       {urls.api_base_url}")
        click.echo(f"Authorize: {urls.authorize_url}")
        click.echo(f"Token:     {urls.token_url}")
        click.echo("Client id sandbox-client, secret sandbox-secret. Ctrl-C stops.")

    serve(sandbox, host, port, ready)
