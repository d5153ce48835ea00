"""``wiser-async queue enqueue|worker|merge``: one crawl shared by many workers on Redis Streams.

``enqueue`` adds accounts to a queue (once each), ``worker`` crawls accounts
off it until every one is done (start as many as you like, on any machine;
a killed worker's account is taken over after ``--claim-idle`` seconds) and
``merge`` joins the workers' files into one JSONL with its honest summary.

A worker waits out a Redis restart for up to ``--redis-patience`` seconds
(the crawls go on meanwhile); a Redis that does not answer the first time,
or not within that patience, is one line naming its cause ("connection
refused", "timed out after 5 s", "the host name does not resolve").

Exit codes: ``merge`` as ``crawl``: 0 complete, 1 parts missing or
unfinished; ``enqueue`` and ``worker`` 0 when done; every command 2 for a
usage, configuration, Redis or output error, 130 when interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import click

from token_stores import redact_store_spec

from .. import JsonlCrawl, RedisRateLimiter
from .._crawl import RETRY_LATER_KINDS
from .._distributed import (
    MergedCrawl,
    QueueKeys,
    WorkerRun,
    enqueue,
    merge,
    queue_status,
    run_worker,
)
from ._clients import crawling_client, http_transport
from ._errors import CliError, on_interrupt, reported, warn
from ._settings import CRAWL_SETTINGS, Settings, with_settings
from ._stores import open_token_store
from ._summary import (
    accounts_refused_client,
    accounts_to_log_in,
    print_failures,
    print_holdings,
    refused_client_line,
)

__all__ = ["queue"]

T = TypeVar("T")
# Failures that leave a part for a later crawl to read (the rest are the API's answer).
_LEFT_FOR_LATER: Final = RETRY_LATER_KINDS | {"authorization", "client"}
WORKER_INTERRUPTED: Final = (
    "Interrupted. This worker's finished accounts are recorded; the one it was crawling is "
    "taken over by another worker after --claim-idle seconds (or resumed by this one if "
    "started again with the same --worker name)."
)
# Seconds to connect to the queue's Redis, and for any one answer: a Redis that
# is not there is said within this, with its cause.
REDIS_TIMEOUT: Final = 5.0

_redis_option = click.option(
    "--redis",
    "redis_url",
    required=True,
    envvar="WISER_QUEUE_REDIS",
    show_envvar=True,
    help="The Redis holding the queue: redis://HOST[:PORT][/DB] (or rediss://).",
)
_queue_option = click.option(
    "--queue",
    "queue_name",
    required=True,
    envvar="WISER_QUEUE",
    show_envvar=True,
    help="The queue's name: one crawl of a set of accounts (a new name for a new crawl).",
)


@click.group()
def queue() -> None:
    """Crawl one set of accounts with many workers (Redis Streams; asyncio only)."""


def _keys(queue_name: str) -> QueueKeys:
    try:
        return QueueKeys(queue_name)
    except ValueError as exc:
        raise CliError(f"--queue: {exc}") from None


def _run(redis_url: str, body: Callable[[Any], Awaitable[T]], *, store: str | None = None) -> T:
    """Run `body` with a Redis client (asyncio: redis-py's), its errors as one-line `CliError`s.

    The client gives up on a connection or an answer after `REDIS_TIMEOUT`
    and never tries again by itself: a worker's patience decides that.
    """
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise CliError("the queue commands need redis: pip install 'wiser-async[redis]'") from None
    try:
        redis = Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise CliError(f"--redis {redact_store_spec(redis_url)}: {exc}") from None

    async def main() -> T:
        async with redis:
            return await body(redis)

    with reported(store=store, redis=redis_url, redis_timeout=REDIS_TIMEOUT):
        return anyio.run(main, backend="asyncio")


@queue.command("enqueue")
@_redis_option
@_queue_option
@click.option(
    "-a",
    "--account",
    "accounts",
    multiple=True,
    envvar="WISER_ACCOUNT",
    show_envvar=True,
    help="Account key to crawl (repeat; default: every key in the store).",
)
@with_settings("store", "encryption_keys")
def queue_enqueue(
    settings: Settings, *, redis_url: str, queue_name: str, accounts: tuple[str, ...]
) -> None:
    """Add accounts to a queue; an account already in it is skipped."""
    _keys(queue_name)
    with reported(store=settings.store):
        chosen = list(dict.fromkeys(accounts)) or _store_keys(settings)
    if not chosen:
        raise CliError("no account given (-a ACCOUNT) and none in the store")

    async def body(redis: Any) -> tuple[int, int]:
        added = await enqueue(redis, queue=queue_name, accounts=chosen)
        return added, (await queue_status(redis, queue=queue_name)).enqueued

    added, total = _run(redis_url, body)
    skipped = len(chosen) - added
    click.echo(
        f"Queue {queue_name!r}: {added} account(s) added, {skipped} already there; {total} in all."
    )


def _store_keys(settings: Settings) -> list[str]:
    if settings.store is None:
        return []
    store = open_token_store(settings, memory_refused="a memory store holds no account")

    async def keys() -> list[str]:
        try:
            return await store.keys()
        finally:
            await store.aclose()

    return anyio.run(keys)


@queue.command("worker")
@_redis_option
@_queue_option
@click.option(
    "-d",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WISER_OUTPUT_DIR",
    show_envvar=True,
    help="Where this worker writes DIR/WORKER/ACCOUNT.jsonl (a fresh one per queue).",
)
@click.option(
    "--worker",
    "worker_name",
    envvar="WISER_WORKER",
    show_envvar=True,
    help="This worker's name, unique among live workers (default: HOST-PID).",
)
@click.option(
    "--claim-idle",
    type=float,
    default=30.0,
    show_default=True,
    envvar="WISER_CLAIM_IDLE",
    show_envvar=True,
    help="Seconds without a sign of life before another worker's account is taken over.",
)
@click.option(
    "--parallel",
    type=int,
    default=8,
    show_default=True,
    envvar="WISER_PARALLEL",
    show_envvar=True,
    help="Accounts this worker crawls at once (within its --concurrency).",
)
@click.option(
    "--shared-rate",
    type=float,
    envvar="WISER_SHARED_RATE",
    show_envvar=True,
    help="Requests per second for all workers of the queue together (kept in --redis).",
)
@click.option(
    "--shared-burst",
    type=int,
    envvar="WISER_SHARED_BURST",
    show_envvar=True,
    help="Requests all workers together may send at once after a quiet spell, within"
    " --shared-rate (the server's own burst; default 1: evenly spaced).",
)
@click.option(
    "--timeout",
    type=float,
    envvar="WISER_TIMEOUT",
    show_envvar=True,
    help="Seconds per account; what is not read by then is reported as missing.",
)
@with_settings(*CRAWL_SETTINGS, "redis_patience")
def queue_worker(
    settings: Settings,
    *,
    redis_url: str,
    queue_name: str,
    output_dir: Path,
    worker_name: str | None,
    claim_idle: float,
    parallel: int,
    shared_rate: float | None,
    shared_burst: int | None,
    timeout: float | None,
) -> None:
    """Crawl accounts off a queue until every enqueued account is done.

    Start one per machine or core; they share the work, and one that dies
    has its account taken over by the others. A Redis restart shorter than
    --redis-patience is waited out. Exit code 0 when the queue is done
    (merge tells whether anything is missing).
    """
    keys = _keys(queue_name)
    if not claim_idle > 0:
        raise CliError(f"--claim-idle must be positive (seconds), not {claim_idle:g}")
    if parallel < 1:
        raise CliError(f"--parallel must be at least 1, not {parallel}")
    if shared_rate is not None and not shared_rate > 0:
        raise CliError(f"--shared-rate must be positive (requests per second), not {shared_rate:g}")
    if shared_burst is not None and shared_rate is None:
        raise CliError("--shared-burst is a burst of --shared-rate: give both")
    if shared_burst is not None and shared_burst < 1:
        raise CliError(f"--shared-burst must be at least 1 (requests), not {shared_burst}")
    if shared_rate is not None and settings.rate is not None:
        raise CliError("--rate limits this worker alone, --shared-rate all workers: give one")
    if timeout is not None and not timeout > 0:
        raise CliError(f"--timeout must be positive (seconds), not {timeout:g}")
    if not settings.client_id:
        settings.require_client()  # says what is missing
    on_interrupt(WORKER_INTERRUPTED)
    report = _AccountReport(settings)
    with reported(store=settings.store):
        client_id, client_secret = settings.require_client()
        store = open_token_store(settings, memory_refused="a memory store holds no token")

        async def body(redis: Any) -> WorkerRun:
            try:
                status = await queue_status(redis, queue=queue_name)
                if not status.enqueued:
                    raise CliError(
                        f"queue {queue_name!r} has no accounts: add them first with "
                        "wiser-async queue enqueue"
                    )
                first = await redis.srandmember(keys.accounts)
                account = first.decode() if isinstance(first, bytes) else str(first)
                rate: float | RedisRateLimiter | None = settings.rate
                if shared_rate is not None:
                    # Waits out the same Redis outages as the worker does.
                    rate = RedisRateLimiter(
                        redis,
                        key=f"{queue_name}:rate",
                        rate=shared_rate,
                        burst=shared_burst,
                        patience=settings.redis_patience,
                    )
                async with crawling_client(
                    store=store,
                    client_id=client_id,
                    client_secret=client_secret,
                    token_url=settings.token_url,
                    auth_method=settings.auth_method,
                    api=settings.api,
                    account=account,
                    concurrency=settings.concurrency,
                    rate=rate,
                    transport=http_transport(settings),
                ) as client:
                    return await run_worker(
                        client,
                        redis,
                        queue=queue_name,
                        output_dir=output_dir,
                        worker=worker_name,
                        claim_idle=claim_idle,
                        parallel=parallel,
                        devices_by=settings.devices_by,
                        page_size=settings.page_size,
                        timeout=timeout,
                        validate=settings.validate,
                        on_account=report,
                        patience=settings.redis_patience,
                    )
            finally:
                await store.aclose()

        run = _run(redis_url, body, store=settings.store)
    redone = f" ({len(run.redone)} taken over from stopped workers)" if run.redone else ""
    click.echo(
        f"Worker {run.worker}: finished {len(run.finished)} account(s){redone}. "
        f"Queue {queue_name!r} is done: run wiser-async queue merge for the whole output."
    )


class _AccountReport:
    """One line per account a worker stops working on; a refused client said once, on stderr."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.refused = 0

    def __call__(self, account: str, crawled: JsonlCrawl | None) -> None:
        if crawled is None:
            click.echo(f"{account}: left to another worker")
            return
        items = sum(crawled.items.values())
        left = "" if crawled.finished else ", parts left unread"
        click.echo(f"{account}: {items} items, {len(crawled.failures)} failure(s){left}")
        if accounts_refused_client(crawled.failures):
            self.refused += 1
            if self.refused == 1:  # every account after it meets the same refusal
                settings = self.settings
                endpoint = f"the token endpoint (--token-url {settings.token_url})"
                warn(refused_client_line(endpoint, settings.client_named(), 1))


@queue.command("merge")
@_redis_option
@_queue_option
@click.option(
    "-d",
    "--output-dir",
    "output_dirs",
    required=True,
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A workers' output directory (repeat for each machine's, gathered).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The merged JSONL file.",
)
def queue_merge(
    *, redis_url: str, queue_name: str, output_dirs: tuple[Path, ...], output: Path
) -> None:
    """Join the workers' files into one JSONL: every item once, every failure listed.

    Exit code 0 when complete, 1 when parts are missing or an account is
    unfinished, 2 on a usage, Redis or output error.
    """
    _keys(queue_name)

    async def body(redis: Any) -> MergedCrawl:
        if not (await queue_status(redis, queue=queue_name)).enqueued:
            raise CliError(f"queue {queue_name!r} has no accounts: nothing to merge")
        return await merge(redis, queue=queue_name, output_dirs=output_dirs, out_path=output)

    merged = _run(redis_url, body)
    sys.exit(print_merge_summary(merged))


