"""A client's own HTTP client: a proxy named in the environment carries its requests; no cookies.

The client sends through its transport directly unless a proxy is set (see
`wiser_async._transport.direct`): both paths must behave the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.asgi_server import serve_asgi
from tests.support import issue, make_client, make_oauth
from token_stores import MemoryTokenStore
from wiser_async.sandbox import Sandbox, SandboxUrls

SEEN: list[str] = []
COOKIES: list[str | None] = []


async def cookie_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sets a cookie on every answer, and notes the cookie each request carried."""
    if scope["type"] != "http":
        return
    COOKIES.append(dict(scope["headers"]).get(b"cookie", b"").decode() or None)
    body = json.dumps({"data": [], "meta": {"total": 0}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"set-cookie", b"session=tracked; Path=/"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def proxy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A forward proxy that answers every request itself: one location, named after it."""
    if scope["type"] != "http":
        return
    SEEN.append(scope["path"])
    body = json.dumps({"data": [{"id": "via-proxy"}], "meta": {"total": 1}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    with serve_asgi(proxy_app) as origin:
        yield origin


async def test_http_proxy_from_the_environment_carries_api_requests(
    sandbox: Sandbox,
    urls: SandboxUrls,
    proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    SEEN.clear()
    async with make_oauth(urls, store) as oauth:
        # Set before the client is made: that is when httpx2 reads it.
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with make_client(oauth, urls) as client:
            page = await client.locations.page()
    assert [location.id for location in page.items] == ["via-proxy"]
    assert SEEN
    assert sandbox.stats.requests == 0


@pytest.fixture(scope="module")
def cookie_server() -> Iterator[str]:
    with serve_asgi(cookie_app) as origin:
        yield origin


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "via-proxy-env"])
async def test_cookies_an_api_sets_are_never_sent_back(
    sandbox: Sandbox,
    urls: SandboxUrls,
    cookie_server: str,
    monkeypatch: pytest.MonkeyPatch,
    through_proxy: bool,
) -> None:
    from wiser_async import ApiConfig

    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    COOKIES.clear()
    if through_proxy:
        # httpx2's own send path: the "proxy" is the cookie server itself.
        monkeypatch.setenv("HTTP_PROXY", cookie_server)
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, config=ApiConfig(base_url=cookie_server)) as client,
    ):
        for _ in range(3):
            await client.locations.page()
    assert COOKIES == [None, None, None]
