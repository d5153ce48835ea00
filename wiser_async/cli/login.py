"""``wiser-async login``: authorize a customer in a browser, store the token.

Before any browser opens, the command checks what would make the login fail
at its end: the store (opened, one read), the client credentials (one
harmless token request), and the callback port (bound). The loopback
listener is a small ASGI app served by uvicorn: connections are served
concurrently, each must send its request within a deadline (a browser's idle
preconnect neither blocks the redirect nor stays open), other paths get a
404, and a callback whose ``state`` is not this login's is ignored.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hmac
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import anyio
import attrs
import click
import httpx2

from token_stores import Token, TokenStore

from .. import AuthorizationRequest, WiserOAuth
from ._errors import CliError, reported, warn
from ._settings import Settings, with_settings
from ._stores import open_token_store
from .tokens import expires_phrase

__all__ = ["CallbackApp", "check_client", "login"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")
# Seconds a connection may take to send its request head (from its opening,
# or from the previous response): a browser's idle preconnect is closed then.
REQUEST_HEAD_TIMEOUT: Final = 10.0
_MAX_CONNECTIONS: Final = 64
_MAX_HEAD_BYTES: Final = 16 * 1024
_CHECK_TIMEOUT: Final = 10.0
MEMORY_REFUSED: Final = (
    "the token would be stored nowhere (memory lasts as long as this command); "
    "give file:DIRECTORY or a redis:// URL, or add --allow-memory to log in anyway"
)
_PAGES: Final = {
    200: "Authorization received. You can close this window; the terminal says what follows.",
    400: "This is not the callback of the pending login (its state differs). Nothing was done.",
    404: "Not found.",
    405: "Only GET is served here.",
}


@click.command()
@click.option(
    "-a",
    "--account",
    required=True,
    envvar="WISER_ACCOUNT",
    show_envvar=True,
    help="Account key to store the token under.",
)
@click.option(
    "--login-hint",
    envvar="WISER_LOGIN_HINT",
    show_envvar=True,
    help="Passed to the authorization server.",
)
@click.option(
    "--no-browser",
    is_flag=True,
    envvar="WISER_NO_BROWSER",
    show_envvar=True,
    help="Print the URL only; open it yourself.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=300.0,
    show_default=True,
    envvar="WISER_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for the redirect back.",
)
@click.option(
    "--allow-memory",
    is_flag=True,
    help="Accept --store memory (the token is lost when the command ends).",
)
@with_settings(
    "authorize_url",
    "token_url",
    "redirect_uri",
    "client_id",
    "client_secret",
    "auth_method",
    "scope",
    "store",
    "encryption_keys",
)
def login(
    settings: Settings,
    *,
    account: str,
    login_hint: str | None,
    no_browser: bool,
    timeout: float,
    allow_memory: bool,
) -> None:
    """Authorize a customer in a browser and store the token.

    Checks the store and the client credentials, listens on the redirect URI
    (a loopback address), prints and opens the authorization URL (state and
    PKCE S256), waits for the redirect back, exchanges the code and stores
    the token under the account key.
    """
    callback = _callback(settings)
    store = open_token_store(settings, memory_refused=None if allow_memory else MEMORY_REFUSED)
    try:
        settings.require_client()
    except CliError:
        anyio.run(store.aclose)
        raise
    plan = _Plan(
        settings=settings,
        store=store,
        account=account,
        login_hint=login_hint,
        no_browser=no_browser,
        timeout=timeout,
        callback=callback,
    )
    with reported(store=settings.store):
        token = anyio.run(_login, plan)
    click.echo(f"Token stored for {account!r}; it {expires_phrase(token)}.")


@attrs.frozen(kw_only=True)
class _Callback:
    """Where the redirect comes back: the loopback address and path login listens on."""

    host: str
    port: int
    path: str
    uri: str


@attrs.frozen(kw_only=True)
class _Plan:
    settings: Settings
    store: TokenStore
    account: str
    login_hint: str | None
    no_browser: bool
    timeout: float
    callback: _Callback


def _callback(settings: Settings) -> _Callback:
    uri = settings.redirect_uri
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK or port is None:
        raise CliError(
            "--redirect-uri: login listens on the redirect URI, so it must be a loopback "
            f"http:// address with a port, such as http://127.0.0.1:8765/callback, not {uri!r}"
            + settings.origin("redirect_uri")
        )
    return _Callback(host=parts.hostname, port=port, path=parts.path or "/", uri=uri)


async def _login(plan: _Plan) -> Token:
    settings = plan.settings
    try:
        # Everything that would fail after the consent fails now, before the browser.
        await plan.store.load(plan.account)
        await check_client(settings)
        listener = _listen(plan.callback)
        with listener:
            client_id, client_secret = settings.require_client()
            async with WiserOAuth(
                client_id=client_id,
                client_secret=client_secret,
                redirect_uri=plan.callback.uri,
                store=plan.store,
                scopes=settings.scope,
                authorize_url=settings.authorize_url,
                token_url=settings.token_url,
                token_endpoint_auth_method=settings.auth_method,
            ) as oauth:
                request = oauth.authorization_request(login_hint=plan.login_hint)
                callback_url = await _await_callback(plan, listener, request)
                return await oauth.complete_authorization(plan.account, callback_url, request)
    finally:
        await plan.store.aclose()


def _listen(callback: _Callback) -> socket.socket:
    """A listening socket on the callback's address; one line if the port is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        callback.host, callback.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A listener of a moment ago leaves its port in TIME_WAIT: take it anyway.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening from now on: a browser faster than uvicorn's start waits in the backlog.
        sock.listen(_MAX_CONNECTIONS)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {callback.port} on {callback.host} is in use (--redirect-uri "
                f"{callback.uri}): stop what listens there, or give another registered "
                "redirect URI"
            ) from None
        raise CliError(
            f"cannot listen on {callback.host}:{callback.port} (--redirect-uri "
            f"{callback.uri}): {exc.strerror or exc}"
        ) from None
    return sock


