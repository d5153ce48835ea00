"""The ``wiser-async`` command line (needs the ``cli`` extra).

::

    wiser-async demo                 the sandbox, the OAuth flow, a crawl and a summary
    wiser-async crawl -o OUT.jsonl   crawl portfolios to JSONL (resumable) or JSON
    wiser-async diff OLD NEW         devices added, removed and changed between two crawls
    wiser-async login -a ACCOUNT     authorize a customer in a browser, store the token
    wiser-async tokens list|show|delete --store SPEC
    wiser-async sandbox              serve the emulator on a loopback port
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs
import click
import httpx2

from token_stores import (
    Encryption,
    FileTokenStore,
    MemoryTokenStore,
    RedisTokenStore,
    Token,
    TokenStore,
    TokenStoreError,
)

from . import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    ApiConfig,
    AsyncWiserClient,
    CrawlStats,
    Failure,
    WiserOAuth,
    crawl_to_json,
    crawl_to_jsonl,
    diff_snapshots,
)
from .errors import WiserError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

DEMO_ACCOUNT = "demo-customer"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's published test secret


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
    if verbose < 2:
        # stamina logs every retry at warning level: in a crawl that is noise
        # unless asked for.
        logging.getLogger("stamina").setLevel(logging.ERROR)


# -- shared options -------------------------------------------------------------------


def portfolio_options(function: F) -> F:
    """Options shaping a sandbox portfolio."""
    options = [
        click.option("--locations", default=3, show_default=True, help="Sandbox: locations."),
        click.option("--sites-per-location", default=4, show_default=True),
        click.option("--rooms-per-site", default=3, show_default=True),
        click.option("--devices-per-site", default=12, show_default=True),
        click.option("--seed", default=0, show_default=True, help="Sandbox: portfolio seed."),
        click.option(
            "--latency", default=0.0, show_default=True, help="Sandbox: seconds per request."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _sandbox(options: dict[str, Any], **settings: Any) -> Any:
    from .sandbox import Faults, PortfolioSpec, Sandbox

    return Sandbox(
        PortfolioSpec(
            seed=options["seed"],
            locations=options["locations"],
            sites_per_location=options["sites_per_location"],
            rooms_per_site=options["rooms_per_site"],
            devices_per_site=options["devices_per_site"],
        ),
        faults=Faults(latency=options["latency"]),
        **settings,
    )


# Secrets never come from the command line, where `ps` and shell history see
# them: from the environment, or from a file named on the command line.


def _encryption_keys(
    ctx: click.Context, param: click.Parameter, path: Path | None
) -> tuple[str, ...]:
    text = path.read_text() if path is not None else os.environ.get("WISER_TOKEN_KEYS", "")
    return tuple(text.split())


def _client_secret(ctx: click.Context, param: click.Parameter, path: Path | None) -> str | None:
    if path is not None:
        return path.read_text().strip() or None
    return os.environ.get("WISER_CLIENT_SECRET") or None


client_secret_option = click.option(
    "--client-secret-file",
    "client_secret",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_client_secret,
    help="File holding the OAuth client secret (default: the WISER_CLIENT_SECRET variable).",
)


def store_options(function: F) -> F:
    """Options choosing a token store."""
    function = click.option(
        "--encryption-keys-file",
        "encryption_keys",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=_encryption_keys,
        help="File of the store's Fernet keys, newest first, one per line "
        "(default: the WISER_TOKEN_KEYS variable, space-separated).",
    )(function)
    return click.option(
        "--store",
        "store_spec",
        default="memory",
        show_default=True,
        envvar="WISER_TOKEN_STORE",
        help="memory, file:DIRECTORY or redis://HOST:PORT/DB[?prefix=NAME].",
    )(function)


def open_store(spec: str, encryption_keys: Sequence[str] = ()) -> TokenStore:
    """A token store from its command-line spelling.

    ``memory``, ``file:DIRECTORY``, or a ``redis://`` / ``rediss://`` URL
    (``?prefix=NAME`` picks the key prefix).
    """
    encryption = Encryption(list(encryption_keys)) if encryption_keys else None
    if spec == "memory":
        return MemoryTokenStore()
    if spec.startswith("file:"):
        return FileTokenStore(Path(spec.removeprefix("file:")).expanduser(), encryption=encryption)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        url = httpx2.URL(spec)
        prefix = url.params.get("prefix", "wiser-tokens")
        url = url.copy_remove_param("prefix")
        return RedisTokenStore(str(url), prefix=prefix, encryption=encryption)
    raise click.BadParameter(
        "expected memory, file:DIRECTORY or a redis:// URL", param_hint="--store"
    )


async def close_store(store: TokenStore) -> None:
    await store.aclose()


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except (WiserError, TokenStoreError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


# -- demo -------------------------------------------------------------------------------


@main.command()
@portfolio_options
def demo(**options: Any) -> None:
    """Run the whole flow against a local sandbox and print a summary.

    Starts the sandbox on a loopback port, authorizes a customer with the
    authorization-code flow (PKCE; the sandbox consents at once, so no
    browser is needed), crawls the portfolio and summarizes it.
    """
    sandbox = _sandbox(options)
    with sandbox.serve_in_thread() as urls:
        click.echo(f"Sandbox listening at {urls.origin}")
        result, client_stats = anyio.run(_demo, urls)
        sandbox_stats = sandbox.stats
    _print_demo(result, client_stats, sandbox_stats)


async def _demo(urls: Any) -> tuple[Any, Any]:
    async with WiserOAuth(
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        redirect_uri=DEMO_REDIRECT_URI,
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
        click.echo(f"2. Consent given; redirected to {DEMO_REDIRECT_URI}?code=...&state=...")
        token = await oauth.complete_authorization(DEMO_ACCOUNT, callback_url, request)
        lifetime = f"{token.lifetime:.0f} s" if token.lifetime is not None else "unknown"
        click.echo(f"3. State checked, code exchanged, token stored (lifetime {lifetime})")
        async with AsyncWiserClient(
            oauth, DEMO_ACCOUNT, config=ApiConfig(base_url=urls.api_base_url)
        ) as client:
            result = await client.crawl()
            click.echo("4. Portfolio crawled")
            return result, client.stats


def _print_demo(result: Any, client_stats: Any, sandbox_stats: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    stats: CrawlStats = result.stats
    counts = Table(title="Portfolio")
    counts.add_column("level")
    counts.add_column("count", justify="right")
    for level in ("locations", "sites", "rooms", "devices"):
        counts.add_row(level, str(getattr(stats, level)))
    console.print(counts)

    sample = Table(title="A few devices")
    for column in ("device", "room", "category", "reference", "status"):
        sample.add_column(column, no_wrap=True)
    site_tree = result.locations[0].sites[0]
    rows = [(device, "(no room)") for device in site_tree.devices]
    rows += [
        (device, room.room.name or room.room.id)
        for room in site_tree.rooms
        for device in room.devices
    ]
    for device, room in rows[:6]:
        sample.add_row(
            device.name or device.id,
            room,
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
    del client_stats


# -- crawl ------------------------------------------------------------------------------


@main.command()
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write: .jsonl (streamed, resumable) or .json (one document).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "json"]),
    help="Output format (default: from the file name; JSONL unless it ends in .json).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted JSONL crawl.")
@click.option(
    "-a",
    "--account",
    "accounts",
    multiple=True,
    help="Account key to crawl (repeat for several; default: every key in the store).",
)
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight at most.")
@click.option("--rate", type=float, help="Requests per second at most (default: no limit).")
@click.option(
    "--devices-by", type=click.Choice(["site", "room"]), default="site", show_default=True
)
@click.option("--page-size", type=int, help="Items per page (default: the API's maximum, 500).")
@click.option("--deadline", type=float, help="Seconds; what is not read by then is reported.")
@store_options
@click.option("--client-id", envvar="WISER_CLIENT_ID", help="OAuth client id.")
@client_secret_option
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True)
@click.option("--token-url", default=DEFAULT_TOKEN_URL, show_default=True)
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Crawl a local sandbox; tokens are minted for the accounts (the store is not used).",
)
@portfolio_options
def crawl(
    output: Path,
    output_format: str | None,
    resume: bool,
    accounts: tuple[str, ...],
    concurrency: int,
    rate: float | None,
    devices_by: str,
    page_size: int | None,
    deadline: float | None,
    store_spec: str,
    encryption_keys: tuple[str, ...],
    client_id: str | None,
    client_secret: str | None,
    base_url: str,
    token_url: str,
    use_sandbox: bool,
    **portfolio: Any,
) -> None:
    """Crawl portfolios (location -> site -> room -> device) to a file.

    JSONL is written a site at a time with a checkpoint beside it
    (OUTPUT.checkpoint): after Ctrl-C or a crash, run the same command with
    --resume. A progress line shows on a terminal; the summary lists every
    part that could not be read. Exit code 0 when complete, 1 when parts
    failed, 130 when interrupted.
    """
    output_format = output_format or ("json" if output.suffix == ".json" else "jsonl")
    if resume and output_format != "jsonl":
        raise click.BadParameter("only JSONL output can be resumed", param_hint="--resume")
    settings = {
        "output": output,
        "output_format": output_format,
        "resume": resume,
        "concurrency": concurrency,
        "rate": rate,
        "devices_by": devices_by,
        "page_size": page_size,
        "deadline": deadline,
    }
    with reported_errors():
        if use_sandbox:
            sandbox = _sandbox(portfolio)
            chosen = list(accounts) or [DEMO_ACCOUNT]
            with sandbox.serve_in_thread() as urls:
                store: TokenStore = MemoryTokenStore()
                for account in chosen:
                    token = Token.from_response(sandbox.issue_token(account))
                    anyio.run(store.save, account, token)
                source = _Source(
                    store,
                    chosen,
                    SANDBOX_CLIENT_ID,
                    SANDBOX_CLIENT_SECRET,
                    urls.api_base_url,
                    urls.token_url,
                    # A new port each run: the portfolio is what stays the same.
                    label=f"sandbox {sandbox.portfolio!r}",
                )
                code = _run_crawl_sync(source, settings)
        else:
            if not client_id:
                raise click.UsageError("--client-id (or WISER_CLIENT_ID) is required")
            store = open_store(store_spec, encryption_keys)
            source = _Source(store, list(accounts), client_id, client_secret, base_url, token_url)
            code = _run_crawl_sync(source, settings)
    raise SystemExit(code)


@attrs.frozen
class _Source:
    """Where a crawl reads from: the tokens, the accounts, the application, the API."""

    store: TokenStore
    accounts: list[str]
    client_id: str
    client_secret: str | None = attrs.field(repr=False)
    base_url: str
    token_url: str
    # What a checkpoint records the crawl read from: the base URL unless named.
    label: str | None = None


def _run_crawl_sync(source: _Source, settings: dict[str, Any]) -> int:
    try:
        return anyio.run(_run_crawl, source, settings)
    except KeyboardInterrupt:
        click.echo(
            "\nInterrupted. What was written is complete up to the last checkpoint; "
            "run the same command with --resume to go on.",
            err=True,
        )
        return 130


async def _run_crawl(source: _Source, settings: dict[str, Any]) -> int:
    store, accounts = source.store, source.accounts
    try:
        if not accounts:
            accounts = await store.keys()
            if not accounts:
                raise click.UsageError("no account given and none in the store")
        async with (
            WiserOAuth(
                client_id=source.client_id,
                client_secret=source.client_secret,
                store=store,
                token_url=source.token_url,
            ) as oauth,
            AsyncWiserClient(
                oauth,
                accounts[0],
                config=ApiConfig(base_url=source.base_url),
                max_in_flight=settings["concurrency"],
                rate_limit=settings["rate"],
            ) as client,
        ):
            with _Progress(client) as progress:
                options = {
                    "accounts": accounts,
                    "devices_by": settings["devices_by"],
                    "page_size": settings["page_size"],
                    "deadline": settings["deadline"],
                }
                if settings["output_format"] == "json":
                    result = await crawl_to_json(client, settings["output"], **options)
                    failures, stats = result.failures, result.stats
                else:
                    crawled = await crawl_to_jsonl(
                        client,
                        settings["output"],
                        resume=settings["resume"],
                        on_progress=progress.update,
                        source=source.label,
                        **options,
                    )
                    failures, stats = crawled.failures, crawled.run
    finally:
        await close_store(store)
    _print_crawl_summary(settings["output"], accounts, failures, stats)
    return 0 if not failures else 1


class _Progress:
    """A live status line on a terminal's stderr; nothing when stderr is not a terminal."""

    def __init__(self, client: AsyncWiserClient) -> None:
        self._client = client
        self._live: Any = None
        self._walk: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._render(), console=Console(stderr=True), refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, walk: Any) -> None:
        self._walk = walk
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> str:
        requests = self._client.stats.requests
        if self._walk is None:
            return f"crawling... {requests} requests"
        stats = self._walk.stats
        return (
            f"crawling: {stats.locations} locations, {stats.sites} sites, {stats.rooms} rooms, "
            f"{stats.devices} devices; {requests} requests, {stats.retries} retries, "
            f"{len(self._walk.failures)} failures, {stats.duration:.0f} s"
        )


