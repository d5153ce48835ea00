"""An HTTP transport over aiohttp: `AiohttpTransport` (asyncio only).

Given to the client itself, it sends through its `NativeSender`: straight
to the aiohttp session, with no httpx2 `Request` or `Response` built around
each request (the `Session` keeps every policy: the auth flow, timeouts,
size bounds, the error table). Given to httpx2 (or wrapped in another
transport), it is an httpx2 transport like any other.

As an httpx2 transport it does what httpx-aiohttp's
`httpx_aiohttp.httpx2.AiohttpTransport` does, without importing it (that
package loads httpx 1 and its command line, about 6 MB, for nothing here),
and reads failures differently, because the one upstream misreads them:

- A dropped or reset connection fails as a connection error (`httpx2.ReadError`,
  `httpx2.RemoteProtocolError`), never as a connect *timeout*: upstream maps
  every ``aiohttp.ClientConnectionError`` to `httpx2.ConnectTimeout`, which
  the library would report as the server being slow.
- A response aiohttp cannot parse (a bad status line, an oversized header, a
  broken chunked body) is an `httpx2.TransportError`, never a raw
  ``aiohttp.ClientResponseError``; that one is not even chained, because its
  ``request_info`` holds the request's headers, the bearer token among them.
- Cookies are httpx2's: aiohttp's own jar would keep and send them behind it.
- The URL goes out as httpx2 encoded it, not re-quoted by yarl.

Bodies are passed on as they arrive, still encoded (aiohttp decompresses
nothing): httpx2 decodes gzip and deflate (a corrupt body is an
`httpx2.DecodingError`) and the library's own reader bounds their size.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Final, cast

import httpx2

# httpx2's decoders: the same bounded pieces, the same errors, as on httpx2.
from httpx2._decoders import MultiDecoder as _MultiDecoder

from .._extras import extra_missing
from .._token_endpoint import default_ssl_context
from .body import check_declared, over_limit

try:
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError
    from yarl import URL
except ModuleNotFoundError as exc:
    raise extra_missing("wiser_async.transports.AiohttpTransport", "aiohttp", exc) from exc

__all__ = ["AiohttpTransport", "NativeSender"]

# httpx2's default: aiohttp's own (15 s) outlives many servers' idle timeout,
# and a request sent as the server closes an idle connection is lost.
KEEPALIVE_EXPIRY: Final = 5.0

NOT_ON_ASYNCIO: Final = (
    "AiohttpTransport runs on asyncio only, and no asyncio event loop is running "
    "here (trio?): leave transport= unset, httpx2's own transport runs on both"
)

# What aiohttp raises, in the order it is tested (subclasses first), and the
# httpx2 class each becomes: the Requester reads httpx2's classes only.
_ERROR_MAP: Final[tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...]] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    # SocketTimeoutError: nothing read for the read timeout.
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),
    # Refused, DNS, TLS handshake, certificate.
    (aiohttp.ClientConnectorError, httpx2.ConnectError),
    (aiohttp.ServerFingerprintMismatch, httpx2.ConnectError),
    # Closed before the response was complete: httpx2 says the same of it.
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
    # ClientOSError (a reset) and the rest of the connection's failures.
    (aiohttp.ClientConnectionError, httpx2.ReadError),
    # A body shorter than its Content-Length, a broken chunked encoding.
    (aiohttp.ClientPayloadError, httpx2.RemoteProtocolError),
    # A status line or a header aiohttp cannot parse.
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx2.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx2.UnsupportedProtocol),
    (aiohttp.ClientError, httpx2.TransportError),
    (HttpProcessingError, httpx2.RemoteProtocolError),
    (TimeoutError, httpx2.TimeoutException),
    # ConnectionResetError: a write to a closed connection (older aiohttp raises it bare).
    (OSError, httpx2.WriteError),
)
_CAUGHT: Final = (aiohttp.ClientError, HttpProcessingError, OSError)


def _mapped(exc: Exception) -> httpx2.TransportError:
    """The httpx2 exception standing for aiohttp's `exc`, chained to what caused it."""
    cause: BaseException | None = exc
    message = str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        # Chained to the parser's error instead: `exc` holds the request's headers.
        cause, message = exc.__cause__, exc.message
    kind = next(target for source, target in _ERROR_MAP if isinstance(exc, source))
    error = kind(message)
    error.__cause__ = cause
    return error


