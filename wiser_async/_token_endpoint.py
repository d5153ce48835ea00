"""The token endpoint: one POST with client authentication, and its answer read leniently.

Written on httpx2 rather than authlib's client, because the grant depends on
details authlib's client gets wrong for this job: it parses ``expires_in``
with ``int()`` before the caller sees the answer (``"3600.5"`` or ``[3600]``
throws away tokens the server has just rotated), re-sends the constructor's
scope on every refresh (RFC 6749 section 6 forbids widening), and does not
form-urlencode the client id and secret before Basic encoding (RFC 6749
section 2.3.1). authlib still builds the authorization URL and the PKCE pair.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import json
import logging
import re
import ssl
import sys
import time
import types
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import httpx2

from token_stores import Token

from ._json import MAX_DEPTH, deeper_than
from ._redact import Secrets, request_secrets
from ._status import parse_retry_after
from .errors import TokenEndpointError

__all__ = [
    "AUTH_METHODS",
    "TokenEndpoint",
    "basic_credentials",
    "default_ssl_context",
    "defer_trio_import",
]

logger = logging.getLogger("wiser_async.oauth")

AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic", "none")
# Token answers are a few hundred bytes (a few kB with a JWT).
_MAX_ANSWER_BYTES = 256 * 1024
_EXCERPT = 200
_TOKEN_FIELDS = frozenset(
    {"access_token", "refresh_token", "token_type", "expires_in", "expires_at", "scope"}
)
# RFC 6749 appendix A: tokens are visible ASCII; a token sent in a header must hold no
# space or control character (RFC 6750 section 2.1).
_VISIBLE = re.compile(r"[\x21-\x7e]+")


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value of ``client_secret_basic`` (RFC 6749 section 2.3.1).

    Id and secret are urlencoded before they are joined by ``:`` and
    base64-encoded, so a secret holding ``+``, ``%``, ``:`` or ``/`` reaches
    the server intact. A space is sent as ``%20``, not the form encoding's
    ``+``: a form decoder reads both as a space, and some servers (authlib's
    among them) decode these credentials with plain percent-decoding, which
    reads ``+`` as a plus.
    """
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _describe_type(value: Any) -> str:
    # What the value was, never the value: it is server text.
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return "a number out of range" if Token.usable_lifetime(value) is None else "a number"
    return f"a JSON {type(value).__name__}"


