"""The web integrations ask the application's `authorize` first, and harden the login flow.

Each test runs against both frameworks: a FastAPI app through httpx2's ASGI
transport (asyncio and trio), and an aiohttp app served on loopback (asyncio
only). The apps have a devices route and a summary route written as the
README shows; `authorize` reads the app user from an ``X-User`` header (a
stand-in for the application's own login) and records every call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request

from tests.support import consent, free_port, make_oauth
from token_stores import MemoryTokenStore, StoreUnavailable, Token
from wiser_async import ApiConfig
from wiser_async.integrations._access_log import OAuthQueryFilter
from wiser_async.integrations._session import LOGIN_COOKIE, SECURE_LOGIN_COOKIE
from wiser_async.integrations.fastapi import (
    ACCOUNT_RULE,
    MemoryPendingStore,
    PendingStore,
    allow_any_account,
)
from wiser_async.sandbox import SandboxUrls

ACCOUNTS = {"alice": {"acme", "globex"}, "mallory": {"initech"}}
pytestmark = pytest.mark.timeout(30)


class Decisions:
    """The app's `authorize`: ``X-User``'s accounts; every call recorded; a mode to misbehave."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str]] = []
        self.mode = "table"

    async def __call__(self, request: Any, account: str) -> Any:
        user = request.headers.get("x-user")
        self.calls.append((user, account))
        if self.mode == "raise":
            raise RuntimeError("the user database is down at db.internal:5432")
        if self.mode == "not-a-bool":
            return "yes"
        if self.mode == "refuse":
            return False
        return account in ACCOUNTS.get(user or "", set())


class CountingStore(MemoryTokenStore):
    """A token store that counts reads and writes (to show a refusal touched neither)."""

    def __init__(self) -> None:
        super().__init__()
        self.touched = 0
        self.failing = False

    async def load(self, key: str) -> Token | None:
        self.touched += 1
        if self.failing:
            raise StoreUnavailable("redis://10.1.2.3:6379 refused the connection")
        return await super().load(key)

    async def save(self, key: str, token: Token) -> None:
        self.touched += 1
        await super().save(key, token)


class App:
    """One framework's app, the way to reach it, and what it was built with."""

    def __init__(
        self, kind: str, wiser: Any, decisions: Decisions, tokens: CountingStore, http: Any
    ) -> None:
        self.kind, self.wiser, self.decisions, self.tokens = kind, wiser, decisions, tokens
        self.http: httpx2.AsyncClient = http

    async def get(
        self, path: str, *, user: str | None = "alice", cookie: str | None = None
    ) -> httpx2.Response:
        headers = {"x-user": user} if user else {}
        if cookie is not None:
            headers["cookie"] = f"{self.wiser.cookie_name}={cookie}"
        return await self.http.get(path, headers=headers)

    async def login(self, account: str, **options: Any) -> tuple[str, str]:
        """The authorization URL and the login cookie of a login the app accepted."""
        answer = await self.get(f"/wiser/login/{account}", **options)
        assert answer.status_code == 302, answer.text
        return answer.headers["location"], login_cookie(answer, self.wiser.cookie_name)

    async def pending_count(self) -> int:
        store: PendingStore = self.wiser.pending
        return await store.count()


def login_cookie(answer: httpx2.Response, name: str) -> str:
    header = answer.headers["set-cookie"]
    match = re.match(rf"{re.escape(name)}=([^;]+)", header)
    assert match is not None, header
    return match.group(1)


def make_wiser(kind: str, urls: SandboxUrls, **options: Any) -> Any:
    if kind == "fastapi":
        from wiser_async.integrations.fastapi import Wiser as FastApiWiser

        return FastApiWiser(**options)
    from wiser_async.integrations.aiohttp import Wiser as AiohttpWiser

    return AiohttpWiser(**options)


def options(
    urls: SandboxUrls,
    decisions: Any,
    tokens: CountingStore,
    origin: str = "http://127.0.0.1:8000",
    **more: Any,
) -> Any:
    return {
        "oauth": lambda: make_oauth(urls, tokens, redirect_uri=f"{origin}/wiser/callback"),
        "authorize": decisions,
        "success_url": "/customers/{account}/devices",
        "login_hint": lambda account: account,
        "config": ApiConfig(base_url=urls.api_base_url),
        **more,
    }


