"""``wiser-async crawl``: portfolios to JSONL (resumable) or JSON, and a truthful summary.

The summary and the exit code speak of the whole output, every run that
wrote it included, never only of the last run: 0 when nothing is missing, 1
when parts are missing or the output is unfinished, 2 for a usage,
configuration or output error, 130 when interrupted. What is left unread is
said with its cause; ``--resume`` is suggested only where running the same
command again can read it. An unfinished JSONL output is never started
again by mistake: without ``--resume`` (or ``--restart``) the crawl is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

import anyio
import attrs
import click

from token_stores import MemoryTokenStore, Token

from .. import ApiConfig
from .._snapshot import checkpoint_path, write_json, write_jsonl
from ._clients import crawling_client, http_transport
from ._errors import CliError, on_interrupt, reported
from ._outcome import CrawlOutcome, CrawlSource, print_summary
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

__all__ = ["CrawlOutcome", "crawl"]

SANDBOX_ACCOUNT: Final = "demo-customer"
JSONL_INTERRUPTED: Final = (
    "Interrupted. The output keeps every part finished so far: "
    "run the same command with --resume to read what is left."
)
JSON_INTERRUPTED: Final = (
    "Interrupted. JSON output cannot be resumed; run again (or use .jsonl, which resumes)."
)
# The end of a checkpoint read to tell a finished output from an unfinished one.
_CHECKPOINT_TAIL = 4096


@attrs.frozen(kw_only=True)
class CrawlJob:
    """What to crawl, where to write it, and how."""

    output: Path
    jsonl: bool
    resume: bool
    accounts: tuple[str, ...]
    timeout: float | None
    settings: Settings


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
    "--restart",
    is_flag=True,
    envvar="WISER_RESTART",
    show_envvar=True,
    help="Start an unfinished JSONL output again from scratch (what it holds is dropped).",
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
    restart: bool,
    accounts: tuple[str, ...],
    timeout: float | None,
    use_sandbox: bool,
    portfolio: PortfolioOptions,
) -> None:
    """Crawl portfolios (location -> site -> room -> device) to a file.

    JSONL is written a site at a time with a checkpoint beside it
    (OUTPUT.checkpoint): after Ctrl-C or a crash, run the same command with
    --resume (or --restart to start again: an unfinished output is not
    overwritten without one of them). On a terminal, stderr shows what the
    whole output holds, and a bar with an ETA once the total can be
    estimated. The summary speaks of the whole output, earlier runs
    included, and lists every part missing. Exit code 0 when complete, 1
    when parts are missing or the output is unfinished, 2 on a usage or
    output error, 130 when interrupted.
    """
    chosen = output_format or ("json" if output.suffix.lower() == ".json" else "jsonl")
    if resume and chosen == "json":
        raise CliError("--resume: JSON output cannot be resumed (crawl to .jsonl to resume)")
    if resume and restart:
        raise CliError("--resume continues the output, --restart starts it again: give one")
    if chosen == "jsonl" and not resume and not restart and _unfinished(output):
        raise CliError(
            f"{output} holds an unfinished crawl ({checkpoint_path(output).name} says so): "
            "add --resume to read what is left, or --restart to start it again from scratch"
        )
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
    with reported(store=settings.store, restart="--restart"):
        if use_sandbox:
            outcome, source = _crawl_sandbox(job, portfolio)
        else:
            source = _source(settings)
            outcome = anyio.run(_run, job, source)
    sys.exit(print_summary(outcome, source))


def _crawl_sandbox(job: CrawlJob, portfolio: PortfolioOptions) -> tuple[CrawlOutcome, CrawlSource]:
    sandbox = make_sandbox(portfolio)
    accounts = job.accounts or (SANDBOX_ACCOUNT,)
    with sandbox.serve_in_thread() as urls:
        store = MemoryTokenStore()
        for account in accounts:
            anyio.run(store.save, account, Token.from_response(sandbox.issue_token(account)))
        source = CrawlSource(
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
            client_named="the sandbox's client",
        )
        outcome = anyio.run(_run, attrs.evolve(job, accounts=accounts), source)
    return outcome, source


def _source(settings: Settings) -> CrawlSource:
    if not settings.client_id:
        settings.require_client()  # says what is missing
    store = open_token_store(settings)
    try:
        client_id, client_secret = settings.require_client()
    except CliError:
        anyio.run(store.aclose)
        raise
    return CrawlSource(
        store=store,
        client_id=client_id,
        client_secret=client_secret,
        auth_method=settings.auth_method,
        token_url=settings.token_url,
        api=settings.api,
        label=None,
        api_named=f"--base-url {settings.base_url}",
        token_named=f"--token-url {settings.token_url}",
        client_named=settings.client_named(),
    )


def _unfinished(output: Path) -> bool:
    """A JSONL output a crawl started and did not finish (its checkpoint has no end mark)."""
    try:
        with checkpoint_path(output).open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - _CHECKPOINT_TAIL))
            tail = file.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CliError(f"{checkpoint_path(output)}: {exc.strerror or exc}") from None
    last = tail.rsplit(b"\n", 2)[-2] if tail.endswith(b"\n") and tail.count(b"\n") else b""
    try:
        record = json.loads(last)
    except (ValueError, RecursionError):
        return True  # torn or damaged: not the mark of a finished crawl
    # The mark a finished crawl writes last (see crawl_to_jsonl): nothing left to read.
    return not (isinstance(record, dict) and record.get("complete") is True)


async def _run(job: CrawlJob, source: CrawlSource) -> CrawlOutcome:
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
                    crawled = await write_jsonl(
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
                result = await write_json(
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
