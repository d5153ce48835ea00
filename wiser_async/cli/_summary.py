"""What a crawl's summary says of a whole output, shared by `crawl` and `queue merge`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import click

from .. import Failure

__all__ = ["LEVELS", "print_failures", "print_holdings"]

LEVELS: Final = ("location", "site", "room", "device")


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
