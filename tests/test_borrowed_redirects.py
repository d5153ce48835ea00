"""A 3xx is never followed, whichever HTTP client sends: `UnexpectedRedirect`, nothing sent on.

An application may lend the client an ``httpx2.AsyncClient`` made with
``follow_redirects=True`` (its own default for its other calls): the
library's requests still stop at the 3xx, so no data from wherever it
points is taken for the API's, and no request (signed or not) goes there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.asgi_server import serve_asgi
from tests.support import issue, make_client, make_oauth
from token_stores import MemoryTokenStore
from wiser_async import ApiConfig
from wiser_async.errors import UnexpectedRedirect
from wiser_async.sandbox import Sandbox, SandboxUrls

pytestmark = pytest.mark.timeout(60)


class Elsewhere:
    """Another host's server: a page of data for any request, each one counted."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests.append(scope["path"])
        body = json.dumps({"data": [{"id": "from-elsewhere"}], "meta": {"total": 1}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Redirector:
    """The API's server: a 302 to the same path on `target` for every request."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        query = scope["query_string"].decode()
        location = f"{self.target}{scope['path']}" + (f"?{query}" if query else "")
        headers = [(b"location", location.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Redirector, str, Elsewhere, str]]:
    """The redirecting API server and the other host it points to: each app and its origin."""
    elsewhere = Elsewhere()
    with serve_asgi(elsewhere) as target:
        redirector = Redirector(target)
        with serve_asgi(redirector) as origin:
            yield redirector, origin, elsewhere, target


def borrowed_client(stack: str) -> httpx2.AsyncClient:
    """An application's client that follows redirects by default, on `stack`."""
    if stack == "aiohttp":
        from wiser_async.transports import AiohttpTransport

        return httpx2.AsyncClient(follow_redirects=True, transport=AiohttpTransport())
    return httpx2.AsyncClient(follow_redirects=True)


STACKS = [
    pytest.param("httpx2", id="httpx2"),
    pytest.param("aiohttp", id="aiohttp", marks=pytest.mark.asyncio_only),
]


@pytest.mark.parametrize("stack", STACKS)
async def test_a_borrowed_client_that_follows_redirects_stops_at_the_3xx(
    sandbox: Sandbox,
    urls: SandboxUrls,
    servers: tuple[Redirector, str, Elsewhere, str],
    stack: str,
) -> None:
    redirector, origin, elsewhere, target = servers
    elsewhere.requests.clear()
    redirector.requests = 0
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with (
        borrowed_client(stack) as borrowed,
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, http_client=borrowed, config=ApiConfig(base_url=origin)) as client,
    ):
        with pytest.raises(UnexpectedRedirect) as caught:
            await client.locations.page()
        # The application's own calls still follow, as it asked: only the library's stop.
        followed = await borrowed.get(f"{origin}/mine")
    assert caught.value.status_code == 302
    assert caught.value.location is not None
    assert caught.value.location.startswith(target)
    assert redirector.requests == 2
    # The library's request went nowhere else; the application's own one did.
    assert elsewhere.requests == ["/mine"]
    assert followed.json()["data"] == [{"id": "from-elsewhere"}]


@pytest.mark.parametrize(
    "route",
    [
        pytest.param("own-httpx2", id="own-httpx2"),
        pytest.param("own-aiohttp", id="own-aiohttp", marks=pytest.mark.asyncio_only),
        pytest.param("own-via-proxy", id="own-via-proxy"),
    ],
)
async def test_the_clients_own_http_client_stops_at_the_3xx_on_every_path(
    sandbox: Sandbox,
    urls: SandboxUrls,
    servers: tuple[Redirector, str, Elsewhere, str],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    _, origin, elsewhere, _ = servers
    elsewhere.requests.clear()
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    options: dict[str, Any] = {"config": ApiConfig(base_url=origin)}
    if route == "own-aiohttp":
        from wiser_async.transports import AiohttpTransport

        options["transport"] = AiohttpTransport()
    else:
        options["transport"] = None
    if route == "own-via-proxy":
        # httpx2.AsyncClient.send's own path: the "proxy" is the redirecting server.
        monkeypatch.setenv("HTTP_PROXY", origin)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        options["config"] = ApiConfig(base_url="http://api.invalid/v1")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        with pytest.raises(UnexpectedRedirect) as caught:
            await client.locations.page()
    assert caught.value.status_code == 302
    assert elsewhere.requests == []
