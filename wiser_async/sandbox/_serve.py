"""Serving the sandbox over real HTTP with uvicorn (the ``sandbox`` extra).

uvicorn is imported inside the functions: in-process use must not need it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._app import Sandbox, SandboxUrls
from ._http import DroppedConnectionError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["serve", "serve_in_thread"]

_STARTUP_TIMEOUT = 20.0


class _HideDrops(logging.Filter):
    """Keep deliberate connection drops out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnectionError))


_HIDE_DROPS = _HideDrops()


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _origin(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    # A wildcard address accepts loopback connections; a client cannot dial the wildcard.
    if host in ("", "0.0.0.0"):  # noqa: S104 (compared, not bound)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(sandbox: Sandbox, on_started: Callable[[], None], **config: Any) -> uvicorn.Server:
    try:
        import uvicorn  # an optional extra: only serving needs it
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "serving the sandbox over HTTP needs uvicorn, which is not installed: "
            "pip install 'wiser-async[sandbox]'",
            name=exc.name,
        ) from exc

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                on_started()

    server = _Server(
        uvicorn.Config(
            sandbox.app,
            interface="asgi3",
            lifespan="on",
            access_log=False,
            # Keep-alive connections of a client still open must not hold up shutdown.
            timeout_graceful_shutdown=2,
            **config,
        )
    )
    logging.getLogger("uvicorn.error").addFilter(_HIDE_DROPS)
    return server


def serve(
    sandbox: Sandbox,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[SandboxUrls], None] | None = None,
    *,
    log_level: str = "warning",
) -> None:
    """Serve ``sandbox`` with uvicorn in this thread until SIGINT or SIGTERM.

    Args:
        sandbox: What to serve.
        host: Address to bind.
        port: Port to bind; 0 picks a free one.
        on_ready: Called with the URLs once the server accepts connections.
        log_level: uvicorn's log level.

    .. versionadded:: 0.1.0
    """
    with _bind(host, port) as sock:  # closed even when the server cannot be built
        urls = sandbox.urls(_origin(sock, host))
        server = _server(
            sandbox, (lambda: on_ready(urls)) if on_ready else (lambda: None), log_level=log_level
        )
        server.run(sockets=[sock])


@contextlib.contextmanager
def serve_in_thread(sandbox: Sandbox, host: str, port: int) -> Iterator[SandboxUrls]:
    """Serve ``sandbox`` on a daemon thread for the duration of the block."""
    sock = _bind(host, port)
    urls = sandbox.urls(_origin(sock, host))
    started = threading.Event()
    failure: list[BaseException] = []
    try:
        # No log_config: a test process keeps its own logging setup.
        server = _server(sandbox, started.set, log_config=None, log_level="warning")
    except BaseException:
        sock.close()  # uvicorn missing: the bound socket is not left to the collector
        raise

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name=f"wiser-sandbox {urls.origin}", daemon=True)
    with sock:
        thread.start()
        if not started.wait(_STARTUP_TIMEOUT):
            server.should_exit = True
            thread.join(_STARTUP_TIMEOUT)
            raise RuntimeError("the sandbox server did not start in time")
        if failure or not server.started:
            thread.join(_STARTUP_TIMEOUT)
            raise RuntimeError("the sandbox server failed to start") from (
                failure[0] if failure else None
            )
        try:
            yield urls
        finally:
            server.should_exit = True
            thread.join(_STARTUP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STARTUP_TIMEOUT)
