"""Token-endpoint answers are bounded as they arrive: a gzip bomb costs neither memory nor time.

A token endpoint of the test's own, on loopback, answers a grant with 1 MiB
of gzip that inflates to 1 GiB of zeros. The answer must be refused as soon
as its decoded bytes pass the token answer's bound (256 KiB), with a typed
error naming the bound, and the stored grant left as it was.

Memory is the peak resident set of this process while the grant runs: the
kernel's high-water mark (``VmHWM``) is reset to the current size just
before (``/proc/self/clear_refs``), so what it reads after is this grant's
peak, not the process's since it started.
"""

from __future__ import annotations

import contextlib
import functools
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from token_stores import MemoryTokenStore
from wiser_async import WiserOAuth
from wiser_async.errors import TokenEndpointError

pytestmark = [
    pytest.mark.timeout(60),
    # httpcore2's body generator, iterated inside httpx2's transport stream, is left
    # to the garbage collector when a body is not read to its end, and trio warns
    # (pydantic/httpx2#1036). The library closes what it holds (the response, its
    # connection and httpx2's decoding iterator); this one is out of its reach.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object "
        "HTTP11ConnectionByteStream.__aiter__:pytest.PytestUnraisableExceptionWarning"
    ),
]

BOUND = 256 * 1024  # the token answer's bound the error names
ZEROS_PER_SEGMENT = 1 << 20
SEGMENTS = 1024  # 1 GiB inflated
# What the bound may cost: one of httpx2's inflated pieces (1 MiB) past it, and room.
MAX_GROWTH_MB = 50


