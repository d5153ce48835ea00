"""FastAPI: one `WiserOAuth` and one client per process, login and callback routes, error answers.

::

    wiser = Wiser(oauth=make_oauth, pending=lambda: RedisPendingStore(REDIS), success_url="/")
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

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

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


class Wiser(WebCore):
    """The Wiser integration of a FastAPI app (options: see `WebCore`)."""

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """``FastAPI(lifespan=wiser.lifespan)``: the process's resources, opened and closed."""
        async with self.open():
            app.state.wiser = self
            yield

    def setup(self, app: FastAPI, *, prefix: str = "/wiser") -> None:
        """Add the login and callback routes under `prefix`, and the error handlers."""
        app.include_router(self.router(prefix=prefix))
        app.add_exception_handler(WiserError, self._handle)

    async def _handle(self, request: Request, error: Exception) -> Response:
        answer = http_answer(error)
        if answer is None:
            raise error
        return JSONResponse(answer.to_json(), answer.status, headers=answer.headers)

    def account_client(self, account: str) -> AsyncWiserClient:
        """A dependency: the client of the path's ``{account}`` (400 for a malformed key)."""
        return self.client_for(account)

    def router(self, *, prefix: str = "/wiser") -> APIRouter:
        """``GET {prefix}/login/{account}`` (302 to authorize) and ``{prefix}/callback``."""
        router = APIRouter(prefix=prefix)

        @router.get("/login/{account}", name="wiser_login")
        async def login(request: Request, account: str) -> Response:
            start = await self.start_login(account, session_id=request.cookies.get(SESSION_COOKIE))
            response = RedirectResponse(start.url, status_code=302)
            cookie = self.login_cookie(start, path=prefix, https=request.url.scheme == "https")
            if cookie is not None:
                response.set_cookie(
                    SESSION_COOKIE,
                    cookie.value,
                    max_age=cookie.max_age,
                    path=cookie.path,
                    httponly=True,
                    samesite="lax",
                    secure=cookie.secure,
                )
            return response

        @router.get("/callback", name="wiser_callback")
        async def callback(request: Request) -> Response:
            try:
                account = await self.finish_login(
                    str(request.url),
                    request.query_params.get("state"),
                    session_id=request.cookies.get(SESSION_COOKIE),
                )
            except WiserError as error:
                answer = http_answer(error)
                if answer is None:
                    raise
                page = error_page(answer.title, answer.detail)
                return HTMLResponse(page, answer.status, headers=answer.headers)
            return RedirectResponse(self.success_location(account), status_code=302)

        return router
