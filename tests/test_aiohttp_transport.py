"""AiohttpTransport: a misbehaving server gives the same typed error as on httpx2.

Each misbehaviour is played by a small loopback server of the test's own,
on both HTTP stacks: the `WiserError` class (and so its kind) must be the
same, and no aiohttp exception, nor the request's bearer token, may show
anywhere in what the caller gets. Then the transport's own promises: gzip
decoded by httpx2, bodies bounded by the client's reader, TLS verified with
the process's context or the one given, the session closed with the
client, and a clear refusal on trio.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.tls import TLSListener

from tests.support import free_port, stack_transport
from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth
from wiser_async.errors import ConnectionFailed, DecodeError, RequestTimeout, WiserError
from wiser_async.transports import AiohttpTransport

# Tests of what both stacks must do alike take this mark (see conftest.py).
ON_EACH_STACK = pytest.mark.usefixtures("http_stack")

ACCESS_TOKEN = "access-token-that-must-stay-secret"
NO_RETRY = RetryPolicy(attempts=1)
PAGE = b'{"data": [{"id": "loc-1", "name": "One"}], "meta": {"offset": 0, "total": 1}}'


@pytest.fixture
def anyio_backend() -> object:
    """asyncio only (in debug mode): aiohttp has no trio support (see the trio test below)."""
    return ("asyncio", {"debug": True})


Play = Callable[[SocketStream], Awaitable[None]]


async def _answer(play: Play, stream: SocketStream) -> None:
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            try:
                request += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
        # The client may give up first.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await play(stream)


@asynccontextmanager
async def serving(play: Play, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A loopback server answering every request with `play`; its origin."""
    listener: Any = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    if tls is not None:
        listener = TLSListener(listener, tls, standard_compatible=False)

    async def handle(stream: Any) -> None:
        await _answer(play, stream)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        group.cancel_scope.cancel()


@asynccontextmanager
async def client_of(origin: str, **options: Any) -> AsyncIterator[AsyncWiserClient]:
    """A client of `origin` on the test's HTTP stack, holding a valid token."""
    store = MemoryTokenStore()
    await store.save("acct", Token(access_token=ACCESS_TOKEN, refresh_token="r", expires_at=4e9))
    options.setdefault("retry", NO_RETRY)
    if "transport" not in options:
        options["transport"] = stack_transport()
    async with (
        WiserOAuth(
            client_id="c", client_secret="s", store=store, token_url="https://auth.invalid/token"
        ) as oauth,
        AsyncWiserClient(oauth, "acct", config=ApiConfig(base_url=origin + "/v1"), **options) as c,
    ):
        yield c


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception it was caused by or raised while handling."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [link for link in (current.__cause__, current.__context__) if link is not None]


def head(status: str = "200 OK", **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status}", "content-type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def reset(stream: SocketStream) -> None:
    """Make closing `stream` send an RST instead of a FIN."""
    sock = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def drop_before_headers(stream: SocketStream) -> None:
    pass  # closed by `_answer`


async def drop_mid_body(stream: SocketStream) -> None:
    await stream.send(head(content_length=1000) + PAGE[:20])


async def reset_before_headers(stream: SocketStream) -> None:
    reset(stream)


async def reset_mid_body(stream: SocketStream) -> None:
    await stream.send(head(content_length=1000) + PAGE[:20])
    await anyio.sleep(0.05)
    reset(stream)


async def oversized_header(stream: SocketStream) -> None:
    await stream.send(head(x_big="a" * 200_000, content_length=len(PAGE)) + PAGE)


async def bad_status_line(stream: SocketStream) -> None:
    await stream.send(head("abc OK", content_length=len(PAGE)) + PAGE)


async def truncated_chunked_body(stream: SocketStream) -> None:
    await stream.send(head(transfer_encoding="chunked") + b"100\r\n" + PAGE[:20])


async def bad_chunk_size(stream: SocketStream) -> None:
    await stream.send(head(transfer_encoding="chunked") + b"zz\r\n{}\r\n0\r\n\r\n")
    await anyio.sleep(1)


async def corrupt_gzip_body(stream: SocketStream) -> None:
    body = gzip.compress(PAGE)[:10] + b"not deflate data" * 8
    await stream.send(head(content_encoding="gzip", content_length=len(body)) + body)
    await anyio.sleep(1)


