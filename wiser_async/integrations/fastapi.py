"""FastAPI: one `WiserOAuth` and one client per process, login and callback routes, error answers.

::

    def authorize(request: Request, account: str) -> bool:
        user = request.session.get("user")  # the application's own login
        return user is not None and account in ACCOUNTS_OF[user]

    wiser = Wiser(oauth=make_oauth, authorize=authorize, pending=lambda: RedisPendingStore(REDIS))
    app = FastAPI(lifespan=wiser.lifespan)
    wiser.setup(app)  # GET /wiser/login/{account}, GET /wiser/callback, error handlers

    @app.get("/customers/{account}/devices")
    async def devices(client: Annotated[AsyncWiserClient, Depends(wiser.account_client)]):
        ...

Models go out as the API's JSON (camelCase, unknown fields kept): return
``wiser.json(model_or_list)``. Needs ``wiser-async[fastapi]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._extras import extra_missing

try:
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
except ModuleNotFoundError as exc:
    raise extra_missing("wiser_async.integrations.fastapi", "fastapi", exc) from exc

from .. import AsyncWiserClient
from ..errors import WiserError
from ._access_log import OAuthQueryFilter, install_access_log_filter
from ._authorize import allow_any_account
from ._core import LoginCookie, WebCore, error_page
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


def _set_cookie(response: Response, cookie: LoginCookie) -> None:
    response.set_cookie(
        cookie.name,
        cookie.value,
        max_age=cookie.max_age,
        path=cookie.path,
        httponly=True,
        samesite="lax",
        secure=cookie.secure,
    )


class Wiser(WebCore):
    """The Wiser integration of a FastAPI app (options: `WebCore`; ``authorize=`` is required)."""

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """``FastAPI(lifespan=wiser.lifespan)``: the process's resources, opened and closed."""
        async with self.open():
            app.state.wiser = self
            yield

    def setup(self, app: FastAPI, *, prefix: str = "/wiser") -> None:
        """Add the login and callback routes under `prefix`, and the error handler.

        Also masks ``code`` and ``state`` in the access logs of uvicorn,
        hypercorn, gunicorn and aiohttp (`OAuthQueryFilter`).
        """
        app.include_router(self.router(prefix=prefix))
        app.add_exception_handler(WiserError, self._handle)
        install_access_log_filter()

    async def _handle(self, request: Request, error: Exception) -> Response:
        answered = self.answer(error, method=request.method, path=request.url.path)
        if answered is None:
            raise error
        answer, request_id = answered
        headers = {**answer.headers, "X-Request-ID": request_id}
        return JSONResponse(answer.to_json(request_id), answer.status, headers=headers)

    def _page(self, request: Request, error: WiserError) -> Response:
        answered = self.answer(error, method=request.method, path=request.url.path)
        if answered is None:
            raise error
        answer, request_id = answered
        headers = {**answer.headers, "X-Request-ID": request_id}
        return HTMLResponse(error_page(answer, request_id), answer.status, headers=headers)

    async def account_client(self, request: Request, account: str) -> AsyncWiserClient:
        """A dependency: the client of the path's ``{account}``, once ``authorize`` allowed it.

        400 for a key that breaks the account-key rule, 403 when ``authorize``
        says no, 500 when it raises.
        """
        return await self.client_for(request, account)

    def router(self, *, prefix: str = "/wiser") -> APIRouter:
        """``GET {prefix}/login/{account}`` (302 to authorize) and ``{prefix}/callback``."""
        router = APIRouter(prefix=prefix)

        @router.get("/login/{account}", name="wiser_login")
        async def login(request: Request, account: str) -> Response:
            try:
                start = await self.start_login(
                    request,
                    account,
                    cookie=request.cookies.get(self.cookie_name),
                    fetch_site=request.headers.get("sec-fetch-site"),
                )
            except WiserError as error:
                return self._page(request, error)
            response = RedirectResponse(start.url, status_code=302)
            _set_cookie(response, start.cookie)
            return response

        @router.get("/callback", name="wiser_callback")
        async def callback(request: Request) -> Response:
            try:
                account = await self.finish_login(
                    request,
                    str(request.url),
                    request.query_params.get("state"),
                    cookie=request.cookies.get(self.cookie_name),
                )
            except WiserError as error:
                return self._page(request, error)
            return RedirectResponse(self.success_location(account), status_code=302)

        return router