def _print_crawl_summary(
    output: Path, accounts: Sequence[str], failures: list[Failure], stats: CrawlStats
) -> None:
    click.echo(
        f"Crawled {len(accounts)} account(s) into {output}: {stats.locations} locations, "
        f"{stats.sites} sites, {stats.rooms} rooms, {stats.devices} devices "
        f"(this run; a resumed crawl skips what was written before)"
    )
    click.echo(
        f"{stats.requests} requests, {stats.retries} retries, {stats.throttled} answered 429, "
        f"{stats.duration:.1f} s"
    )
    if not failures:
        click.echo("Complete: nothing is missing.")
        return
    kinds = Counter(failure.kind for failure in failures)
    click.echo(
        f"{len(failures)} part(s) could not be read ("
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        + "):"
    )
    for failure in failures:
        status = f" {failure.status}" if failure.status else ""
        click.echo(
            f"  {failure.account} {failure.resource}: {failure.kind}{status}: {failure.message}"
        )


# -- diff -------------------------------------------------------------------------------


@main.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ignore", multiple=True, help="Device field left out of the comparison (e.g. lastSeenAt)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff(old: Path, new: Path, ignore: tuple[str, ...], as_json: bool) -> None:
    """Devices added, removed and changed between two crawls (JSONL or JSON).

    Exit code 0 when the snapshots hold the same devices, 1 when they differ.
    """
    with reported_errors():
        result = diff_snapshots(old, new, ignore=ignore)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "added": result.added,
                    "removed": result.removed,
                    "changed": [
                        {
                            "account": change.account,
                            "id": change.id,
                            "fields": {
                                name: {"old": before, "new": after}
                                for name, (before, after) in change.fields.items()
                            },
                        }
                        for change in result.changed
                    ],
                },
                indent=1,
            )
        )
    else:
        click.echo(
            f"{len(result.added)} added, {len(result.removed)} removed, "
            f"{len(result.changed)} changed"
        )
        for sign, records in (("+", result.added), ("-", result.removed)):
            for record in records:
                where = f"site {record.get('siteId') or record['data'].get('siteId')}"
                room = record.get("roomId", record["data"].get("roomId"))
                where += f", room {room}" if room else ", no room"
                click.echo(f"{sign} {record.get('account', '')}/{record['data']['id']} ({where})")
        for change in result.changed:
            fields = "; ".join(
                f"{name}: {before!r} -> {after!r}"
                for name, (before, after) in change.fields.items()
            )
            click.echo(f"~ {change.account}/{change.id}: {fields}")
    raise SystemExit(0 if result.empty else 1)


