"""``wiser-async crawl``: portfolios to JSONL (resumable) or JSON, and a truthful summary.

The summary and the exit code speak of the whole output, every run that
wrote it included, never only of the last run: 0 when nothing is missing, 1
when parts are missing or the output is unfinished, 2 for a usage,
configuration or output error, 130 when interrupted.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio
import attrs
import click

from token_stores import MemoryTokenStore, Token, TokenStore

from .. import (
    ApiConfig,
    CrawlResult,
    CrawlStats,
    Failure,
    JsonlCrawl,
    crawl_to_json,
    crawl_to_jsonl,
)
from .._crawl import RETRY_LATER_KINDS
from ._clients import crawling_client, http_transport
from ._errors import CliError, on_interrupt, reported, warn
from ._progress import CrawlProgress
from ._sandboxes import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    PortfolioOptions,
    make_sandbox,
    with_portfolio,
)
from ._settings import CRAWL_SETTINGS, Settings, with_settings
from ._stores import open_token_store
from ._summary import LEVELS, print_failures, print_holdings

__all__ = ["CrawlOutcome", "crawl"]

SANDBOX_ACCOUNT: Final = "demo-customer"
# Failures that leave a part for a later run to read (the rest are the API's answer).
_LEFT_FOR_LATER: Final = RETRY_LATER_KINDS | {"authorization"}
JSONL_INTERRUPTED: Final = (
    "Interrupted. The output keeps every part finished so far: "
    "run the same command with --resume to read what is left."
)
JSON_INTERRUPTED: Final = (
    "Interrupted. JSON output cannot be resumed; run again (or use .jsonl, which resumes)."
)


@attrs.frozen(kw_only=True)
class CrawlJob:
    """What to crawl, where to write it, and how."""

    output: Path
    jsonl: bool
    resume: bool
    accounts: tuple[str, ...]
    timeout: float | None
    settings: Settings


@attrs.frozen(kw_only=True)
class _Source:
    """Where a crawl reads from: the tokens, the application, the API."""

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
            finished=not any(failure.kind in _LEFT_FOR_LATER for failure in result.failures),
            run=stats,
            run_failures=list(result.failures),
        )


@click.command()
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WISER_OUTPUT",
    show_envvar=True,
    help="Where to write: .jsonl (streamed, resumable) or .json (one document).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "json"]),
    envvar="WISER_FORMAT",
    show_envvar=True,
    help="Output format (default: JSON if the file name ends in .json, else JSONL).",
)
@click.option(
    "--resume",
    is_flag=True,
    envvar="WISER_RESUME",
    show_envvar=True,
    help="Continue an interrupted JSONL crawl (with the same parameters).",
)
@click.option(
    "-a",
    "--account",
    "accounts",
    multiple=True,
    envvar="WISER_ACCOUNT",
    show_envvar=True,
    help="Account key to crawl (repeat; default: every key in the store).",
)
@click.option(
    "--timeout",
    type=float,
    envvar="WISER_TIMEOUT",
    show_envvar=True,
    help="Seconds; what is not read by then is reported (and left for --resume).",
)
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    envvar="WISER_SANDBOX",
    show_envvar=True,
    help="Crawl a local sandbox; tokens are minted for the accounts (no store, no URLs).",
)
@with_settings(*CRAWL_SETTINGS)
@with_portfolio
def crawl(
    settings: Settings,
    *,
    output: Path,
    output_format: str | None,
    resume: bool,
    accounts: tuple[str, ...],
    timeout: float | None,
    use_sandbox: bool,
    portfolio: PortfolioOptions,
) -> None:
    """Crawl portfolios (location -> site -> room -> device) to a file.

    JSONL is written a site at a time with a checkpoint beside it
    (OUTPUT.checkpoint): after Ctrl-C or a crash, run the same command with
    --resume. A progress display shows on a terminal (stderr). The summary
    speaks of the whole output, earlier runs included, and lists every part
    missing. Exit code 0 when complete, 1 when parts are missing or the
    output is unfinished, 2 on a usage or output error, 130 when interrupted.
    """
    chosen = output_format or ("json" if output.suffix.lower() == ".json" else "jsonl")
    if resume and chosen == "json":
        raise CliError("--resume: JSON output cannot be resumed (crawl to .jsonl to resume)")
    if timeout is not None and not timeout > 0:
        raise CliError(f"--timeout must be positive (seconds), not {timeout:g}")
    job = CrawlJob(
        output=output,
        jsonl=chosen == "jsonl",
        resume=resume,
        accounts=tuple(dict.fromkeys(accounts)),
        timeout=timeout,
        settings=settings,
    )
    on_interrupt(JSONL_INTERRUPTED if job.jsonl else JSON_INTERRUPTED)
    with reported(store=settings.store):
        if use_sandbox:
            outcome, source = _crawl_sandbox(job, portfolio)
        else:
            source = _source(settings)
            outcome = anyio.run(_run, job, source)
    sys.exit(print_summary(outcome, source))


def _crawl_sandbox(job: CrawlJob, portfolio: PortfolioOptions) -> tuple[CrawlOutcome, _Source]:
    sandbox = make_sandbox(portfolio)
    accounts = job.accounts or (SANDBOX_ACCOUNT,)
    with sandbox.serve_in_thread() as urls:
        store = MemoryTokenStore()
        for account in accounts:
            anyio.run(store.save, account, Token.from_response(sandbox.issue_token(account)))
        source = _Source(
            store=store,
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
            auth_method="client_secret_post",
            token_url=urls.token_url,
            api=ApiConfig(base_url=urls.api_base_url),
            # A new port each run: the portfolio is what stays the same.
            label=f"sandbox {sandbox.portfolio!r}",
            api_named=f"the sandbox at {urls.api_base_url}",
            token_named=f"the sandbox at {urls.token_url}",
        )
        outcome = anyio.run(_run, attrs.evolve(job, accounts=accounts), source)
    return outcome, source


def _source(settings: Settings) -> _Source:
    if not settings.client_id:
        settings.require_client()  # says what is missing
    store = open_token_store(settings)
    try:
        client_id, client_secret = settings.require_client()
    except CliError:
        anyio.run(store.aclose)
        raise
    return _Source(
        store=store,
        client_id=client_id,
        client_secret=client_secret,
        auth_method=settings.auth_method,
        token_url=settings.token_url,
        api=settings.api,
        label=None,
        api_named=f"--base-url {settings.base_url}",
        token_named=f"--token-url {settings.token_url}",
    )


async def _run(job: CrawlJob, source: _Source) -> CrawlOutcome:
    store = source.store
    settings = job.settings
    try:
        accounts = list(job.accounts) or await store.keys()
        if not accounts:
            raise CliError("no account given (-a ACCOUNT) and none in the store")
        transport = http_transport(settings)
        async with crawling_client(
            store=store,
            client_id=source.client_id,
            client_secret=source.client_secret,
            token_url=source.token_url,
            auth_method=source.auth_method,
            api=source.api,
            account=accounts[0],
            concurrency=settings.concurrency,
            rate=settings.rate,
            transport=transport,
        ) as client:
            with CrawlProgress() as progress:
                if job.jsonl:
                    crawled = await crawl_to_jsonl(
                        client,
                        job.output,
                        resume=job.resume,
                        accounts=accounts,
                        devices_by=settings.devices_by,
                        page_size=settings.page_size,
                        timeout=job.timeout,
                        on_progress=progress.update,
                        source=source.label,
                        validate=settings.validate,
                    )
                    return CrawlOutcome.of_jsonl(crawled, len(accounts))
                result = await crawl_to_json(
                    client,
                    job.output,
                    accounts=accounts,
                    devices_by=settings.devices_by,
                    page_size=settings.page_size,
                    timeout=job.timeout,
                    on_progress=progress.update,
                )
                return CrawlOutcome.of_json(job.output, result, len(accounts))
    finally:
        await store.aclose()


def print_summary(outcome: CrawlOutcome, source: _Source) -> int:
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
    if outcome.complete:
        click.echo("Complete: nothing is missing.")
        return 0
    print_failures(outcome.failures)
    if not outcome.finished:
        if outcome.jsonl:
            click.echo("Unfinished: run the same command with --resume to read what is left.")
        else:
            click.echo(
                "Unfinished: JSON output cannot be resumed; run the same command again "
                "to read what is missing (or use .jsonl, which resumes)."
            )
        for account in sorted({f.account for f in outcome.failures if f.kind == "authorization"}):
            click.echo(
                f"Account {account!r} needs authorization first: wiser-async login -a {account}"
            )
    elif outcome.jsonl:
        click.echo(
            "Finished with parts missing (the API's answer for them): --resume has nothing "
            "left to read; crawl again without --resume to ask for them again."
        )
    else:
        click.echo("Finished with parts missing (the API's answer for them).")
    return 1


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _warn_unreachable(failures: Sequence[Failure], source: _Source) -> None:
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