@ON_EACH_STACK
@pytest.mark.parametrize(
    ("play", "expected"),
    [
        pytest.param(drop_before_headers, ConnectionFailed, id="drop-before-headers"),
        pytest.param(drop_mid_body, ConnectionFailed, id="drop-mid-body"),
        pytest.param(reset_before_headers, ConnectionFailed, id="rst-before-headers"),
        pytest.param(reset_mid_body, ConnectionFailed, id="rst-mid-body"),
        pytest.param(oversized_header, ConnectionFailed, id="oversized-header"),
        pytest.param(bad_status_line, ConnectionFailed, id="bad-status-line"),
        pytest.param(truncated_chunked_body, ConnectionFailed, id="truncated-chunked-body"),
        pytest.param(bad_chunk_size, ConnectionFailed, id="bad-chunk-size"),
        pytest.param(corrupt_gzip_body, DecodeError, id="corrupt-gzip"),
    ],
)
async def test_a_misbehaving_server_gives_the_same_typed_error_on_either_stack(
    play: Play, expected: type[WiserError]
) -> None:
    async with serving(play) as origin, client_of(origin) as client:
        with pytest.raises(WiserError) as caught:
            await client.locations.page()
    error = caught.value
    assert type(error) is expected
    assert error.path == "/locations?offset=0&limit=500"
    # What the transport raised is httpx2's (aiohttp's own is only chained to it)...
    assert isinstance(error.__cause__, httpx2.RequestError)
    # ...and nothing chained shows the request's token (aiohttp's request_info would).
    for link in chain(error):
        assert ACCESS_TOKEN not in str(link) + repr(link) + repr(vars(link))


@ON_EACH_STACK
async def test_a_refused_connection_is_a_connection_failure() -> None:
    async with client_of(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectionFailed, match="failed or dropped"):
            await client.locations.page()


@ON_EACH_STACK
async def test_a_stalled_body_is_cut_by_the_whole_attempts_timeout() -> None:
    async def trickle(stream: SocketStream) -> None:
        # A byte every 0.1 s: every read is quick, the whole body would take minutes.
        await stream.send(head(content_length=10_000))
        while True:
            await stream.send(b" ")
            await anyio.sleep(0.1)

    async with serving(trickle) as origin, client_of(origin, timeout=0.5) as client:
        started = anyio.current_time()
        with pytest.raises(RequestTimeout, match=r"no complete answer .* within 0\.5 s"):
            await client.locations.page()
        assert anyio.current_time() - started < 5


@ON_EACH_STACK
async def test_gzip_bodies_are_decoded() -> None:
    async def gzipped(stream: SocketStream) -> None:
        body = gzip.compress(PAGE)
        await stream.send(head(content_encoding="gzip", content_length=len(body)) + body)

    async with serving(gzipped) as origin, client_of(origin) as client:
        page = await client.locations.page()
    assert [location.name for location in page.items] == ["One"]


@ON_EACH_STACK
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_an_undeclared_body_is_cut_at_the_size_limit(encoding: str) -> None:
    """Chunked, or 4 MiB that gzip makes 4 KiB of: the client's reader stops at 1 MiB."""
    body = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    if encoding == "gzip":
        body = gzip.compress(body)

    async def chunked(stream: SocketStream) -> None:
        await stream.send(head(content_encoding=encoding, transfer_encoding="chunked"))
        for start in range(0, len(body), 65536):
            chunk = body[start : start + 65536]
            await stream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await stream.send(b"0\r\n\r\n")

    async with (
        serving(chunked) as origin,
        client_of(origin, max_response_bytes=1024 * 1024) as client,
    ):
        with pytest.raises(DecodeError, match="1048576-byte limit"):
            await client.locations.page()


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def page_answer(stream: SocketStream) -> None:
    await stream.send(head(content_length=len(PAGE)) + PAGE)


@ON_EACH_STACK
async def test_an_unknown_certificate_is_refused_by_the_default_context(tmp_path: Path) -> None:
    server, _ = self_signed(tmp_path)
    async with serving(page_answer, tls=server) as origin, client_of(origin) as client:
        with pytest.raises(ConnectionFailed):
            await client.locations.page()


async def test_verify_gives_the_context_servers_are_verified_with(tmp_path: Path) -> None:
    server, trusting = self_signed(tmp_path)
    transport = AiohttpTransport(verify=trusting)
    async with (
        serving(page_answer, tls=server) as origin,
        client_of(origin, transport=transport) as client,
    ):
        page = await client.locations.page()
    assert page.items[0].id == "loc-1"


async def test_the_session_opens_on_the_first_request_and_closes_with_the_client() -> None:
    transport = AiohttpTransport()
    assert repr(transport) == "AiohttpTransport(session=none)"
    async with serving(page_answer) as origin, client_of(origin, transport=transport) as client:
        await client.locations.page()
        assert repr(transport) == "AiohttpTransport(session=open)"
    # Closed with the client; an unclosed session would fail the test (warnings are errors).
    assert repr(transport) == "AiohttpTransport(session=none)"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_first_request_says_the_transport_runs_on_asyncio_only() -> None:
    async with client_of("http://127.0.0.1:9", transport=AiohttpTransport()) as client:
        with pytest.raises(RuntimeError, match="runs on asyncio only"):
            await client.locations.page()
