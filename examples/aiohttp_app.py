"""An aiohttp backend: app users (HTTP Basic) connect the customers they serve, read devices.

Who may act for which account: every request names its app user with HTTP
Basic (over https in real use), checked against ``EXAMPLE_USERS``; a request
without a valid user is answered 401 before any route runs. `authorize`
lets a user act only for the accounts the table gives them; the integration
asks it on the Wiser login and callback routes, and the devices and
portfolio routes get their client through it. In real use: your own users
and their customers, from your database.

Run two processes on one port (SO_REUSEPORT) against the sandbox and Redis::

    wiser-async sandbox --port 8089 &
    export EXAMPLE_USERS='alice:alice-password:acme,globex bob:bob-password:initech'
    export EXAMPLE_SANDBOX_URL=http://127.0.0.1:8089
    export EXAMPLE_PUBLIC_URL=http://127.0.0.1:8001
    python -m examples.aiohttp_app --port 8001 &
    python -m examples.aiohttp_app --port 8001 &

then open http://127.0.0.1:8001/wiser/login/acme as alice. The access log
(INFO, on standard error) shows every request, callbacks with ``code`` and
``state`` masked. Needs, from a clone, ``pip install -e '.[aiohttp,fastapi,redis,cli]'``.
"""

import argparse
import hmac
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import BasicAuth, hdrs, web

from token_stores import RedisTokenStore
from wiser_async import ApiConfig, RedisRateLimiter, WiserOAuth
from wiser_async.errors import Forbidden, NotFound
from wiser_async.integrations.aiohttp import RedisPendingStore, Wiser
from wiser_async.sandbox import SandboxUrls

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("EXAMPLE_PREFIX", "example")
URLS = SandboxUrls.for_origin(os.environ.get("EXAMPLE_SANDBOX_URL", "http://127.0.0.1:8089"))
PUBLIC = os.environ.get("EXAMPLE_PUBLIC_URL", "http://127.0.0.1:8001")


def read_users(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``name:password:account,account name:...`` as {name: (password, accounts)}."""
    users = {}
    for entry in text.split():
        name, password, accounts = entry.split(":", 2)
        users[name] = (password, frozenset(accounts.split(",")))
    return users


USERS = read_users(os.environ["EXAMPLE_USERS"])
APP_USER = web.RequestKey("app_user", str)


@web.middleware
async def app_users(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request names a valid app user with HTTP Basic, or gets a 401."""
    try:
        credentials = BasicAuth.decode(request.headers.get(hdrs.AUTHORIZATION, ""))
    except ValueError:
        credentials = None
    known = credentials is not None and credentials.login in USERS
    expected = USERS[credentials.login][0] if credentials is not None and known else ""
    # Compared even for an unknown user, so that the time says nothing of who exists.
    matches = credentials is not None and hmac.compare_digest(
        credentials.password.encode(), expected.encode()
    )
    if credentials is None or not (known and matches):
        return web.Response(
            status=401, text="sign in", headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="example"'}
        )
    request[APP_USER] = credentials.login
    return await handler(request)


def authorize(request: web.Request, account: str) -> bool:
    """May the app user behind `request` act for the customer's `account`?"""
    user = request.get(APP_USER)
    return user in USERS and account in USERS[user][1]


wiser = Wiser(
    oauth=lambda: WiserOAuth(
        client_id=os.environ.get("WISER_CLIENT_ID", "sandbox-client"),
        client_secret=os.environ.get("WISER_CLIENT_SECRET", "sandbox-secret"),
        redirect_uri=f"{PUBLIC}/wiser/callback",
        store=RedisTokenStore(REDIS, prefix=PREFIX),
        authorize_url=URLS.authorize_url,  # sandbox wiring: omit both for the real API
        token_url=URLS.token_url,
    ),
    authorize=authorize,
    pending=lambda: RedisPendingStore(REDIS, prefix=PREFIX),
    rate_limit=lambda: RedisRateLimiter(REDIS, key=f"{PREFIX}:rate", rate=50),
    success_url="/customers/{account}/devices",
    login_hint=lambda account: account,  # sandbox wiring: the sandbox's customer; else omit
    config=ApiConfig(base_url=URLS.api_base_url),  # sandbox wiring: omit for the real API
)
routes = web.RouteTableDef()


@routes.get("/customers/{account}/devices")
async def devices(request: web.Request) -> web.Response:
    """The customer's devices; a location or site the API refuses is listed, not fatal."""
    client = await wiser.request_client(request)
    found, missing = [], []
    for location in await client.locations.list():
        try:
            sites = await client.sites.list(location.id)
        except (Forbidden, NotFound) as error:  # no consent for it, or gone meanwhile
            missing.append({"location": location.id, "reason": error.kind})
            continue
        for site in sites:
            try:
                found += await client.devices.of_site(site.id).list()
            except (Forbidden, NotFound) as error:
                missing.append({"site": site.id, "reason": error.kind})
    return web.json_response(
        {
            "devices": [client.to_wire(device) for device in found],
            "missing": missing,
            "complete": not missing,
        }
    )


@routes.get("/portfolio")
async def portfolio(request: web.Request) -> web.Response:
    """Counts for the accounts of the app user only."""
    return web.json_response(await wiser.summary(request, USERS[request[APP_USER]][1]))


def make_app() -> web.Application:
    app = web.Application(middlewares=[app_users])
    wiser.setup(app)  # cleanup_ctx, GET /wiser/login/{account}, /wiser/callback, middleware
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    logging.basicConfig(level=logging.INFO)  # aiohttp's access log, among others
    web.run_app(make_app(), host="127.0.0.1", port=parser.parse_args().port, reuse_port=True)
