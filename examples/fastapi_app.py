"""A FastAPI backend: per-customer login, a customer's devices, a portfolio summary.

Run against the sandbox (``wiser-async sandbox --port 8089``) and Redis::

    WISER_SANDBOX=http://127.0.0.1:8089 WISER_PUBLIC_URL=http://127.0.0.1:8000 \
        uvicorn examples.fastapi_app:app --workers 2 --port 8000

then open http://127.0.0.1:8000/wiser/login/acme.
"""

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from token_stores import RedisTokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RedisRateLimiter, WiserOAuth
from wiser_async.integrations.fastapi import RedisPendingStore, Wiser
from wiser_async.sandbox import SandboxUrls

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("WISER_PREFIX", "example")
URLS = SandboxUrls.for_origin(os.environ.get("WISER_SANDBOX", "http://127.0.0.1:8089"))
PUBLIC = os.environ.get("WISER_PUBLIC_URL", "http://127.0.0.1:8000")


def make_oauth() -> WiserOAuth:
    return WiserOAuth(
        client_id=os.environ.get("WISER_CLIENT_ID", "sandbox-client"),
        client_secret=os.environ.get("WISER_CLIENT_SECRET", "sandbox-secret"),
        redirect_uri=f"{PUBLIC}/wiser/callback",
        store=RedisTokenStore(REDIS, prefix=PREFIX),
        authorize_url=URLS.authorize_url,
        token_url=URLS.token_url,
    )


wiser = Wiser(
    oauth=make_oauth,
    pending=lambda: RedisPendingStore(REDIS, prefix=PREFIX),
    rate_limit=lambda: RedisRateLimiter(REDIS, key=f"{PREFIX}:rate", rate=50),
    success_url="/customers/{account}/devices",
    login_hint=lambda account: account,  # the sandbox's customer; in real use, or None
    config=ApiConfig(base_url=URLS.api_base_url),
)
app = FastAPI(lifespan=wiser.lifespan)
wiser.setup(app)  # GET /wiser/login/{account}, GET /wiser/callback, error answers
Client = Annotated[AsyncWiserClient, Depends(wiser.account_client)]


@app.get("/customers/{account}/devices")
async def devices(client: Client) -> list[dict[str, Any]]:
    found = []  # a crawl would record a refused grant as a failure; these calls raise it
    for location in await client.locations.list():
        for site in await client.sites.list(location.id):
            found += await client.devices.of_site(site.id).list()
    return [client.to_wire(device) for device in found]


@app.get("/portfolio")
async def portfolio() -> dict[str, Any]:
    return await wiser.summary()
