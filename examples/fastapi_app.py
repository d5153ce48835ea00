"""A FastAPI backend: app users sign in, connect the customers they serve, read their devices.

Who may act for which account: an app user signs in with a form (a session
cookie signed with ``EXAMPLE_SESSION_SECRET``); `authorize` lets a user act
only for the accounts ``EXAMPLE_USERS`` gives them. The integration asks it
on the Wiser login and callback routes, and the devices and portfolio routes
get their client through it. In real use: your own users and their
customers, from your database.

Run against the sandbox and Redis (two workers: both need the same secret)::

    wiser-async sandbox --port 8089 &
    export EXAMPLE_USERS='alice:alice-password:acme,globex bob:bob-password:initech'
    export EXAMPLE_SESSION_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')
    EXAMPLE_SANDBOX_URL=http://127.0.0.1:8089 EXAMPLE_PUBLIC_URL=http://127.0.0.1:8000 \\
        uvicorn examples.fastapi_app:app --workers 2 --port 8000

then open http://127.0.0.1:8000/, sign in as alice and connect acme. Needs
``pip install -e '.[fastapi,redis,cli]' itsdangerous`` (from a clone).
"""

import hmac
import os
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from token_stores import RedisTokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RedisRateLimiter, WiserOAuth
from wiser_async.errors import Forbidden, NotFound
from wiser_async.integrations.fastapi import RedisPendingStore, Wiser
from wiser_async.sandbox import SandboxUrls

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("EXAMPLE_PREFIX", "example")
URLS = SandboxUrls.for_origin(os.environ.get("EXAMPLE_SANDBOX_URL", "http://127.0.0.1:8089"))
PUBLIC = os.environ.get("EXAMPLE_PUBLIC_URL", "http://127.0.0.1:8000")


def read_users(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``name:password:account,account name:...`` as {name: (password, accounts)}."""
    users = {}
    for entry in text.split():
        name, password, accounts = entry.split(":", 2)
        users[name] = (password, frozenset(accounts.split(",")))
    return users


USERS = read_users(os.environ["EXAMPLE_USERS"])


def app_user(request: Request) -> str:
    """The signed-in app user (401 when nobody is)."""
    user = request.session.get("user")
    if user not in USERS:
        raise HTTPException(401, "sign in first")
    return str(user)


def refuse_cross_site(request: Request) -> None:
    """Another site's form must not sign a user in or out (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != PUBLIC:
        raise HTTPException(403, "cross-site request")


def authorize(request: Request, account: str) -> bool:
    """May the app user behind `request` act for the customer's `account`?"""
    user = request.session.get("user")
    return user in USERS and account in USERS[user][1]


def make_oauth() -> WiserOAuth:
    return WiserOAuth(
        client_id=os.environ.get("WISER_CLIENT_ID", "sandbox-client"),
        client_secret=os.environ.get("WISER_CLIENT_SECRET", "sandbox-secret"),
        redirect_uri=f"{PUBLIC}/wiser/callback",
        store=RedisTokenStore(REDIS, prefix=PREFIX),
        authorize_url=URLS.authorize_url,  # sandbox wiring: omit both for the real API
        token_url=URLS.token_url,
    )


wiser = Wiser(
    oauth=make_oauth,
    authorize=authorize,
    pending=lambda: RedisPendingStore(REDIS, prefix=PREFIX),
    rate_limit=lambda: RedisRateLimiter(REDIS, key=f"{PREFIX}:rate", rate=50),
    success_url="/customers/{account}/devices",
    login_hint=lambda account: account,  # sandbox wiring: the sandbox's customer; else omit
    config=ApiConfig(base_url=URLS.api_base_url),  # sandbox wiring: omit for the real API
)
app = FastAPI(lifespan=wiser.lifespan)
wiser.setup(app)  # GET /wiser/login/{account}, GET /wiser/callback, error answers
app.add_middleware(
    SessionMiddleware,
    secret_key=os.environ["EXAMPLE_SESSION_SECRET"],
    session_cookie="example_session",
    max_age=8 * 3600,
    same_site="lax",
    https_only=True,  # browsers keep Secure cookies on http://127.0.0.1 and localhost too
)
User = Annotated[str, Depends(app_user)]
Client = Annotated[AsyncWiserClient, Depends(wiser.account_client)]


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    user = request.session.get("user")
    if user not in USERS:
        return (
            '<!doctype html><title>Sign in</title><form method="post" action="/login">'
            '<input name="username" placeholder="user"> '
            '<input name="password" type="password" placeholder="password"> '
            '<button type="submit">Sign in</button></form>'
        )
    links = "".join(
        f'<li>{escape(account)}: <a href="/wiser/login/{escape(account)}">connect</a>, '
        f'<a href="/customers/{escape(account)}/devices">devices</a></li>'
        for account in sorted(USERS[user][1])
    )
    return f"<!doctype html><title>{escape(user)}</title><h1>{escape(user)}</h1><ul>{links}</ul>"


@app.post("/login")
async def sign_in(request: Request) -> RedirectResponse:
    refuse_cross_site(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > 4096:
            raise HTTPException(413, "too large")
    form = parse_qs(body.decode(errors="replace"))
    name, password = form.get("username", [""])[0], form.get("password", [""])[0]
    expected = USERS.get(name, ("", frozenset()))[0]
    if not (name in USERS and hmac.compare_digest(password.encode(), expected.encode())):
        raise HTTPException(401, "wrong user or password")
    request.session.clear()
    request.session["user"] = name
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def sign_out(request: Request) -> RedirectResponse:
    refuse_cross_site(request)
    request.session.clear()
    return RedirectResponse("/", status_code=303)


@app.get("/customers/{account}/devices", dependencies=[Depends(app_user)])
async def devices(client: Client) -> dict[str, Any]:
    """The customer's devices; a location or site the API refuses is listed, not fatal."""
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
    return {
        "devices": [client.to_wire(device) for device in found],
        "missing": missing,
        "complete": not missing,
    }


@app.get("/portfolio")
async def portfolio(request: Request, user: User) -> dict[str, Any]:
    """Counts for the accounts of the signed-in user only."""
    return await wiser.summary(request, USERS[user][1])