class _Response(aiohttp.ClientResponse):
    """aiohttp's response, with the ``status_code`` the auth flow reads."""

    @property
    def status_code(self) -> int:
        """The HTTP status, by httpx2's name."""
        return self.status


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """Requests sent through one aiohttp session (asyncio only).

    Give it to the client, which closes it with itself::

        AsyncWiserClient(oauth, account, transport=AiohttpTransport())

    The client then sends through it natively (`native_sender`): no httpx2
    request or response is built. Wrapped in another transport, or given to
    an ``httpx2.AsyncClient``, it takes httpx2 requests like any transport.

    Its aiohttp session is opened by the first request, in the running event
    loop, and closed by `aclose`. Its connections are bounded by the client's
    ``max_in_flight`` alone; an idle one is closed after 5 s. It sends
    HTTP/1.1 only and honors no proxy variable (``HTTPS_PROXY``...), as any
    transport given to httpx2. aiohttp refuses a response header line longer
    than 8190 bytes (httpx2 takes a header block of up to 100 KiB): such a
    response fails as a protocol error.

    Args:
        verify: The SSL context servers are verified with (default: the
            process's, system CAs or ``SSL_CERT_FILE``, built once).

    Raises:
        RuntimeError: from the first request, outside an asyncio event loop
            (on trio: leave ``transport=`` unset there).

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, verify: ssl.SSLContext | None = None) -> None:
        # The process's context is taken when the session opens: httpx2's
        # create_ssl_context imports httpcore2, which a client given this
        # transport has no other use for.
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeout_key: tuple[float | None, ...] | None = None
        self._timeout = aiohttp.ClientTimeout()

    def __repr__(self) -> str:
        return f"AiohttpTransport(session={'none' if self._session is None else 'open'})"

    def get_client(self) -> aiohttp.ClientSession:
        """The aiohttp session requests go through, opened in the running loop on first use.

        Raises:
            RuntimeError: no asyncio event loop is running.
        """
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        return session

    def _open_session(self) -> aiohttp.ClientSession:
        # Checked here, once: a request that finds the session open pays nothing.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(NOT_ON_ASYNCIO) from None
        connector = aiohttp.TCPConnector(
            ssl=default_ssl_context() if self._verify is None else self._verify,
            # The client's in-flight limit bounds the connections: no second queue here.
            limit=0,
            keepalive_timeout=KEEPALIVE_EXPIRY,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            response_class=_Response,
        )

    def native_sender(
        self, *, connect: float | None, read: float | None, pool: float | None
    ) -> NativeSender:
        """What the client sends through when given this transport (see `NativeSender`).

        Args:
            connect: Seconds to make a connection (None: no bound).
            read: Seconds between two reads of the answer.
            pool: Seconds to wait for, and make, a connection.
        """
        timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)
        return NativeSender(self, timeout)

    def _timeout_of(self, request: httpx2.Request) -> aiohttp.ClientTimeout:
        phases = request.extensions.get("timeout") or {}
        key = (phases.get("connect"), phases.get("read"), phases.get("pool"))
        if key != self._timeout_key:
            connect, read, pool = key
            # aiohttp's `connect` spans the wait for a connection and its making.
            self._timeout = aiohttp.ClientTimeout(
                sock_connect=connect, sock_read=read, connect=pool
            )
            self._timeout_key = key
        return self._timeout

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` and return its response once its headers are in.

        Raises:
            httpx2.TransportError: the connection failed, dropped, timed out or
                carried no HTTP response aiohttp could parse.
            RuntimeError: the first request runs outside an asyncio event loop.
        """
        session = self._session
        if session is None:
            session = self.get_client()
        encoding = request.headers.encoding
        # As httpx2 spelled them (multi_items() would lower their case).
        headers = [
            (name.decode(encoding), value.decode(encoding)) for name, value in request.headers.raw
        ]
        data: bytes | httpx2.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx2.RequestNotRead:
            # A streamed body: aiohttp frames it itself.
            data = cast(httpx2.AsyncByteStream, request.stream)
            headers = [pair for pair in headers if pair[0].lower() != "transfer-encoding"]
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=self._timeout_of(request),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except _CAUGHT as exc:
            error = _mapped(exc)
            error.request = request
        else:
            reason = response.reason
            return httpx2.Response(
                response.status,
                headers=response.raw_headers,
                stream=_Body(response),
                request=request,
                extensions={
                    "http_version": (
                        b"HTTP/1.0" if response.version == aiohttp.HttpVersion10 else b"HTTP/1.1"
                    ),
                    "reason_phrase": reason.encode("ascii", "replace") if reason else b"",
                },
            )
        # Raised here, outside the except clause: the aiohttp exception is no context of it.
        raise error

    async def aclose(self) -> None:
        """Close the session and its connections (a later request opens a new one)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _Body(httpx2.AsyncByteStream):
    """A response's body, chunk by chunk as aiohttp receives it, still encoded."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = self._response.content.readany
        while True:
            try:
                chunk = await read()
            except _CAUGHT as exc:
                error = _mapped(exc)
                break
            if not chunk:
                return
            yield chunk
        raise error

    async def aclose(self) -> None:
        # Synchronous: it holds even in a cancelled scope. A connection whose
        # body was not read to its end is closed, not pooled.
        self._response.release()