@asynccontextmanager
async def fastapi_app(wiser: Any, origin: str) -> AsyncIterator[httpx2.AsyncClient]:
    app = FastAPI(lifespan=wiser.lifespan)
    wiser.setup(app)

    @app.get("/customers/{account}/devices")
    # A default, not Annotated: annotations are strings here, and `wiser` is local.
    async def devices(client: Any = Depends(wiser.account_client)) -> int:  # noqa: B008
        return len(await client.locations.list())

    @app.get("/summary")
    async def summary(request: Request, accounts: str) -> Any:
        return await wiser.summary(request, accounts.split(","))

    async with (
        wiser.lifespan(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=origin) as http,
    ):
        yield http


@asynccontextmanager
async def aiohttp_app(wiser: Any, origin: str) -> AsyncIterator[httpx2.AsyncClient]:
    from aiohttp import web

    async def devices(request: web.Request) -> web.Response:
        client = await wiser.request_client(request)
        return web.json_response(len(await client.locations.list()))

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(await wiser.summary(request, request.query["accounts"].split(",")))

    app = web.Application()
    wiser.setup(app)
    app.router.add_get("/customers/{account}/devices", devices)
    app.router.add_get("/summary", summary)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(origin.rpartition(":")[2])).start()
    try:
        async with httpx2.AsyncClient(base_url=origin) as http:
            yield http
    finally:
        await runner.cleanup()