# -- login ------------------------------------------------------------------------------

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CALLBACK_PAGE = (
    b"<!doctype html><title>wiser-async</title>"
    b"<p>Authorization received. You can close this window.</p>"
)


@main.command()
@click.option("-a", "--account", required=True, help="Account key to store the token under.")
@store_options
@click.option("--client-id", envvar="WISER_CLIENT_ID", required=True, help="OAuth client id.")
@client_secret_option
@click.option(
    "--redirect-uri",
    default="http://127.0.0.1:8765/callback",
    show_default=True,
    help="The registered callback: a loopback http:// URL this command listens on.",
)
@click.option("--authorize-url", default=DEFAULT_AUTHORIZE_URL, show_default=True)
@click.option("--token-url", default=DEFAULT_TOKEN_URL, show_default=True)
@click.option("--scope", "scopes", multiple=True, help="Scope to request (repeat).")
@click.option("--login-hint", help="Passed to the authorization server.")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for consent.")
def login(
    account: str,
    store_spec: str,
    encryption_keys: tuple[str, ...],
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    authorize_url: str,
    token_url: str,
    scopes: tuple[str, ...],
    login_hint: str | None,
    no_browser: bool,
    timeout: float,
) -> None:
    """Authorize a customer in a browser and store the token.

    Listens on the redirect URI (a loopback address), opens the authorization
    URL (state and PKCE S256), waits for the redirect back, checks it,
    exchanges the code and stores the token under the account key.
    """
    callback = httpx2.URL(redirect_uri)
    port = callback.port
    if callback.scheme != "http" or callback.host not in _LOOPBACK or port is None:
        raise click.BadParameter(
            "login listens on the redirect URI: give http://127.0.0.1:PORT/PATH",
            param_hint="--redirect-uri",
        )

    async def run(store: TokenStore) -> Token:
        async with WiserOAuth(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            store=store,
            scopes=scopes,
            authorize_url=authorize_url,
            token_url=token_url,
        ) as oauth:
            request = oauth.authorization_request(login_hint=login_hint)
            listener = await anyio.create_tcp_listener(local_host=callback.host, local_port=port)
            async with listener:
                click.echo(f"Open this URL to authorize {account!r}:\n{request.url}", err=False)
                if not no_browser:
                    import webbrowser

                    webbrowser.open(request.url)
                with anyio.fail_after(timeout):
                    # One address, so one listener.
                    callback_url = await _receive_callback(listener.listeners[0], callback)
            return await oauth.complete_authorization(account, callback_url, request)

    try:
        token = _with_store(store_spec, encryption_keys, run)
    except TimeoutError:
        click.echo(f"error: no authorization arrived within {timeout:g} s", err=True)
        raise SystemExit(2) from None
    click.echo(f"Token stored for {account!r}; it {_expiry(token)}.")