@functools.cache
def gzip_bomb() -> tuple[bytes, bytes]:
    """The gzip header with its first segment, and one segment: 1 MiB of zeros each.

    Each segment ends in a full flush, which resets the compressor, so the same
    bytes decode to another MiB of zeros wherever they are repeated: 1,024 of
    them (1 MiB) make 1 GiB, built in milliseconds.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(ZEROS_PER_SEGMENT)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, segment


def bomb_pieces() -> Iterator[bytes]:
    """The whole bomb, a valid gzip of 1 GiB of zeros, in pieces of about 64 KiB."""
    first, segment = gzip_bomb()
    yield first
    for _ in range((SEGMENTS - 1) // 64):
        yield segment * 64
    yield segment * ((SEGMENTS - 1) % 64)
    # The trailer's CRC costs a quarter of a second: computed only if a client reads this far.
    zeros, crc = bytes(ZEROS_PER_SEGMENT), 0
    for _ in range(SEGMENTS):
        crc = zlib.crc32(zeros, crc)
    yield b"\x03\x00" + struct.pack("<II", crc, (SEGMENTS * ZEROS_PER_SEGMENT) & 0xFFFFFFFF)


def inflate(limit: int) -> None:
    """Inflate the bomb's first `limit` bytes as httpx2 does (1 MiB pieces), keeping none."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first, segment = gzip_bomb()
    produced = 0
    for data in (first, *[segment] * (limit // ZEROS_PER_SEGMENT)):
        piece = decompressor.decompress(data, ZEROS_PER_SEGMENT)
        while piece and produced < limit:
            produced += len(piece)
            piece = decompressor.decompress(decompressor.unconsumed_tail, ZEROS_PER_SEGMENT)


class TokenServer:
    """A token endpoint answering each grant as `answer` says, one request per connection.

    ``answer``: ``"token"`` (a valid token answer), ``"bomb-chunked"`` (the
    bomb, its size not declared), ``"bomb-declared"`` (the bomb with its
    Content-Length) or ``"corrupt-gzip"``.
    """

    def __init__(self) -> None:
        self.answer = "token"
        self.grants: list[str] = []
        self.url = ""
        self._issued = 0

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                head = await reader.receive_until(b"\r\n\r\n", 65536)
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.receive_exactly(int(length.group(1))) if length else b""
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return
            self.grants.append(parse_qs(body.decode())["grant_type"][0])
            # The client hangs up as soon as it has seen enough.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._answer(stream)

    async def _answer(self, stream: SocketStream) -> None:
        if self.answer == "token":
            self._issued += 1
            body = (
                f'{{"access_token": "access-{self._issued:04d}-abcdef", "token_type": "Bearer",'
                f' "expires_in": 3600, "refresh_token": "refresh-{self._issued:04d}-abcdef"}}'
            ).encode()
            await stream.send(head(content_length=len(body)) + body)
        elif self.answer == "corrupt-gzip":
            body = gzip_bomb()[0][:10] + b"not deflate data" * 8
            await stream.send(head(content_encoding="gzip", content_length=len(body)) + body)
        elif self.answer == "bomb-declared":
            first, segment = gzip_bomb()
            size = len(first) + (SEGMENTS - 1) * len(segment) + 10
            await stream.send(head(content_encoding="gzip", content_length=size))
            for piece in bomb_pieces():
                await stream.send(piece)
        else:
            await stream.send(head(content_encoding="gzip", transfer_encoding="chunked"))
            for piece in bomb_pieces():
                await stream.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            await stream.send(b"0\r\n\r\n")


def head(**headers: str | int) -> bytes:
    lines = ["HTTP/1.1 200 OK", "content-type: application/json", "connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@asynccontextmanager
async def token_server() -> AsyncIterator[TokenServer]:
    server = TokenServer()
    listener: Any = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    server.url = f"http://127.0.0.1:{port}/oauth/token"
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.handle)
        yield server
        group.cancel_scope.cancel()


def memory_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None, field
    return int(found.group(1))


def reset_peak_memory() -> int:
    """Reset this process's peak resident set to its current size; that size (kB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:  # not Linux >= 4.0, or a sandbox that forbids it
        pytest.skip(f"the peak resident set cannot be reset here ({exc})")
    return memory_kb("VmRSS")


@pytest.mark.parametrize("framing", ["bomb-chunked", "bomb-declared"])
@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token"])
async def test_a_gzip_bomb_token_answer_is_refused_at_the_bound_and_the_grant_kept(
    grant: str, framing: str
) -> None:
    store = MemoryTokenStore()
    async with (
        token_server() as server,
        WiserOAuth(
            client_id="bounded-client",
            client_secret="bounded-secret",
            redirect_uri="http://127.0.0.1/callback",
            store=store,
            token_url=server.url,
        ) as oauth,
    ):
        started = time.perf_counter()
        await oauth.exchange_code("acct", "first-code", code_verifier="v" * 43)
        ordinary = time.perf_counter() - started  # one grant with a small answer
        stored, marker = await store.load("acct"), await store.change_marker("acct")
        assert stored is not None
        # The time to inflate a 32nd of the bomb, here and now: a grant that
        # reads past its bound reads at least that much more than an ordinary one.
        started = time.perf_counter()
        inflate(SEGMENTS * ZEROS_PER_SEGMENT // 32)
        part = time.perf_counter() - started

        attempt: Callable[[], Awaitable[object]] = (
            functools.partial(oauth.refresh, "acct")
            if grant == "refresh_token"
            else functools.partial(
                oauth.exchange_code, "acct", "second-code", code_verifier="w" * 43
            )
        )
        server.answer = framing
        before = reset_peak_memory()
        started = time.perf_counter()
        with pytest.raises(TokenEndpointError) as caught:
            await attempt()
        took = time.perf_counter() - started
        growth_mb = (memory_kb("VmHWM") - before) / 1024

        assert (await store.load("acct")) == stored
        assert await store.change_marker("acct") == marker
        assert server.grants == ["authorization_code", grant]  # refused once, not retried
    assert growth_mb < MAX_GROWTH_MB, f"peak RSS grew {growth_mb:.1f} MB"
    assert took < ordinary + part, f"{took:.3f} s; ordinary {ordinary:.3f} s, a 32nd {part:.3f} s"
    error = caught.value
    assert error.error == "invalid_response"
    assert error.status_code == 200
    assert f"{BOUND}-byte limit" in str(error)
    assert "\\x00" not in str(error)  # nothing of the answer is shown


async def test_a_token_answer_that_does_not_decompress_is_a_typed_error() -> None:
    store = MemoryTokenStore()
    async with (
        token_server() as server,
        WiserOAuth(
            client_id="bounded-client",
            client_secret="bounded-secret",
            redirect_uri="http://127.0.0.1/callback",
            store=store,
            token_url=server.url,
        ) as oauth,
    ):
        server.answer = "corrupt-gzip"
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.exchange_code("acct", "a-code", code_verifier="v" * 43)
    assert caught.value.error == "invalid_response"
    assert "could not be decompressed" in str(caught.value)
    assert await store.load("acct") is None
