"""aiohttp: one `WiserOAuth` and one client per process, login and callback routes, error answers.

::

    wiser = Wiser(oauth=make_oauth, pending=lambda: RedisPendingStore(REDIS), success_url="/")
    app = web.Application()
    wiser.setup(app)  # cleanup_ctx, GET /wiser/login/{account}, GET /wiser/callback, middleware

    async def devices(request: web.Request) -> web.Response:
        client = wiser.request_client(request)  # the client of match_info["account"]
        ...

Models go out as the API's JSON (camelCase): ``web.json_response(wiser.json(models))``.
Needs ``wiser-async[aiohttp]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .. import AsyncWiserClient
from ..errors import WiserError
from ._core import WebCore, error_page
from ._http_errors import LoginError, http_answer
from ._pending import FilePendingStore, MemoryPendingStore, PendingStore, RedisPendingStore
from ._session import SESSION_COOKIE

__all__ = [
    "FilePendingStore",
    "LoginError",
    "MemoryPendingStore",
    "PendingStore",
    "RedisPendingStore",
    "Wiser",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Wiser(WebCore):
    """The Wiser integration of an aiohttp app (options: see `WebCore`)."""

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``: the process's resources, opened and closed."""
        async with self.open():
            yield

    def setup(self, app: web.Application, *, prefix: str = "/wiser") -> None:
        """Add the cleanup context, the login and callback routes, and the error middleware."""
        app.cleanup_ctx.append(self.cleanup_ctx)
        app.middlewares.append(self.middleware)
        app.router.add_get(prefix + "/login/{account}", self._login(prefix), name="wiser_login")
        app.router.add_get(prefix + "/callback", self._callback, name="wiser_callback")

    def request_client(self, request: web.Request, account: str | None = None) -> AsyncWiserClient:
        """The client of `account` (default: the route's ``{account}``)."""
        return self.client_for(account if account is not None else request.match_info["account"])

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Library errors as JSON answers (401 "log in again", 503 with Retry-After...)."""
        try:
            return await handler(request)
        except WiserError as error:
            answer = http_answer(error)
            if answer is None:
                raise
            return web.json_response(answer.to_json(), status=answer.status, headers=answer.headers)

    def _login(self, prefix: str) -> Handler:
        async def login(request: web.Request) -> web.StreamResponse:
            start = await self.start_login(
                request.match_info["account"], session_id=request.cookies.get(SESSION_COOKIE)
            )
            response = web.HTTPFound(start.url)
            cookie = self.login_cookie(start, path=prefix, https=request.secure)
            if cookie is not None:
                response.set_cookie(
                    SESSION_COOKIE,
                    cookie.value,
                    max_age=cookie.max_age,
                    path=cookie.path,
                    httponly=True,
                    samesite="Lax",
                    secure=cookie.secure,
                )
            return response

        return login

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        try:
            account = await self.finish_login(
                str(request.url),
                request.query.get("state"),
                session_id=request.cookies.get(SESSION_COOKIE),
            )
        except WiserError as error:
            answer = http_answer(error)
            if answer is None:
                raise
            return web.Response(
                text=error_page(answer.title, answer.detail),
                status=answer.status,
                headers=answer.headers,
                content_type="text/html",
            )
        return web.HTTPFound(self.success_location(account))
