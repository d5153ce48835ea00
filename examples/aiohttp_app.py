"""An aiohttp backend: per-customer login, a customer's devices, a portfolio summary.

Run two processes on one port (SO_REUSEPORT) against the sandbox and Redis::

    WISER_SANDBOX=http://127.0.0.1:8089 python -m examples.aiohttp_app --port 8001 &
    WISER_SANDBOX=http://127.0.0.1:8089 python -m examples.aiohttp_app --port 8001 &

then open http://127.0.0.1:8001/wiser/login/acme.
"""

import argparse
import os

from aiohttp import web

from token_stores import RedisTokenStore
from wiser_async import ApiConfig, RedisRateLimiter, WiserOAuth
from wiser_async.integrations.aiohttp import RedisPendingStore, Wiser
from wiser_async.sandbox import SandboxUrls

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("WISER_PREFIX", "example")
URLS = SandboxUrls.for_origin(os.environ.get("WISER_SANDBOX", "http://127.0.0.1:8089"))
PUBLIC = os.environ.get("WISER_PUBLIC_URL", "http://127.0.0.1:8001")

wiser = Wiser(
    oauth=lambda: WiserOAuth(
        client_id=os.environ.get("WISER_CLIENT_ID", "sandbox-client"),
        client_secret=os.environ.get("WISER_CLIENT_SECRET", "sandbox-secret"),
        redirect_uri=f"{PUBLIC}/wiser/callback",
        store=RedisTokenStore(REDIS, prefix=PREFIX),
        authorize_url=URLS.authorize_url,
        token_url=URLS.token_url,
    ),
    pending=lambda: RedisPendingStore(REDIS, prefix=PREFIX),
    rate_limit=lambda: RedisRateLimiter(REDIS, key=f"{PREFIX}:rate", rate=50),
    success_url="/customers/{account}/devices",
    login_hint=lambda account: account,  # the sandbox's customer; in real use, or None
    config=ApiConfig(base_url=URLS.api_base_url),
)
routes = web.RouteTableDef()


@routes.get("/customers/{account}/devices")
async def devices(request: web.Request) -> web.Response:
    client = wiser.request_client(request)
    found = []  # a crawl would record a refused grant as a failure; these calls raise it
    for location in await client.locations.list():
        for site in await client.sites.list(location.id):
            found += await client.devices.of_site(site.id).list()
    return web.json_response([client.to_wire(device) for device in found])


@routes.get("/portfolio")
async def portfolio(request: web.Request) -> web.Response:
    return web.json_response(await wiser.summary())


def make_app() -> web.Application:
    app = web.Application()
    wiser.setup(app)  # cleanup_ctx, GET /wiser/login/{account}, /wiser/callback, middleware
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    web.run_app(make_app(), host="127.0.0.1", port=parser.parse_args().port, reuse_port=True)