async def _receive_callback(listener: Any, callback: httpx2.URL) -> str:
    """Serve the loopback listener until the redirect to `callback`'s path arrives."""
    while True:
        async with await listener.accept() as stream:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                try:
                    head += await stream.receive()
                except anyio.EndOfStream:
                    break
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request_line.partition(" ")
            target = rest.rpartition(" ")[0]
            if method == "GET" and target.split("?", 1)[0] == callback.path:
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (len(_CALLBACK_PAGE), _CALLBACK_PAGE)
                )
                return str(callback.copy_with(raw_path=target.encode("latin-1")))
            # A browser also asks for /favicon.ico and the like.
            await stream.send(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")


# -- tokens -----------------------------------------------------------------------------


@main.group()
def tokens() -> None:
    """Inspect and delete stored tokens (values are never shown)."""


@tokens.command("list")
@store_options
def tokens_list(store_spec: str, encryption_keys: tuple[str, ...]) -> None:
    """List the account keys with a stored token, and when each expires."""

    async def list_tokens(store: TokenStore) -> list[tuple[str, Token | None]]:
        return [(key, await store.load(key)) for key in await store.keys()]

    found = _with_store(store_spec, encryption_keys, list_tokens)
    if not found:
        click.echo("No tokens stored.")
    for key, token in found:
        click.echo(f"{key}\t{_expiry(token) if token else 'gone'}")


@tokens.command("show")
@click.argument("account")
@store_options
def tokens_show(account: str, store_spec: str, encryption_keys: tuple[str, ...]) -> None:
    """Show an account's token, redacted."""
    token = _with_store(store_spec, encryption_keys, lambda store: store.load(account))
    if token is None:
        click.echo(f"No token stored for {account!r}.", err=True)
        raise SystemExit(1)
    click.echo(f"account        {account}")
    click.echo(f"access_token   {_redact(token.access_token)}")
    click.echo(f"refresh_token  {_redact(token.refresh_token)}")
    click.echo(f"token_type     {token.token_type}")
    click.echo(f"expires        {_expiry(token)}")
    click.echo(f"issued_at      {_timestamp(token.issued_at)}")
    click.echo(f"scope          {token.scope or '-'}")
    click.echo(f"fingerprint    {token.fingerprint[:12]}")
    click.echo(f"other fields   {', '.join(sorted(token.extra)) or '-'} (values not shown)")


@tokens.command("delete")
@click.argument("account")
@store_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def tokens_delete(
    account: str, store_spec: str, encryption_keys: tuple[str, ...], yes: bool
) -> None:
    """Delete an account's token (the customer must authorize again)."""
    if not yes:
        click.confirm(f"Delete the token of {account!r}?", abort=True)

    deleted = _with_store(store_spec, encryption_keys, lambda store: store.delete(account))
    click.echo(f"Deleted the token of {account!r}." if deleted else f"No token for {account!r}.")
    raise SystemExit(0 if deleted else 1)


def _with_store(
    spec: str, encryption_keys: Sequence[str], action: Callable[[TokenStore], Awaitable[T]]
) -> T:
    """Run `action` on the store `spec` names, closing it after; store errors in one line."""

    async def run() -> T:
        store = open_store(spec, encryption_keys)
        try:
            return await action(store)
        finally:
            await close_store(store)

    with reported_errors():
        return anyio.run(run)


def _redact(secret: str | None) -> str:
    return "-" if secret is None else f"*** ({len(secret)} characters)"


def _timestamp(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def _expiry(token: Token) -> str:
    if token.expires_at is None:
        return "expiry unknown"
    left = token.expires_at - time.time()
    state = f"in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
    return f"{_timestamp(token.expires_at)} ({state})"


# -- sandbox ----------------------------------------------------------------------------


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--token-lifetime", default=3600.0, show_default=True, help="Seconds.")
@portfolio_options
def sandbox_command(host: str, port: int, token_lifetime: float, **options: Any) -> None:
    """Serve the API emulator and its OAuth server until interrupted."""
    from .sandbox import serve

    sandbox = _sandbox(options, access_token_lifetime=token_lifetime)

    def ready(urls: Any) -> None:
        click.echo(f"API:       {urls.api_base_url}")
        click.echo(f"Authorize: {urls.authorize_url}")
        click.echo(f"Token:     {urls.token_url}")
        click.echo(f"Client id {SANDBOX_CLIENT_ID}, secret {SANDBOX_CLIENT_SECRET}. Ctrl-C stops.")

    serve(sandbox, host, port, ready)