async def _await_callback(
    plan: _Plan, listener: socket.socket, request: AuthorizationRequest
) -> str:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Ctrl-C stops the whole command, as everywhere else (exit code 130),
            # rather than only this server.
            yield

    app = CallbackApp(plan.callback.path, request.state)
    server = Server(
        uvicorn.Config(
            app,
            http=_protocol_class(),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=1,
            limit_concurrency=_MAX_CONNECTIONS,
            h11_max_incomplete_event_size=_MAX_HEAD_BYTES,
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [listener])
        click.echo(f"Open this URL to authorize {plan.account!r}:\n{request.url}")
        try:
            if not plan.no_browser:
                import webbrowser

                await anyio.to_thread.run_sync(webbrowser.open, request.url)
            with anyio.move_on_after(plan.timeout):
                await app.received.wait()
        finally:
            # Stops the server once the page is sent; an idle connection does not hold it.
            server.should_exit = True
    if app.query is None:
        raise CliError(f"no authorization arrived within {plan.timeout:g} s (--timeout)")
    return f"{plan.callback.uri.split('?', 1)[0]}?{app.query}"


class CallbackApp:
    """The loopback listener: waits for the redirect that carries this login's state.

    Args:
        path: The callback's path; other paths get a 404.
        state: The pending authorization's state; a callback with another
            one (a stale tab, a forged request) gets a 400 and is ignored.
    """

    def __init__(self, path: str, state: str) -> None:
        self.path = path
        self._state = state.encode()
        self.received = anyio.Event()
        self.query: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != self.path:
            await _respond(send, 404)
            return
        if scope["method"] != "GET":
            await _respond(send, 405)
            return
        query = scope["query_string"].decode("latin-1")
        states = [value for name, value in parse_qsl(query) if name == "state"]
        if self.query is not None:
            await _respond(send, 200)  # the same page again (a reload)
            return
        if len(states) != 1 or not hmac.compare_digest(states[0].encode(), self._state):
            warn(
                "Ignored a request to the callback whose state is not this login's "
                "(a stale tab or a forged link); still waiting."
            )
            await _respond(send, 400)
            return
        self.query = query
        await _respond(send, 200)
        self.received.set()


async def _respond(send: Send, status: int) -> None:
    body = (
        "<!doctype html><meta charset=utf-8><title>wiser-async login</title>"
        f"<p>{_PAGES[status]}</p>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                # The address bar holds the code: never send it on as a Referer.
                (b"referrer-policy", b"no-referrer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _protocol_class() -> type[Any]:
    """uvicorn's h11 protocol with a deadline on each request head."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LoopbackProtocol(H11Protocol):
        # uvicorn times out idle keep-alive connections only after a first
        # response: a connection that never sends a request would stay open.

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._expect_request()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._expect_request()

        def _expect_request(self) -> None:
            self.loop.call_later(REQUEST_HEAD_TIMEOUT, self._close_if_idle, self.cycle)

        def _close_if_idle(self, cycle: Any) -> None:
            current: Any = self.cycle
            idle = current is cycle and (current is None or current.response_complete)
            if idle and not self.transport.is_closing():
                self.transport.close()

    return LoopbackProtocol


async def check_client(settings: Settings) -> None:
    """Ask the token endpoint whether it knows the client: one refresh with a random token.

    The server authenticates the client before it looks at the grant:
    ``invalid_client`` (or a 401 without an error code) means the
    credentials are refused; ``invalid_grant`` or any other error code
    means they were accepted.

    Raises:
        CliError: the credentials are refused, or the endpoint cannot be reached.
    """
    url = settings.token_url
    host = urlsplit(url).netloc.rpartition("@")[2] or url
    form = {"grant_type": "refresh_token", "refresh_token": secrets.token_urlsafe(32)}
    headers = {
        "accept": "application/json",
        "content-type": "application/x-www-form-urlencoded",
    }
    client_id, client_secret = settings.client_id or "", settings.client_secret or ""
    if settings.auth_method == "client_secret_basic":
        # RFC 6749 2.3.1: each part urlencoded, then Basic.
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = client_id
        if settings.auth_method == "client_secret_post":
            form["client_secret"] = client_secret
    try:
        async with httpx2.AsyncClient(timeout=_CHECK_TIMEOUT) as http:
            response = await http.post(url, content=urlencode(form).encode(), headers=headers)
    except httpx2.TimeoutException:
        raise CliError(f"no answer in time from {host} (--token-url {url})") from None
    except httpx2.HTTPError as exc:
        raise CliError(
            f"cannot connect to {host} (--token-url {url}): {type(exc).__name__}"
        ) from None
    error = _error_code(response.content)
    if error == "invalid_client" or (error is None and response.status_code == 401):
        raise CliError(
            f"the token endpoint at {host} refused the client credentials (invalid_client): "
            f"check {settings.client_named()}"
        )
    if error is None and not 200 <= response.status_code < 300:
        warn(
            f"Could not check the client credentials: {host} answered HTTP "
            f"{response.status_code} without an OAuth error; going on."
        )


def _error_code(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) and error else None
