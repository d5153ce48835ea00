"""The sandbox portfolio options shared by ``demo``, ``crawl --sandbox`` and ``sandbox``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import click

if TYPE_CHECKING:
    from ..sandbox import Sandbox

__all__ = [
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "PortfolioOptions",
    "make_sandbox",
    "with_portfolio",
]

F = TypeVar("F", bound=Callable[..., Any])

SANDBOX_CLIENT_ID: Final = "sandbox-client"
SANDBOX_CLIENT_SECRET: Final = "sandbox-secret"  # noqa: S105 - the sandbox's published test secret
# The sandbox's default: a gateway and a main meter in no room (fewer if the site has fewer).
_UNASSIGNED = 2


@attrs.frozen(kw_only=True)
class PortfolioOptions:
    """The shape of a sandbox's portfolio, and its latency."""

    locations: int = 3
    sites_per_location: int = 4
    rooms_per_site: int = 3
    devices_per_site: int = 12
    seed: int = 0
    latency: float = 0.0


_HELP = {
    "locations": "Sandbox: locations per customer.",
    "sites_per_location": "Sandbox: sites per location.",
    "rooms_per_site": "Sandbox: rooms per site.",
    "devices_per_site": "Sandbox: devices per site.",
    "seed": "Sandbox: portfolio seed.",
    "latency": "Sandbox: seconds each API request takes.",
}


def with_portfolio(function: F) -> F:
    """Add the portfolio options; the command gets them as ``portfolio=PortfolioOptions``."""
    names = [field.name for field in attrs.fields(PortfolioOptions)]

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        portfolio = PortfolioOptions(**{name: kwargs.pop(name) for name in names})
        return function(*args, portfolio=portfolio, **kwargs)

    wrapped: Any = command
    for field in reversed(attrs.fields(PortfolioOptions)):
        kind: click.ParamType[Any] = click.IntRange(min=0)
        if field.type in (float, "float"):
            kind = click.FloatRange(min=0.0)
        elif field.name == "seed":
            kind = click.INT
        wrapped = click.option(
            f"--{field.name.replace('_', '-')}",
            field.name,
            type=kind,
            default=field.default,
            show_default=True,
            envvar=f"WISER_{field.name.upper()}",
            show_envvar=True,
            help=_HELP[field.name],
        )(wrapped)
    return wrapped  # type: ignore[no-any-return]


def make_sandbox(portfolio: PortfolioOptions, **options: Any) -> Sandbox:
    """A sandbox serving `portfolio` to every customer (`options` go to `Sandbox`)."""
    from ..sandbox import Faults, PortfolioSpec, Sandbox

    spec = PortfolioSpec(
        seed=portfolio.seed,
        locations=portfolio.locations,
        sites_per_location=portfolio.sites_per_location,
        rooms_per_site=portfolio.rooms_per_site,
        devices_per_site=portfolio.devices_per_site,
        unassigned_devices_per_site=min(_UNASSIGNED, portfolio.devices_per_site),
    )
    return Sandbox(spec, faults=Faults(latency=portfolio.latency), **options)