class _DeferredModule(types.ModuleType):
    """A module registered but not run: the first attribute it lacks runs it for real.

    Unlike `importlib.util.LazyLoader`, whose module runs as soon as an
    ``import`` statement reads its ``__spec__`` (Python 3.11 does), only a
    name the import system did not set (``trio.Lock``, ``__path__`` for a
    submodule) does.
    """

    def __getattr__(self, name: str) -> Any:
        spec = self.__spec__
        path = spec.submodule_search_locations if spec else None
        if spec is None or spec.loader is None or path is None:  # pragma: no cover
            raise AttributeError(name)  # defer_trio_import registers packages only
        self.__class__ = types.ModuleType  # type: ignore[assignment]
        self.__path__ = path
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer_trio_import() -> None:
    """Register trio without running it, if no one has imported it yet (so: not under trio).

    httpcore2 runs ``import trio`` as it is imported itself, when trio is
    installed, to pick its locks by backend: about 40 ms of an asyncio
    process's start for a module it never uses there. Deferred, trio runs
    when one of its names is first read (which httpcore2 does only under
    trio), so a later ``trio.run`` in the same process works as before.
    """
    if "trio" in sys.modules:
        return
    spec = importlib.util.find_spec("trio")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    # Read by the import system for a submodule: it must run the package first.
    del module.__path__
    module.__class__ = _DeferredModule
    sys.modules["trio"] = module


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The process's default SSL context (system CAs, ``SSL_CERT_FILE``...), built once.

    Loading the CA bundle costs tens of milliseconds: every `WiserOAuth`
    and client of the process shares one context instead. Every HTTP client
    of the library asks for it first, before httpx2 imports httpcore2, so
    trio's import is deferred there (`defer_trio_import`).
    """
    defer_trio_import()
    return httpx2.create_ssl_context()


class TokenEndpoint:
    """Sends grant requests to the token endpoint and turns answers into `Token` objects."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        client_secret: str | None,
        auth_method: str,
        timeout: float,
        transport: httpx2.AsyncBaseTransport | None,
        secrets: Secrets,
        default_lifetime: float | None,
    ) -> None:
        if auth_method not in AUTH_METHODS:
            raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
        if auth_method != "none" and not client_secret:
            raise ValueError(f"{auth_method} needs a client_secret")
        if default_lifetime is not None and Token.usable_lifetime(default_lifetime) is None:
            raise ValueError("default_token_lifetime must be positive, at most a year (or None)")
        parts = urlsplit(url)
        self.url = url
        self.path = parts.path or "/"
        self.host = parts.hostname or url
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_method = auth_method
        self.default_lifetime = default_lifetime
        self._secrets = secrets
        self._http = httpx2.AsyncClient(
            timeout=timeout, transport=transport, verify=default_ssl_context()
        )
        self.requests: dict[str, int] = {"authorization_code": 0, "refresh_token": 0}

    def __repr__(self) -> str:
        return f"TokenEndpoint({self.url!r}, auth_method={self.auth_method!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def _error(
        self,
        error: str,
        description: str | None,
        *,
        status: int | None = None,
        account: str | None = None,
        retry_after: float | None = None,
    ) -> TokenEndpointError:
        if description is not None:
            description = self._secrets.redact(description, account)[:_EXCERPT]
        return TokenEndpointError(
            self._secrets.redact(error, account)[:_EXCERPT],
            description,
            status_code=status,
            path=self.path,
            retry_after=retry_after,
        )

    async def request(self, grant_type: str, params: Mapping[str, str], *, account: str) -> Token:
        """One grant request; its answer as a `Token`.

        Raises:
            TokenEndpointError: the server refused (``error``, ``status_code``), answered
                something unusable (``invalid_response``), or could not be reached
                (``unreachable``, ``timeout``).
        """
        self.requests[grant_type] = self.requests.get(grant_type, 0) + 1
        form = {"grant_type": grant_type, **params}
        headers = {"accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            assert self._client_secret is not None  # noqa: S101 - checked in __init__
            headers["authorization"] = basic_credentials(self.client_id, self._client_secret)
        else:
            form["client_id"] = self.client_id
            if self.auth_method == "client_secret_post":
                assert self._client_secret is not None  # noqa: S101 - checked in __init__
                form["client_secret"] = self._client_secret
        context = request_secrets.set((self._secrets, account))
        # Lifetimes count from before the request left: the server's clock
        # started then at the latest, so the token never outlives its own view.
        sent = time.time()
        try:
            request = self._http.build_request(
                "POST",
                self.url,
                content=urlencode(form).encode(),
                headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            )
            response = await self._http.send(request, stream=True, follow_redirects=False)
            try:
                body = await self._read_answer(response)
            except httpx2.DecodingError as exc:
                raise self._error(
                    "invalid_response",
                    f"the answer could not be decompressed ({type(exc).__name__})",
                    status=response.status_code,
                ) from None
            finally:
                await response.aclose()
        except httpx2.TimeoutException as exc:
            raise self._error(
                "timeout", f"no answer from {self.host} in time ({type(exc).__name__})"
            ) from None
        except (httpx2.ConnectError, httpx2.UnsupportedProtocol, httpx2.ProxyError) as exc:
            raise self._error(
                "unreachable", f"cannot connect to {self.host} ({type(exc).__name__})"
            ) from None
        except httpx2.TransportError as exc:
            # Sent, perhaps acted on: the server may have rotated a refresh token.
            raise self._error(
                "connection_lost",
                f"the connection to {self.host} failed before an answer ({type(exc).__name__})",
            ) from None
        finally:
            request_secrets.reset(context)
        status = response.status_code
        decoded = _decode(body)
        if 200 <= status < 300:
            return self._token(decoded, status, sent, account)
        if 300 <= status < 400:
            raise self._error(
                "invalid_response",
                f"the token endpoint redirected (HTTP {status}); check token_url",
                status=status,
            )
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str) and decoded["error"]:
            description = decoded.get("error_description")
            raise self._error(
                decoded["error"],
                description if isinstance(description, str) else None,
                status=status,
                account=account,
                retry_after=retry_after,
            )
        # No RFC 6749 error body: an HTML page from a proxy, an empty body...
        error = "temporarily_unavailable" if status in (429, 503) else "server_error"
        if status < 500 and status != 429:
            error = "invalid_response"
        excerpt = body[:_EXCERPT].decode("utf-8", "replace").strip() or "an empty body"
        raise self._error(
            error,
            f"HTTP {status} with {excerpt!r}",
            status=status,
            account=account,
            retry_after=retry_after,
        )

    async def _read_answer(self, response: httpx2.Response) -> bytes:
        """The answer's body, decoded as it arrives and refused as soon as it passes the bound.

        Counted after content decoding: a few kB of gzip can inflate to
        gigabytes, and reading it whole before measuring it would hold them all.
        """
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > _MAX_ANSWER_BYTES:
            raise self._too_large(response.status_code)
        chunks: list[bytes] = []
        size = 0
        # httpx2 inflates in pieces of at most 1 MiB: one piece past the bound is all it costs.
        async with contextlib.aclosing(response.aiter_bytes()) as pieces:
            async for chunk in pieces:
                size += len(chunk)
                if size > _MAX_ANSWER_BYTES:
                    raise self._too_large(response.status_code)
                chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, status: int) -> TokenEndpointError:
        # The bound, never the server's text: what it sent is not worth reading.
        return self._error(
            "invalid_response",
            f"the answer exceeds the {_MAX_ANSWER_BYTES}-byte limit of a token answer",
            status=status,
        )

    def _token(self, decoded: Any, status: int, sent: float, account: str) -> Token:
        if not isinstance(decoded, dict):
            raise self._error("invalid_response", "the answer is not a JSON object", status=status)
        access = decoded.get("access_token")
        if not isinstance(access, str) or not _VISIBLE.fullmatch(access):
            raise self._error(
                "invalid_response", "the answer has no usable access_token", status=status
            )
        refresh = decoded.get("refresh_token")
        if refresh is not None and not (isinstance(refresh, str) and _VISIBLE.fullmatch(refresh)):
            # Unusable as sent; dropping it keeps the stored refresh token (RFC 6749 section 6).
            logger.warning("the token answer for account %r has an unusable refresh_token", account)
            decoded = {k: v for k, v in decoded.items() if k != "refresh_token"}
        deep = sorted(
            name
            for name, value in decoded.items()
            if name not in _TOKEN_FIELDS and deeper_than(value, MAX_DEPTH - 1)
        )
        if deep:
            # Kept fields are written to the store: one nested past the bound
            # would make every save fail. The token itself is kept.
            logger.warning(
                "the token answer for account %r has unknown fields that nest deeper than %d "
                "levels, left out: %s",
                account,
                MAX_DEPTH,
                ", ".join(self._secrets.redact(name, account)[:40] for name in deep),
            )
            decoded = {k: v for k, v in decoded.items() if k not in deep}
        token_type = decoded.get("token_type")
        if token_type is None:
            token_type = "Bearer"  # noqa: S105 - required by RFC 6749, yet some servers omit it
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise self._error(
                "unsupported_token_type",
                f"the server issued a {str(token_type)[:40]!r} token; only Bearer tokens are "
                "supported (RFC 6750)",
                status=status,
                account=account,
            )
        lifetime = Token.usable_lifetime(decoded.get("expires_in"))
        if lifetime is None and "expires_in" not in decoded:
            # Not RFC 6749, yet seen: an absolute expiry instead of a lifetime.
            expires_at = decoded.get("expires_at")
            if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
                try:
                    lifetime = Token.usable_lifetime(expires_at - sent)
                except OverflowError:
                    lifetime = None
        if lifetime is None:
            if "expires_in" in decoded:
                fallback = (
                    "unknown (refreshed after a 401)"
                    if self.default_lifetime is None
                    else f"{self.default_lifetime:g} s"
                )
                logger.warning(
                    "the token answer for account %r has an unusable expires_in (%s); "
                    "its lifetime is taken as %s",
                    account,
                    _describe_type(decoded["expires_in"]),
                    fallback,
                )
            decoded = {k: v for k, v in decoded.items() if k != "expires_in"}
        else:
            decoded = {**decoded, "expires_in": lifetime}
        decoded.pop("expires_at", None)
        decoded["token_type"] = "Bearer"  # noqa: S105 - a token type, not a password
        return Token.from_response(decoded, now=sent, default_lifetime=self.default_lifetime)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
