"""AiohttpTransport's native path: no httpx2 request or response around an aiohttp one.

Given to the client, `AiohttpTransport` is sent through directly
(`NativeSender`): these tests prove that this is the path taken (no
`httpx2.Request`, `httpx2.Response` or `httpx2.AsyncClient` is built, and
the transport's httpx2 entry point is never called), that the 401 refresh
flow, the body bounds and the decoders behave there as on httpx2, and that
a process using it loads no httpx2 connection pool (httpcore2). The rest of
the HTTP suite runs on it through the `http_stack` fixture.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from anyio.abc import SocketStream

from tests.support import issue, make_client, make_oauth
from tests.test_aiohttp_transport import PAGE, client_of, head, serving
from token_stores import MemoryTokenStore
from wiser_async.errors import DecodeError
from wiser_async.sandbox import Sandbox, SandboxUrls
from wiser_async.transports import AiohttpTransport

pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> object:
    """asyncio only (in debug mode): aiohttp has no trio support."""
    return ("asyncio", {"debug": True})


@pytest.fixture
def httpx2_built(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many httpx2 requests, responses and clients are built, and transport calls made."""
    counts = {"Request": 0, "Response": 0, "AsyncClient": 0, "handle_async_request": 0}

    def counting(owner: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[owner.__name__ if name == "__init__" else name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for cls in (httpx2.Request, httpx2.Response, httpx2.AsyncClient):
        counting(cls, "__init__")
    counting(AiohttpTransport, "handle_async_request")
    return counts


async def test_pages_go_through_aiohttp_with_no_httpx2_request_or_response(
    sandbox: Sandbox, urls: SandboxUrls, httpx2_built: dict[str, int]
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    oauth = make_oauth(urls, store)
    client = make_client(oauth, urls, transport=AiohttpTransport())
    built_by_oauth = httpx2_built["AsyncClient"]
    async with oauth, client:
        locations = await client.locations.list()
        sites = await client.sites.list(locations[0].id)
    assert locations
    assert sites
    assert client.stats.requests == 2
    assert httpx2_built == {
        "Request": 0,
        "Response": 0,
        "AsyncClient": built_by_oauth,
        "handle_async_request": 0,
    }


async def test_a_refused_token_is_refreshed_once_and_the_request_resent_natively(
    sandbox: Sandbox, urls: SandboxUrls, httpx2_built: dict[str, int]
) -> None:
    store = MemoryTokenStore()
    first = await issue(sandbox, store, "acct")
    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, transport=AiohttpTransport()) as client,
    ):
        await client.locations.list()
        sandbox.revoke_access_tokens()
        refreshes = sandbox.stats.token_requests.get("refresh_token", 0)
        requests_seen = httpx2_built["Request"]
        await client.locations.list()
    assert sandbox.stats.token_requests["refresh_token"] == refreshes + 1
    assert sandbox.stats.responses_by_status[401] == 1
    assert client.stats.requests == 3  # the first, the refused one, its re-send
    stored = await store.load("acct")
    assert stored is not None
    assert stored.access_token != first.access_token
    # Only the token endpoint's request was an httpx2 one.
    assert httpx2_built["Request"] == requests_seen + 1
    assert httpx2_built["handle_async_request"] == 0


async def test_the_http_suites_aiohttp_stack_is_the_native_path(
    http_stack: str, sandbox: Sandbox, urls: SandboxUrls, httpx2_built: dict[str, int]
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        await client.locations.list()
    built = httpx2_built["Request"] + httpx2_built["Response"]
    assert (built == 0) if http_stack == "aiohttp" else (built >= 2)


def _deflate(body: bytes, *, raw: bool) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


@pytest.mark.usefixtures("http_stack")
@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", lambda body: _deflate(body, raw=False)),
        ("deflate", lambda body: _deflate(body, raw=True)),
        ("gzip, deflate", lambda body: _deflate(gzip.compress(body), raw=False)),
        ("identity", lambda body: body),
        ("x-unknown", lambda body: body),
    ],
    ids=["gzip", "zlib-deflate", "raw-deflate", "gzip-then-deflate", "identity", "unknown"],
)
async def test_each_encoding_httpx2_decodes_is_decoded_alike(
    encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = encode(PAGE)

    async def answer(stream: SocketStream) -> None:
        await stream.send(head(content_encoding=encoding, content_length=len(body)) + body)

    async with serving(answer) as origin, client_of(origin) as client:
        page = await client.locations.page()
    assert [location.name for location in page.items] == ["One"]


@pytest.mark.usefixtures("http_stack")
async def test_a_small_declared_gzip_body_that_inflates_past_the_limit_is_refused() -> None:
    bomb = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")

    async def answer(stream: SocketStream) -> None:
        await stream.send(head(content_encoding="gzip", content_length=len(bomb)) + bomb)

    async with (
        serving(answer) as origin,
        client_of(origin, max_response_bytes=1024 * 1024) as client,
    ):
        with pytest.raises(DecodeError, match="1048576-byte limit"):
            await client.locations.page()


@pytest.mark.usefixtures("http_stack")
async def test_a_declared_length_past_the_limit_is_refused_before_reading() -> None:
    async def answer(stream: SocketStream) -> None:
        await stream.send(head(content_length=2 * 1024 * 1024) + PAGE)

    async with serving(answer) as origin, client_of(origin, max_response_bytes=1024) as client:
        with pytest.raises(DecodeError, match="bytes exceeds the 1024-byte limit"):
            await client.locations.page()


_NO_POOL_CHILD = """
import asyncio, json, sys

from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth
from wiser_async.transports import AiohttpTransport

PAGE = b'{"data": [{"id": "loc-1", "name": "One"}], "meta": {"offset": 0, "total": 1}}'


async def answer(reader, writer):
    await reader.readuntil(b"\\r\\n\\r\\n")
    writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
                 b"content-length: %d\\r\\n\\r\\n%s" % (len(PAGE), PAGE))
    await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = MemoryTokenStore()
    await store.save("acct", Token(access_token="a", refresh_token="r", expires_at=4e9))
    transport = AiohttpTransport()
    by_transport = "httpcore2" in sys.modules
    # The token endpoint has an httpx2 client of its own; none of the rest may need httpcore2.
    oauth = WiserOAuth(client_id="c", client_secret="s", store=store,
                       token_url="https://auth.invalid/token")
    sys.modules["httpcore2"] = None
    config = ApiConfig(base_url=f"http://127.0.0.1:{port}/v1")
    async with AsyncWiserClient(oauth, "acct", config=config, transport=transport) as client:
        page = await client.locations.page()
    server.close()
    print(json.dumps({"items": len(page.items), "by_transport": by_transport}))


asyncio.run(main())
"""


def test_the_native_path_needs_no_httpx2_connection_pool() -> None:
    """Importing and building the transport loads no httpcore2; a request needs none."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_NO_POOL_CHILD)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"items": 1, "by_transport": False}
