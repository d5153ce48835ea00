"""The examples as the tests start them: each answer names its worker (``X-Worker``: the pid).

``uvicorn tests.web_apps:fastapi_app --workers 2`` and
``python -m tests.web_apps --port P`` (aiohttp, SO_REUSEPORT) run the
examples' own apps; only the header is added, and for aiohttp the log level
(``WEB_APPS_LOG_LEVEL``: ``info`` shows its access log).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from starlette.requests import Request
from starlette.responses import Response

from examples import aiohttp_app
from examples.fastapi_app import app as fastapi_app

PID = str(os.getpid())


@fastapi_app.middleware("http")
async def _name_worker(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Worker"] = PID
    return response


async def _prepare(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Worker"] = PID


def make_aiohttp_app() -> web.Application:
    app = aiohttp_app.make_app()
    app.on_response_prepare.append(_prepare)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    logging.basicConfig(level=os.environ.get("WEB_APPS_LOG_LEVEL", "warning").upper())
    web.run_app(
        make_aiohttp_app(),
        host="127.0.0.1",
        port=parser.parse_args().port,
        reuse_port=True,
        print=None,
    )