class _Outgoing:
    """A request as the auth flow sees it: its headers, which the flow signs."""

    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


# The headers httpx2's own client sends, so that the server sees no
# difference between the stacks; only the encodings decoded here are offered.
_HEADERS: Final = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": f"python-httpx2/{httpx2.__version__}",
}


class NativeSender:
    """Requests sent straight through an `AiohttpTransport`'s aiohttp session.

    No httpx2 `Request` or `Response` is built: a request is its method, URL
    and headers; its answer is aiohttp's response. What fails is raised as
    the httpx2 exception `AiohttpTransport` maps it to (the `Requester`
    reads httpx2's classes only); the auth flow is the same `httpx2.Auth`
    generator as on httpx2, given the request's headers to sign.
    """

    __slots__ = ("timeout", "transport")

    def __init__(self, transport: AiohttpTransport, timeout: aiohttp.ClientTimeout) -> None:
        self.transport = transport
        self.timeout = timeout

    async def send(self, method: str, url: str, auth: httpx2.Auth) -> _Response:
        """`url` requested, signed by `auth`'s flow: its response, headers in, body unread.

        A response the flow answers with another request (a 401, then a new
        token) is released unread, and its connection closed with it.

        Raises:
            httpx2.TransportError: the connection failed, dropped, timed out
                or carried no HTTP response aiohttp could parse.
            RuntimeError: no asyncio event loop is running.
        """
        session = self.transport.get_client()
        outgoing = _Outgoing(_HEADERS.copy())
        flow = auth.async_auth_flow(cast(httpx2.Request, outgoing))
        try:
            await flow.__anext__()
            while True:
                try:
                    response = await session.request(
                        method,
                        URL(url, encoded=True),
                        headers=outgoing.headers,
                        allow_redirects=False,
                        timeout=self.timeout,
                    )
                except _CAUGHT as exc:
                    error = _mapped(exc)
                    break
                try:
                    await flow.asend(cast(httpx2.Response, response))
                except StopAsyncIteration:
                    return cast(_Response, response)
                except BaseException:
                    response.release()
                    raise
                # Answered with another request: a 401's body is never read.
                response.release()
        finally:
            await flow.aclose()
        # Raised here, outside the except clause: the aiohttp exception is no context of it.
        raise error

    async def read(self, response: _Response, limit: int, method: str, shown: str) -> bytes:
        """The (decoded) body of `response`, refused (`DecodeError`) past `limit` bytes.

        Raises:
            DecodeError: the body, declared or decoded, exceeds `limit`.
            httpx2.DecodingError: a gzip or deflate body that does not decode.
            httpx2.TransportError: the connection dropped or broke the framing.
        """
        headers = response.headers
        declared = headers.get("Content-Length")
        check_declared(declared, limit, method, shown)
        try:
            if declared is not None and "Content-Encoding" not in headers:
                # The framing bounds it: no more than the length checked above.
                return await response.read()
            return await _read_stream(response, limit, method, shown)
        except _CAUGHT as exc:
            error = _mapped(exc)
        raise error


async def _read_stream(response: _Response, limit: int, method: str, shown: str) -> bytes:
    """A body of unknown length or encoded: read and decoded piece by piece within `limit`."""
    decoder = _decoder(response.headers.getall("Content-Encoding", ()))
    chunks: list[bytes] = []
    size = 0
    read = response.content.readany
    while True:
        raw = await read()
        pieces = (raw,) if decoder is None else decoder.decode(raw) if raw else decoder.flush()
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise over_limit(limit, method, shown)
            chunks.append(piece)
        if not raw:
            return b"".join(chunks)


def _decoder(declared: list[str] | tuple[()]) -> _MultiDecoder | None:
    """httpx2's decoder of the encodings named (in bounded pieces), None for none it knows."""
    encodings = [part.strip().lower() for value in declared for part in value.split(",")]
    decoder = _MultiDecoder([encoding for encoding in encodings if encoding != "identity"])
    return decoder if decoder.children else None