def print_merge_summary(merged: MergedCrawl) -> int:
    """As ``crawl``'s summary, for the whole merged output; the exit code."""
    print_holdings(merged.output, merged.accounts, merged.items)
    run = merged.run
    workers = len(set(merged.finishers.values()))
    click.echo(
        f"The workers: {workers} finished the accounts; {run.requests} requests, "
        f"{run.retries} retries, {run.throttled} answered 429, {run.duration:.1f} s of crawling."
    )
    if merged.complete:
        click.echo("Complete: nothing is missing.")
        return 0
    print_failures(merged.failures)
    if merged.unfinished:
        click.echo(
            f"Unfinished: {len(merged.unfinished)} account(s) no worker finished yet: start "
            "a worker on the queue (it takes over what a stopped one held), then merge again."
        )
    refused = accounts_refused_client(merged.failures)
    if refused:
        click.echo(
            f"The token endpoint refused the workers' client credentials (invalid_client) "
            f"for {len(refused)} account(s): check the workers' --client-id and client "
            "secret, then enqueue those accounts in a new queue (no login is needed)."
        )
    for account in accounts_to_log_in(merged.failures):
        click.echo(f"Account {account!r} needs authorization first: wiser-async login -a {account}")
    blocked = {*refused, *accounts_to_log_in(merged.failures)}
    if any(f.kind in _LEFT_FOR_LATER and f.account not in blocked for f in merged.failures):
        click.echo(
            "Unfinished: parts were left unread (an outage, a timeout): "
            "enqueue those accounts in a new queue to read them."
        )
    if merged.finished:
        click.echo(
            "Finished with parts missing (the API's answer for them): enqueue the accounts "
            "in a new queue to ask for them again."
        )
    return 1
