"""A loopback HTTP server playing an ASGI app of a test's own, in a daemon thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["serve_asgi"]


@contextmanager
def serve_asgi(app: Any, *, lifespan: bool = False) -> Iterator[str]:
    """Serve `app` (ASGI 3) with uvicorn on a free loopback port: its origin, for the block.

    With `lifespan`, the app's startup runs before the block and its shutdown after.
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_config=None, lifespan="on" if lifespan else "off", interface="asgi3"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test's server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