@pytest.fixture(params=["fastapi", pytest.param("aiohttp", marks=pytest.mark.asyncio_only)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def serve(kind: str, urls: SandboxUrls, **more: Any) -> AsyncIterator[App]:
    decisions = more.pop("decisions", None) or Decisions()
    tokens = CountingStore()
    origin = "http://127.0.0.1:8000" if kind == "fastapi" else f"http://127.0.0.1:{free_port()}"
    wiser = make_wiser(kind, urls, **options(urls, decisions, tokens, origin, **more))
    serving = fastapi_app if kind == "fastapi" else aiohttp_app
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(serving(wiser, origin))
        yield App(kind, wiser, decisions, tokens, http)


@pytest.fixture
async def app(kind: str, urls: SandboxUrls) -> AsyncIterator[App]:
    async with serve(kind, urls) as served:
        yield served


async def connect(app: App, account: str = "acme", user: str = "alice") -> None:
    """A whole login of `account` by `user`."""
    url, cookie = await app.login(account, user=user)
    done = await app.get(await consent(url), user=user, cookie=cookie)
    assert done.status_code == 302, done.text


def test_wiser_without_authorize_names_the_readme_section(kind: str, urls: SandboxUrls) -> None:
    settings = options(urls, None, CountingStore())
    without = {name: value for name, value in settings.items() if name != "authorize"}
    for given in (without, settings):  # left out, or None
        with pytest.raises(TypeError, match="Who may act for which account") as raised:
            make_wiser(kind, urls, **given)
        assert "allow_any_account" in str(raised.value)


async def test_allow_any_account_warns_at_start_up(
    kind: str, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wiser_async.web"):
        async with serve(kind, urls, decisions=allow_any_account) as served:
            assert (await served.login("anyone", user=None))[0]
    warnings = [record for record in caplog.records if record.name == "wiser_async.web"]
    assert any("allow_any_account" in record.getMessage() for record in warnings)
    assert warnings[0].levelno == logging.WARNING


async def test_a_login_the_app_refuses_stores_nothing(app: App) -> None:
    for user in ("mallory", None):
        answer = await app.get("/wiser/login/acme", user=user)
        assert answer.status_code == 403, answer.text
        assert "set-cookie" not in answer.headers
    assert app.decisions.calls == [("mallory", "acme"), (None, "acme")]
    assert await app.pending_count() == 0
    assert app.tokens.touched == 0


async def test_a_malformed_account_key_names_the_rule_and_asks_nothing(app: App) -> None:
    for path in ("/wiser/login/a%20b", "/customers/" + "x" * 129 + "/devices"):
        answer = await app.get(path)
        assert answer.status_code == 400, answer.text
        assert ACCOUNT_RULE in answer.text
    assert app.decisions.calls == []


async def test_a_route_client_is_handed_out_only_when_authorize_allows(app: App) -> None:
    await connect(app, "acme")
    touched = app.tokens.touched
    refused = await app.get("/customers/acme/devices", user="mallory")
    assert refused.status_code == 403
    assert refused.json()["reason"] == "not_authorized"
    assert app.tokens.touched == touched  # the token store was not read
    allowed = await app.get("/customers/acme/devices")
    assert allowed.status_code == 200, allowed.text
    assert ("mallory", "acme") in app.decisions.calls


async def test_the_callback_asks_authorize_before_taking_the_login(app: App) -> None:
    url, cookie = await app.login("acme")
    callback = await consent(url)
    app.decisions.mode = "refuse"  # say the user lost this customer meanwhile
    refused = await app.get(callback, cookie=cookie)
    assert refused.status_code == 403
    assert app.tokens.touched == 0
    app.decisions.mode = "table"
    done = await app.get(callback, cookie=cookie)  # the login was left for its browser
    assert done.status_code == 302, done.text
    assert app.decisions.calls.count(("alice", "acme")) == 3  # login, refused, done


async def test_an_authorize_that_raises_is_a_generic_500_logged_with_its_id(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.decisions.mode = "raise"
    with caplog.at_level(logging.WARNING, logger="wiser_async.web"):
        answer = await app.get("/customers/acme/devices")
    assert answer.status_code == 500
    assert "db.internal" not in answer.text
    assert "RuntimeError" not in answer.text
    request_id = answer.json()["request_id"]
    assert answer.headers["x-request-id"] == request_id
    (record,) = [r for r in caplog.records if request_id in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "db.internal" in caplog.text  # the detail is in the server log
    app.decisions.mode = "not-a-bool"
    assert (await app.get("/wiser/login/acme")).status_code == 500
    assert await app.pending_count() == 0


async def test_error_answers_hide_details_and_log_them_with_the_request_id(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    await connect(app, "acme")
    await app.wiser.oauth.forget("acme")  # out of the process cache too
    await app.tokens.save("acme", Token(access_token="a" * 20, expires_at=4e9))
    app.tokens.failing = True
    with caplog.at_level(logging.WARNING, logger="wiser_async.web"):
        answer = await app.get("/customers/acme/devices")
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"]
    assert "10.1.2.3" not in answer.text
    body = answer.json()
    assert set(body) == {"error", "request_id"}
    (record,) = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "10.1.2.3" in record.getMessage()


async def test_the_login_cookie_is_new_at_every_login_and_secure_by_default(app: App) -> None:
    planted = "p" * 43  # a value an attacker knows, brought by the victim's browser
    answer = await app.get("/wiser/login/acme", cookie=planted)
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{SECURE_LOGIN_COOKIE}=")
    attributes = {part.strip().lower() for part in header.split(";")[1:]}
    assert {"httponly", "secure", "path=/", "samesite=lax"} <= attributes
    issued = login_cookie(answer, SECURE_LOGIN_COOKIE)
    assert issued != planted
    callback = await consent(answer.headers["location"])
    stolen = await app.get(callback, cookie=planted)  # the attacker's copy of the planted value
    assert stolen.status_code == 403
    assert (await app.get(callback, cookie=issued)).status_code == 302


async def test_plain_http_development_is_an_explicit_opt_out(kind: str, urls: SandboxUrls) -> None:
    async with serve(kind, urls, secure_cookie=False) as served:
        answer = await served.get("/wiser/login/acme")
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{LOGIN_COOKIE}=")
    assert "secure" not in header.lower()


async def test_a_callback_without_the_cookie_leaves_the_login_to_its_browser(app: App) -> None:
    url, cookie = await app.login("acme")
    callback = await consent(url)
    _, other = await app.login("globex", user="alice")  # another browser of the same user
    for attempt in (None, other, "x" * 43):
        refused = await app.get(callback, cookie=attempt)
        assert refused.status_code == 403, refused.text
        assert "browser" in refused.text
    done = await app.get(callback, cookie=cookie)
    assert done.status_code == 302, done.text
    assert (await app.get(callback, cookie=cookie)).status_code == 409


async def test_a_browsers_logins_of_two_accounts_both_complete(app: App) -> None:
    first_url, first = await app.login("acme")
    second_url, second = await app.login("globex", cookie=first)
    assert second != first
    for url in (first_url, second_url):  # both with the newest cookie, as the browser has it
        done = await app.get(await consent(url), cookie=second)
        assert done.status_code == 302, done.text
    assert set(await app.tokens.keys()) == {"acme", "globex"}


async def test_a_full_pending_store_answers_503_and_stores_nothing(
    kind: str, urls: SandboxUrls
) -> None:
    async with serve(kind, urls, pending=lambda: MemoryPendingStore(max_pending=2)) as served:
        first = await served.login("acme")
        await served.login("globex")
        busy = await served.get("/wiser/login/acme")  # a third browser
        assert busy.status_code == 503
        assert busy.headers["retry-after"]
        assert "set-cookie" not in busy.headers
        assert await served.pending_count() == 2
        again = await served.get("/wiser/login/acme", cookie=first[1])  # replaces its own
        assert again.status_code == 302


async def test_a_summary_covers_only_accounts_authorize_allows(app: App) -> None:
    await connect(app, "acme")
    assert (await app.get("/summary?accounts=acme,initech")).status_code == 403
    summary = (await app.get("/summary?accounts=acme")).json()
    assert set(summary["accounts"]) == {"acme"}
    assert summary["complete"]


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        # uvicorn: the path is an argument its formatter unpacks.
        (
            '%s - "%s %s HTTP/%s" %d',
            ("1.2.3.4", "GET", "/wiser/callback?code=C0DE&state=ST", "1.1", 302),
        ),
        # aiohttp: the line is formatted already.
        ('1.2.3.4 "GET /wiser/callback?state=ST&code=C0DE HTTP/1.1" 302', ()),
    ],
)
def test_access_log_lines_lose_the_callbacks_code_and_state(
    msg: str, args: tuple[Any, ...]
) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, None)
    assert OAuthQueryFilter().filter(record)
    line = record.getMessage()
    assert "C0DE" not in line
    assert "=ST" not in line
    assert "code=***" in line
    assert "state=***" in line
    gunicorn = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(r)s", ({"r": "GET /cb?code=C0DE"},), None
    )
    OAuthQueryFilter().filter(gunicorn)
    assert "C0DE" not in gunicorn.getMessage()


class _CaseFreeAtoms(dict[str, str]):
    """A mapping of log atoms like hypercorn's: any case, ``-`` for what is missing."""

    def __getitem__(self, key: str) -> str:
        return super().get(key.lower(), "-")


def test_structured_and_mapped_access_records_lose_code_and_state_too() -> None:
    # aiohttp passes the request line with extra=: a JSON formatter writes it out.
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, "%s", ("x",), None)
    record.__dict__["first_request_line"] = "GET /wiser/callback?code=C0DE&state=ST HTTP/1.1"
    OAuthQueryFilter().filter(record)
    assert "C0DE" not in record.__dict__["first_request_line"]
    # hypercorn: the bare query string as an atom; its mapping class is kept.
    atoms = _CaseFreeAtoms({"q": "code=C0DE&state=ST", "{x-forwarded-for}i": "1.2.3.4"})
    mapped = logging.LogRecord(
        "hypercorn.access",
        logging.INFO,
        __file__,
        1,
        "%(q)s %({X-Forwarded-For}i)s %(u)s",
        None,
        None,
    )
    mapped.args = atoms
    OAuthQueryFilter().filter(mapped)
    assert mapped.getMessage() == "code=***&state=*** 1.2.3.4 -"


@pytest.mark.parametrize("kind", ["fastapi", "aiohttp"])
def test_either_setup_filters_every_documented_access_logger(kind: str) -> None:
    from wiser_async.integrations._access_log import ACCESS_LOGGERS

    for name in ACCESS_LOGGERS:
        logging.getLogger(name).filters.clear()
    if kind == "fastapi":
        make_wiser(kind, SandboxUrls.for_origin("http://127.0.0.1:1"), **_minimal()).setup(
            FastAPI()
        )
    else:
        from aiohttp import web

        make_wiser(kind, SandboxUrls.for_origin("http://127.0.0.1:1"), **_minimal()).setup(
            web.Application()
        )
    for name in ("gunicorn.access", "aiohttp.access", "uvicorn.access", "hypercorn.access"):
        assert any(isinstance(f, OAuthQueryFilter) for f in logging.getLogger(name).filters)


def _minimal() -> dict[str, Any]:
    return {"oauth": lambda: None, "authorize": allow_any_account}


async def test_a_login_another_site_started_is_refused_and_stores_nothing(app: App) -> None:
    refused = await app.http.get(
        "/wiser/login/acme", headers={"x-user": "alice", "sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403
    assert "another site" in refused.text
    assert await app.pending_count() == 0
    for site in ("same-origin", "none"):  # from the app's own page, or typed in
        started = await app.http.get(
            "/wiser/login/acme", headers={"x-user": "alice", "sec-fetch-site": site}
        )
        assert started.status_code == 302


async def test_a_path_cannot_write_a_log_line_of_its_own(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wiser_async.web"):
        await app.get("/wiser/login/x%0A2026-12-07 INFO granted%20acme")
    assert caplog.records
    lines = [line for r in caplog.records for line in r.getMessage().splitlines()]
    assert len(lines) == len(caplog.records)
