"""What ``crawl`` says of its output: the whole output and this run apart, each cause in words.

The summary names what is missing and why, and says how to read what is
left only where that can work: ``--resume`` after an outage or a timeout,
not where the same command would meet the same refusal (client credentials
the token endpoint refuses, an account that needs a login, an API no
request could reach).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import attrs
import click

from token_stores import TokenStore

from .. import ApiConfig, CrawlResult, CrawlStats, Failure, JsonlCrawl
from .._crawl import RETRY_LATER_KINDS
from ._errors import warn
from ._summary import (
    LEVELS,
    accounts_refused_client,
    accounts_to_log_in,
    print_failures,
    print_holdings,
    refused_client_line,
)

__all__ = ["CrawlOutcome", "CrawlSource", "print_summary"]

# Failures that leave a part for a later run to read (the rest are the API's answer).
LEFT_FOR_LATER: Final = RETRY_LATER_KINDS | {"authorization", "client"}


@attrs.frozen(kw_only=True)
class CrawlSource:
    """Where a crawl reads from: the tokens, the application, the API (and how to name them)."""

    store: TokenStore
    client_id: str
    client_secret: str | None = attrs.field(repr=False)
    auth_method: str
    token_url: str
    api: ApiConfig
    # What the checkpoint records the crawl read from (None: the base URL).
    label: str | None
    # How messages name the API: the option that set it, or the sandbox.
    api_named: str
    token_named: str
    # How messages name the client's credentials: the options, and where the secret came from.
    client_named: str


@attrs.frozen(kw_only=True)
class CrawlOutcome:
    """The whole output (every run that wrote it) and this run, apart.

    Attributes:
        output: The file written.
        jsonl: JSONL (resumable) or JSON.
        accounts: Accounts crawled.
        items: Items in the whole output, by kind.
        failures: Every part the whole output is missing.
        finished: Nothing is left for a later run to read.
        run: What this run did.
        run_failures: What this run met.
    """

    output: Path
    jsonl: bool
    accounts: int
    items: dict[str, int]
    failures: list[Failure]
    finished: bool
    run: CrawlStats
    run_failures: list[Failure]

    @property
    def complete(self) -> bool:
        """True only when nothing of any portfolio is missing."""
        return self.finished and not self.failures

    @classmethod
    def of_jsonl(cls, crawled: JsonlCrawl, accounts: int) -> CrawlOutcome:
        return cls(
            output=crawled.output,
            jsonl=True,
            accounts=accounts,
            items=dict(crawled.items),
            failures=list(crawled.failures),
            finished=crawled.finished,
            run=crawled.run,
            run_failures=list(crawled.run_failures),
        )

    @classmethod
    def of_json(cls, output: Path, result: CrawlResult, accounts: int) -> CrawlOutcome:
        stats = result.stats
        return cls(
            output=output,
            jsonl=False,
            accounts=accounts,
            items={
                "location": stats.locations,
                "site": stats.sites,
                "room": stats.rooms,
                "device": stats.devices,
            },
            failures=list(result.failures),
            finished=not any(failure.kind in LEFT_FOR_LATER for failure in result.failures),
            run=stats,
            run_failures=list(result.failures),
        )


def print_summary(outcome: CrawlOutcome, source: CrawlSource) -> int:
    """Print what the whole output holds and misses, and this run apart; the exit code."""
    run = outcome.run
    print_holdings(outcome.output, outcome.accounts, outcome.items)
    if outcome.jsonl and run.requests == 0 and outcome.finished and not outcome.run_failures:
        click.echo("This run: nothing was left to read (the output was finished already).")
    else:
        read = ", ".join(
            f"{count} {kind}s"
            for kind, count in zip(
                LEVELS, (run.locations, run.sites, run.rooms, run.devices), strict=True
            )
        )
        click.echo(
            f"This run: {run.requests} requests, {run.retries} retries, "
            f"{run.throttled} answered 429, {run.duration:.1f} s; read {read}."
        )
    _warn_unreachable(outcome.run_failures, source)
    refused = accounts_refused_client(outcome.failures)
    if refused:
        endpoint = f"the token endpoint at {_host(source.token_url)} ({source.token_named})"
        warn(refused_client_line(endpoint, source.client_named, len(refused)))
    if outcome.complete:
        click.echo("Complete: nothing is missing.")
        return 0
    print_failures(outcome.failures)
    if not outcome.finished:
        for account in accounts_to_log_in(outcome.failures):
            click.echo(
                f"Account {account!r} needs authorization first: wiser-async login -a {account}"
            )
        if not _readable_again(outcome):
            click.echo("Unfinished: what is left cannot be read until the cause above is fixed.")
        elif outcome.jsonl:
            click.echo("Unfinished: run the same command with --resume to read what is left.")
        else:
            click.echo(
                "Unfinished: JSON output cannot be resumed; run the same command again "
                "to read what is missing (or use .jsonl, which resumes)."
            )
    elif outcome.jsonl:
        click.echo(
            "Finished with parts missing (the API's answer for them): --resume has nothing "
            "left to read; crawl again without --resume to ask for them again."
        )
    else:
        click.echo("Finished with parts missing (the API's answer for them).")
    return 1


def _readable_again(outcome: CrawlOutcome) -> bool:
    """Running the same command again may read some of what is left.

    Not when this run read nothing (the API, its token endpoint or the store
    could not be reached, or answered nothing in time: the same command meets
    the same wall), nor for the parts of accounts refused for a cause a new
    run meets again: client credentials the token endpoint refuses, a grant
    that needs a login.
    """
    run = outcome.run
    if not any((run.locations, run.sites, run.rooms, run.devices)):
        return False
    blocked = {*accounts_refused_client(outcome.failures), *accounts_to_log_in(outcome.failures)}
    return any(
        failure.kind in LEFT_FOR_LATER and failure.account not in blocked
        for failure in outcome.failures
    )


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _warn_unreachable(failures: Sequence[Failure], source: CrawlSource) -> None:
    """One line per endpoint that could not be reached, naming its host and option."""
    kinds = Counter(failure.kind for failure in failures)
    api_host = _host(source.api.base_url)
    if kinds["connection"]:
        warn(
            f"error: could not connect to {api_host} ({source.api_named}): "
            f"{kinds['connection']} request(s) failed"
        )
    if kinds["timeout"]:
        warn(
            f"error: no answer in time from {api_host} ({source.api_named}): "
            f"{kinds['timeout']} request(s) timed out"
        )
    if kinds["token_endpoint"]:
        warn(
            f"error: the token endpoint at {_host(source.token_url)} ({source.token_named}) "
            f"failed for {kinds['token_endpoint']} part(s)"
        )
