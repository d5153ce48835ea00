"""The FastAPI example in a real browser: headless Chromium, not a test client.

What only a browser proves: that Chromium itself follows the login's
redirects (the app, the sandbox's authorization page, the callback, the
devices page), that it keeps the app's session cookie and the
``__Host-wiser_login`` cookie with the attributes the app meant (Secure,
HttpOnly, SameSite=Lax, host-only on Path=/) on ``http://127.0.0.1``, that a
new login replaces the login cookie, and that another app user's browser,
or one nobody signed in, is refused (403, 401) and shown none of the
customer's data.

The app runs as the web tests run it (`serve_app`: ``uvicorn --workers 2``,
the sandbox in a child process, a real Redis). The browser is Debian's
``/usr/bin/chromium``, never a downloaded build; without it the tests skip,
unless ``WISER_REQUIRE_BROWSER=1`` (as in CI) makes that a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import anyio
import httpx2
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Cookie,
    Page,
    Request,
    async_playwright,
    expect,
)

from tests.web_support import LOGIN_COOKIE, USERS, forget, serve_app
from wiser_async.sandbox import SandboxProcess

CHROMIUM = "/usr/bin/chromium"
# No connection of Chromium's own: the closed network refuses them, and a test
# should not wait on them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SESSION_COOKIE = "example_session"  # examples/fastapi_app.py
WAIT_MS = 20_000  # for any one page or element: generous, for a busy machine
pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(90)]


@pytest.fixture(scope="module", autouse=True)
def chromium_present() -> None:
    """Skip the module without Chromium (fail instead when WISER_REQUIRE_BROWSER=1)."""
    if os.access(CHROMIUM, os.X_OK):
        return
    reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    if os.environ.get("WISER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WISER_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=1, sites_per_location=1, devices_per_site=3) as process:
        yield process


def wait_until_serving(origin: str) -> None:
    """Return once the app answers its home page (the workers start after the port opens)."""
    deadline = time.monotonic() + 60
    with httpx2.Client(base_url=origin, timeout=5) as client:
        while True:
            try:
                if client.get("/").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"{origin} did not start serving"
            time.sleep(0.1)


class App(NamedTuple):
    """Where the example serves, and the sandbox's authorization page it sends browsers to."""

    origin: str
    authorize_url: str


@pytest.fixture(scope="module")
def app(sandbox_process: SandboxProcess, redis_url: str) -> Iterator[App]:
    """The FastAPI example, serving; the grants of its Redis prefix are deleted afterwards."""
    with serve_app("fastapi", sandbox_process, redis_url, "browser") as (origin, prefix, _):
        try:
            wait_until_serving(origin)
            yield App(origin, sandbox_process.urls.authorize_url)
        finally:
            anyio.run(forget, redis_url, prefix)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser) -> Page:
    """A page of a new browser context: its own cookies, as another person's browser."""
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    return await context.new_page()


async def sign_in(page: Page, origin: str, user: str) -> None:
    """Fill the home page's form as `user` and submit it; the page then lists their accounts."""
    await page.goto(f"{origin}/")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", USERS[user][0])
    async with page.expect_response(f"{origin}/login") as posted:
        await page.click("button[type=submit]")
    assert (await posted.value).status == 303
    await expect(page.locator("h1")).to_have_text(user, timeout=WAIT_MS)
    accounts = [f"{account}: connect, devices" for account in sorted(USERS[user][1])]
    await expect(page.locator("li")).to_have_text(accounts, timeout=WAIT_MS)


async def connect(page: Page, app: App, account: str) -> dict[str, Any]:
    """Start the Wiser login of `account` and follow it through; the devices page's JSON."""
    origin = app.origin
    answer = await page.goto(f"{origin}/wiser/login/{account}")
    assert answer is not None
    # Chromium itself went: the app's login, the sandbox's authorization page
    # (which consents at once), the app's callback, the devices page.
    hops: list[str] = []
    request: Request | None = answer.request
    while request is not None:
        hops.append(request.url.split("?")[0])  # no state, code or challenge in a failure
        request = request.redirected_from
    assert hops[::-1] == [
        f"{origin}/wiser/login/{account}",
        app.authorize_url,
        f"{origin}/wiser/callback",
        f"{origin}/customers/{account}/devices",
    ]
    assert answer.status == 200
    assert page.url == f"{origin}/customers/{account}/devices"
    shown: dict[str, Any] = await answer.json()
    return shown


async def cookies_named(context: BrowserContext, origin: str, name: str) -> list[Cookie]:
    """The cookies of `name` the browser would send to `origin`, as it stored them."""
    return [cookie for cookie in await context.cookies(origin) if cookie["name"] == name]


async def test_a_browser_signs_in_connects_customers_and_keeps_host_only_secure_cookies(
    app: App, chromium: Browser
) -> None:
    origin = app.origin
    page = await new_page(chromium)
    await sign_in(page, origin, "alice")
    (session,) = await cookies_named(page.context, origin, SESSION_COOKIE)
    assert (session["secure"], session["httpOnly"], session["sameSite"]) == (True, True, "Lax")

    acme = await connect(page, app, "acme")
    assert acme["devices"]
    assert acme["complete"] is True
    assert acme["missing"] == []
    (login,) = await cookies_named(page.context, origin, LOGIN_COOKIE)
    attributes = (login["secure"], login["httpOnly"], login["sameSite"], login["path"])
    assert attributes == (True, True, "Lax", "/")
    assert login["domain"] == "127.0.0.1"  # host-only, as __Host- demands
    scripts_see = await page.evaluate("document.cookie")  # HttpOnly: not to the page's scripts
    assert LOGIN_COOKIE not in scripts_see
    assert SESSION_COOKIE not in scripts_see

    # Another login: a new login cookie, the old value gone from the browser.
    globex = await connect(page, app, "globex")
    assert globex["devices"]
    assert globex["complete"] is True
    (relogin,) = await cookies_named(page.context, origin, LOGIN_COOKIE)
    # Booleans: a failure shows no cookie value.
    renewed = relogin["value"] != login["value"]
    assert renewed
    old_still_stored = any(
        cookie["value"] == login["value"] for cookie in await page.context.cookies()
    )
    assert not old_still_stored
    await page.context.close()


async def test_a_browser_sees_only_customers_its_app_user_may_act_for(
    app: App, chromium: Browser
) -> None:
    origin = app.origin
    alice = await new_page(chromium)
    await sign_in(alice, origin, "alice")
    acme = await connect(alice, app, "acme")
    device_ids = [device["id"] for device in acme["devices"]]
    assert device_ids

    # mallory acts for initech only: neither acme's devices nor a login of acme.
    mallory = await new_page(chromium)
    await sign_in(mallory, origin, "mallory")
    devices = await mallory.goto(f"{origin}/customers/acme/devices")
    assert devices is not None
    assert devices.status == 403
    shown = await mallory.inner_text("body")
    assert not [device for device in device_ids if device in shown]
    login = await mallory.goto(f"{origin}/wiser/login/acme")
    assert login is not None
    assert login.status == 403
    assert await cookies_named(mallory.context, origin, LOGIN_COOKIE) == []

    # A browser nobody signed in to the app.
    stranger = await new_page(chromium)
    devices = await stranger.goto(f"{origin}/customers/acme/devices")
    assert devices is not None
    assert devices.status == 401
    shown = await stranger.inner_text("body")
    assert not [device for device in device_ids if device in shown]
    for page in (alice, mallory, stranger):
        await page.context.close()
