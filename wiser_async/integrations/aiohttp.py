"""aiohttp: one `WiserOAuth` and one client per process, login and callback routes, error answers.

::

    async def authorize(request: web.Request, account: str) -> bool:
        user = await app_user(request)  # the application's own login
        return user is not None and account in ACCOUNTS_OF[user]

    wiser = Wiser(oauth=make_oauth, authorize=authorize, pending=lambda: RedisPendingStore(REDIS))
    app = web.Application()
    wiser.setup(app)  # cleanup_ctx, GET /wiser/login/{account}, GET /wiser/callback, middleware

    async def devices(request: web.Request) -> web.Response:
        client = await wiser.request_client(request)  # match_info["account"], authorized
        ...

Models go out as the API's JSON (camelCase): ``web.json_response(wiser.json(models))``.
Needs ``wiser-async[aiohttp]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from .._extras import extra_missing

try:
    from aiohttp import web
except ModuleNotFoundError as exc:
    raise extra_missing("wiser_async.integrations.aiohttp", "aiohttp", exc) from exc

from .. import AsyncWiserClient
from ..errors import WiserError
from ._access_log import OAuthQueryFilter, install_access_log_filter
from ._authorize import allow_any_account
from ._core import WebCore, error_page
from ._http_errors import (
    ACCOUNT_RULE,
    AccountRefused,
    AuthorizeFailed,
    BadAccountKey,
    LoginError,
    WebError,
)
from ._pending import MemoryPendingStore, PendingStore
from ._pending_file import FilePendingStore
from ._pending_redis import RedisPendingStore

__all__ = [
    "ACCOUNT_RULE",
    "AccountRefused",
    "AuthorizeFailed",
    "BadAccountKey",
    "FilePendingStore",
    "LoginError",
    "MemoryPendingStore",
    "OAuthQueryFilter",
    "PendingStore",
    "RedisPendingStore",
    "WebError",
    "Wiser",
    "allow_any_account",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Wiser(WebCore):
    """The Wiser integration of an aiohttp app (options: `WebCore`; ``authorize=`` is required)."""

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``: the process's resources, opened and closed."""
        async with self.open():
            yield

    def setup(self, app: web.Application, *, prefix: str = "/wiser") -> None:
        """Add the cleanup context, the login and callback routes, and the error middleware.

        Also masks ``code`` and ``state`` in the access logs of aiohttp, gunicorn
        (``GunicornWebWorker`` logs through it), uvicorn and hypercorn (`OAuthQueryFilter`).
        """
        app.cleanup_ctx.append(self.cleanup_ctx)
        app.middlewares.append(self.middleware)
        app.router.add_get(prefix + "/login/{account}", self._login, name="wiser_login")
        app.router.add_get(prefix + "/callback", self._callback, name="wiser_callback")
        install_access_log_filter()

    async def request_client(
        self, request: web.Request, account: str | None = None
    ) -> AsyncWiserClient:
        """The client of `account` (default: the route's ``{account}``) if ``authorize`` allows it.

        Raises:
            BadAccountKey: 400 through the middleware.
            AccountRefused: 403. AuthorizeFailed: 500.
        """
        chosen = account if account is not None else request.match_info["account"]
        return await self.client_for(request, chosen)

    def _answer(self, request: web.Request, error: WiserError, *, page: bool) -> web.Response:
        answered = self.answer(error, method=request.method, path=request.path)
        if answered is None:
            raise error
        answer, request_id = answered
        headers = {**answer.headers, "X-Request-ID": request_id}
        if page:
            return web.Response(
                text=error_page(answer, request_id),
                status=answer.status,
                headers=headers,
                content_type="text/html",
            )
        return web.json_response(answer.to_json(request_id), status=answer.status, headers=headers)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Library errors as JSON answers (401 "log in again", 503 with Retry-After...)."""
        try:
            return await handler(request)
        except WiserError as error:
            return self._answer(request, error, page=False)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        try:
            start = await self.start_login(
                request,
                request.match_info["account"],
                cookie=request.cookies.get(self.cookie_name),
                fetch_site=request.headers.get("Sec-Fetch-Site"),
            )
        except WiserError as error:
            return self._answer(request, error, page=True)
        response = web.Response(status=302, headers={"Location": start.url})
        cookie = start.cookie
        response.set_cookie(
            cookie.name,
            cookie.value,
            max_age=cookie.max_age,
            path=cookie.path,
            httponly=True,
            samesite="Lax",
            secure=cookie.secure,
        )
        return response

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        try:
            account = await self.finish_login(
                request,
                str(request.url),
                request.query.get("state"),
                cookie=request.cookies.get(self.cookie_name),
            )
        except WiserError as error:
            return self._answer(request, error, page=True)
        return web.Response(status=302, headers={"Location": self.success_location(account)})
