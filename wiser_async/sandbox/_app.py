"""The :class:`Sandbox`: the ASGI app that plays the API and its OAuth server."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Literal
from urllib.parse import parse_qsl

import anyio
import attrs
import httpx2

from . import _hostile as hostile
from ._faults import EVERY_RESOURCE, FaultPlan, Faults
from ._http import DroppedConnectionError, Response, api_error, encode_json, json_response
from ._oauth import OAuthServer
from ._portfolio import Portfolio, PortfolioSpec
from ._stats import SandboxStats, StatsRecorder

__all__ = ["API_PREFIX", "AUTHORIZE_PATH", "ROUTES", "TOKEN_PATH", "Sandbox", "SandboxUrls"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API_PREFIX = "/wiser/energy-monitoring/v1"
AUTHORIZE_PATH = "/ecostruxure/v1/oauth/authorize"
TOKEN_PATH = "/ecostruxure/v1/oauth/token"  # noqa: S105 (a path, not a secret)
OPENAPI_PATH = "/openapi.json"
ADMIN_PREFIX = "/_sandbox/"

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_MAX_BODY = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,12}")
_UNAUTHORIZED = ((b"www-authenticate", b'Bearer error="invalid_token"'),)


@attrs.frozen
class _Route:
    template: str
    kind: str | None  # id prefix of the path parameter; None for /locations
    collection: str | None  # Portfolio iterator behind a page; None for one entity


ROUTES = (
    _Route("/locations", None, "locations"),
    _Route("/locations/{locationId}", "loc", None),
    _Route("/locations/{locationId}/sites", "loc", "sites"),
    _Route("/sites/{siteId}", "site", None),
    _Route("/sites/{siteId}/rooms", "site", "rooms"),
    _Route("/sites/{siteId}/devices", "site", "site_devices"),
    _Route("/rooms/{roomId}/devices", "room", "room_devices"),
    _Route("/devices/{deviceId}", "dev", None),
)


def _route_key(segments: list[str]) -> tuple[str, int, str | None]:
    """What tells routes apart: first segment, segment count, last segment of three."""
    return segments[0], len(segments), segments[2] if len(segments) == 3 else None


_ROUTE_TABLE = {_route_key(r.template[1:].split("/")): r for r in ROUTES}
_ENTITY = {"loc": "location", "site": "site", "room": "room", "dev": "device"}


@cache
def _openapi() -> bytes:
    return files(__package__).joinpath("openapi.json").read_bytes()


def _ancestors(entity_id: str | None) -> Iterator[str]:
    """The root, then the id itself and the ids above it (derived from the id, not looked up).

    ``None`` (the ``/locations`` list) has only the root.
    """
    yield EVERY_RESOURCE
    if entity_id is None:
        return
    yield entity_id
    parts = entity_id.split("-")
    kind = parts[0]
    if kind in ("site", "room", "dev") and len(parts) >= 4:
        yield f"loc-{parts[1]}-{parts[2]}"
    if kind in ("room", "dev") and len(parts) >= 5:
        yield f"site-{parts[1]}-{parts[2]}-{parts[3]}"


def _page_params(query: bytes) -> tuple[int, int] | Response:
    offset, limit = 0, DEFAULT_LIMIT
    seen: set[str] = set()
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in ("offset", "limit"):
            continue
        if name in seen:
            return api_error(400, "invalid_parameter", f"{name} is given more than once")
        seen.add(name)
        if not _DIGITS.fullmatch(value):
            return api_error(400, "invalid_parameter", f"{name} must be a non-negative integer")
        if name == "offset":
            offset = int(value)
        else:
            limit = int(value)
            if not 1 <= limit <= MAX_LIMIT:
                return api_error(
                    400, "invalid_parameter", f"limit must be between 1 and {MAX_LIMIT}"
                )
    return offset, limit


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` past ``_MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: Response, *, drop: bool = False) -> None:
    headers = [(b"content-length", str(len(response.body)).encode()), *response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if drop:
        raise DroppedConnectionError("sandbox dropped the connection")
    await send({"type": "http.response.body", "body": response.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _token_answer_faults(answer: Response, faults: Faults) -> Response:
    raw, value = faults.token_expires_in_raw, faults.token_expires_in
    if raw is None and value is None and faults.token_type is None:
        return answer
    decoded = json.loads(answer.body)
    if faults.token_type is not None:
        decoded["token_type"] = faults.token_type
    if raw is not None or value is not None:
        decoded["expires_in"] = "\0raw" if raw is not None else value
    body = encode_json(decoded)
    if raw is not None:
        body = body.replace(b'"\\u0000raw"', raw.encode())
    return attrs.evolve(answer, body=body)


def _echo_token_request(answer: Response, body: bytes, authorization: str | None) -> Response:
    # What a careless server does: quote the request back in its error.
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    sent = [
        form[name]
        for name in ("refresh_token", "code", "code_verifier", "client_secret")
        if name in form
    ]
    if authorization:
        sent.append(authorization)
    error = json.loads(answer.body)
    error["error_description"] = f"{error.get('error_description', '')} (you sent: {sent})"
    return attrs.evolve(answer, body=encode_json(error))


def _json_object(body: bytes | None) -> dict[str, Any] | Response:
    if body is None:
        return api_error(413, "payload_too_large", "request body too large")
    try:
        value = json.loads(body) if body.strip() else {}
    except ValueError:
        return api_error(400, "invalid_json", "body is not JSON")
    if not isinstance(value, dict):
        return api_error(400, "invalid_json", "body must be a JSON object")
    return value


@attrs.frozen
class SandboxUrls:
    """Where a sandbox answers: give these to a client instead of the real URLs.

    .. versionadded:: 0.1.0
    """

    origin: str
    api_base_url: str
    authorize_url: str
    token_url: str

    @classmethod
    def for_origin(cls, origin: str) -> SandboxUrls:
        """The URLs of a sandbox served at ``origin`` (scheme, host and port)."""
        origin = origin.rstrip("/")
        return cls(origin, origin + API_PREFIX, origin + AUTHORIZE_PATH, origin + TOKEN_PATH)


def _faults(value: Faults | None) -> Faults:
    return Faults() if value is None else value


def _customers(value: Mapping[str, PortfolioSpec] | None) -> dict[str, PortfolioSpec]:
    return dict(value or {})


@attrs.define(eq=False, on_setattr=attrs.setters.frozen)
class Sandbox:
    """An emulator of the Wiser Energy Monitoring API and its OAuth2 server.

    Serve it in-process with :meth:`transport`, on loopback with
    :meth:`serve_in_thread`, or in another process with
    :class:`SandboxProcess`. The URL layout mirrors the real one, so a client
    only swaps the origin (see :meth:`urls`).

    Args:
        portfolio: The portfolio shape of every customer not in ``customers``.
        customers: Portfolio shapes of named customers (the ``login_hint`` of
            the authorization request, or the ``customer`` of :meth:`issue_token`).
        client_id: The one registered OAuth client.
        client_secret: Its secret (client_secret_basic or client_secret_post).
        redirect_uris: Allowed redirect URIs; ``None`` allows any
            ``http://127.0.0.1``, ``http://localhost`` or ``http://[::1]`` URI.
        access_token_lifetime: Seconds an access token lives.
        revoke_family_on_reuse: Whether replaying a rotated-away refresh token
            revokes every token descending from the same authorization.
        consent: ``"approve"``: the authorize endpoint consents at once;
            ``"deny"``: it redirects with ``error=access_denied``.
        issuer: When set, every authorization response carries it as ``iss``
            (RFC 9207).
        granted_scopes: When set, a grant holds only the requested scopes
            among these (a server granting less than asked); a refresh asking
            for more than the grant gets ``invalid_scope``.
        faults: The faults to inject; ``None`` for none. Mutable.

    Example::

        sandbox = Sandbox(PortfolioSpec(locations=2))
        token = sandbox.issue_token()
        async with httpx2.AsyncClient(transport=sandbox.transport()) as http:
            page = await http.get(
                sandbox.urls().api_base_url + "/locations",
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )

    .. versionadded:: 0.1.0
    """

    portfolio: PortfolioSpec = attrs.field(factory=PortfolioSpec)
    customers: dict[str, PortfolioSpec] = attrs.field(
        default=None, converter=_customers, kw_only=True
    )
    client_id: str = attrs.field(default="sandbox-client", kw_only=True)
    client_secret: str = attrs.field(default="sandbox-secret", kw_only=True, repr=False)
    redirect_uris: Sequence[str] | None = attrs.field(default=None, kw_only=True)
    access_token_lifetime: float = attrs.field(default=3600.0, kw_only=True)
    revoke_family_on_reuse: bool = attrs.field(default=True, kw_only=True)
    consent: Literal["approve", "deny"] = attrs.field(default="approve", kw_only=True)
    issuer: str | None = attrs.field(default=None, kw_only=True)
    granted_scopes: Sequence[str] | None = attrs.field(default=None, kw_only=True)
    # The only field that may be replaced after construction; the rest configure the servers.
    faults: Faults = attrs.field(
        default=None,
        converter=_faults,
        kw_only=True,
        on_setattr=[attrs.setters.convert, attrs.setters.validate],
    )
    _stats: StatsRecorder = attrs.field(init=False, factory=StatsRecorder, repr=False)
    _plan: FaultPlan = attrs.field(init=False, factory=FaultPlan, repr=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _portfolios: dict[str, Portfolio] = attrs.field(init=False, factory=dict, repr=False)
    _oauth: OAuthServer = attrs.field(init=False, repr=False)

    @_oauth.default
    def _make_oauth(self) -> OAuthServer:
        return OAuthServer(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uris=self.redirect_uris,
            access_token_lifetime=self.access_token_lifetime,
            revoke_family_on_reuse=self.revoke_family_on_reuse,
            consent=self.consent,
            issuer=self.issuer,
            granted_scopes=self.granted_scopes,
            stats=self._stats,
        )

    # -- public helpers -------------------------------------------------------

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The ASGI 3 application (``http`` and ``lifespan`` scopes)."""
        return self._asgi

    def transport(self) -> httpx2.ASGITransport:
        """An httpx2 transport that calls the app in-process, with no socket."""
        return httpx2.ASGITransport(app=self.app)

    def urls(self, origin: str = "http://sandbox.invalid") -> SandboxUrls:
        """The URLs of this sandbox served at ``origin``.

        The default origin suits :meth:`transport`, which ignores the host.
        """
        return SandboxUrls.for_origin(origin)

    @contextlib.contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[SandboxUrls]:
        """Serve over real HTTP with uvicorn in a daemon thread, until the block exits.

        Args:
            host: Address to bind.
            port: Port to bind; 0 picks a free one (the URLs give the real port).

        Yields:
            The URLs of the running server.

        Raises:
            RuntimeError: The server did not start.
            ImportError: uvicorn is missing (install ``wiser-async[sandbox]``).
        """
        from ._serve import serve_in_thread  # uvicorn is an optional extra

        with serve_in_thread(self, host, port) as urls:
            yield urls

    @property
    def stats(self) -> SandboxStats:
        """A snapshot of the counters."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters (requests in flight stay counted in ``in_flight``)."""
        self._stats.reset()

    def issue_token(
        self, customer: str = "default", *, lifetime: float | None = None
    ) -> dict[str, Any]:
        """Mint a grant without the browser flow.

        Args:
            customer: The customer the tokens act for.
            lifetime: Access-token lifetime in seconds, for this grant's
                refreshes too; ``None`` for ``access_token_lifetime``.

        Returns:
            The token response, as the token endpoint would send it.
        """
        return self._oauth.issue_token(customer, lifetime)

    def revoke_access_tokens(self, customer: str | None = None) -> int:
        """Invalidate live access tokens, as if the server had forgotten them.

        Refresh tokens stay valid, so a client that refreshes on 401 recovers.

        Args:
            customer: Only this customer's tokens; ``None`` for all.

        Returns:
            How many live access tokens were revoked.
        """
        return self._oauth.revoke_access_tokens(customer)

    def portfolio_for(self, customer: str = "default") -> Portfolio:
        """The ground truth of a customer's portfolio, as the API serves it."""
        portfolio = self._portfolios.get(customer)
        if portfolio is None:
            spec = self.customers.get(customer, self.portfolio)
            portfolio = self._portfolios.setdefault(customer, Portfolio(spec, customer))
        return portfolio

    # -- ASGI -----------------------------------------------------------------

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(API_PREFIX + "/"):
            segments = path[len(API_PREFIX) + 1 :].split("/")
            route = _ROUTE_TABLE.get(_route_key(segments))
            if route is not None:
                entity_id = segments[1] if len(segments) > 1 else None
                await self._api(scope, receive, send, method, route, entity_id)
                return
        elif path == TOKEN_PATH and method == "POST":
            await self._token(scope, receive, send)
            return
        elif path == AUTHORIZE_PATH and method == "GET":
            await _send(send, self._oauth.authorize(scope["query_string"].decode("latin-1")))
            return
        elif path == OPENAPI_PATH and method == "GET":
            await _send(send, Response(200, _openapi(), ((b"content-type", b"application/json"),)))
            return
        elif path.startswith(ADMIN_PREFIX):
            await _send(send, await self._admin(method, path[len(ADMIN_PREFIX) :], receive))
            return
        await _send(send, api_error(404, "not_found", "no such route"))

    async def _token(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        await anyio.sleep(faults.token_latency)
        body = await _read_body(receive)
        if body is None:
            error = {"error": "invalid_request", "error_description": "body too large"}
            await _send(send, json_response(413, error))
            return
        authorization = _header(scope, b"authorization")
        answer = self._oauth.token(body, authorization)
        if answer.status >= 400 and faults.echo_secrets:
            answer = _echo_token_request(answer, body, authorization)
        elif answer.status == 200:
            answer = _token_answer_faults(answer, faults)
        # The server has acted (a code spent, a refresh token rotated) before this.
        await anyio.sleep(faults.token_answer_delay)
        with self._lock:
            drop = faults.token_answer_drops > 0
            if drop:
                faults.token_answer_drops -= 1
        await _send(send, answer, drop=drop)

    async def _api(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        route: _Route,
        entity_id: str | None,
    ) -> None:
        self._stats.request_started(route.template)
        recorded = False
        try:
            faults = self.faults
            if faults.latency:
                with self._lock:
                    delay = self._plan.latency(faults)
                await anyio.sleep(delay)
            chain = frozenset(_ancestors(entity_id))
            response, drop = self._answer(scope, method, faults, route, entity_id, chain)
            if faults.echo_secrets:
                response = hostile.echo_authorization(
                    response, _header(scope, b"authorization") or ""
                )
            # Counted before it is sent: a client that has the answer finds
            # it in the counters already (tests read them right after).
            self._stats.request_finished(None if drop else response.status, dropped=drop)
            recorded = True
            if chain & faults.trickle and not drop:
                interval = faults.trickle_interval
                await hostile.trickle(send, receive, response, interval, self._stats)
            else:
                await _send(send, response, drop=drop)
        finally:
            if not recorded:
                self._stats.request_finished(None, dropped=False)

    def _answer(
        self,
        scope: Scope,
        method: str,
        faults: Faults,
        route: _Route,
        entity_id: str | None,
        chain: frozenset[str],
    ) -> tuple[Response, bool]:
        """The answer to an API request, and whether to drop it mid-body."""
        if method != "GET":
            return api_error(405, "method_not_allowed", "only GET", ((b"allow", b"GET"),)), False
        authorization = _header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        customer = self._oauth.customer_for(token.strip()) if scheme.lower() == "bearer" else None
        if customer is None:
            message = "access token missing, expired or revoked"
            return api_error(401, "invalid_token", message, _UNAUTHORIZED), False
        plan = self._plan
        with self._lock:
            retry_after = plan.throttle(faults)
            error_status = None if retry_after else plan.error_status(faults)
            drop = plan.drop(faults)
        if retry_after is not None:
            headers = ((b"retry-after", retry_after.encode()),)
            return api_error(429, "rate_limited", "too many requests", headers), drop
        if error_status is not None:
            return hostile.server_error(error_status), drop
        if chain & faults.long_retry_after:
            return hostile.long_retry_after(faults), drop
        if chain & faults.redirects:
            return hostile.redirect(faults), drop
        return self._resource(scope, faults, customer, route, entity_id, chain), drop

    def _resource(
        self,
        scope: Scope,
        faults: Faults,
        customer: str,
        route: _Route,
        entity_id: str | None,
        chain: frozenset[str],
    ) -> Response:
        if chain & faults.forbidden:
            return api_error(
                403, "consent_required", "the customer gave no consent for this resource"
            )
        if chain & faults.missing:
            return api_error(404, "not_found", f"{route.template} not found")
        portfolio = self.portfolio_for(customer)
        not_found = f"{_ENTITY.get(route.kind or '', 'resource')} not found"
        if route.collection is None:
            entity = portfolio.entity(route.kind or "", entity_id or "")
            if entity is None:
                return api_error(404, "not_found", not_found)
            response = hostile.entity_answer(entity, faults, chain)
        else:
            params = _page_params(scope["query_string"])
            if isinstance(params, Response):
                return params
            offset, limit = params
            try:
                total = portfolio.count(route.collection, entity_id)
            except KeyError:
                return api_error(404, "not_found", not_found)
            data = list(portfolio.page(route.collection, entity_id, offset, limit))
            meta: dict[str, int] = {"offset": offset, "limit": limit}
            if not faults.omit_total:
                meta["total"] = total
            response = hostile.page_answer(data, meta, faults, chain)
        if chain & faults.malformed:
            return attrs.evolve(response, body=response.body[: len(response.body) // 2])
        return response

    async def _admin(self, method: str, action: str, receive: Receive) -> Response:
        if (method, action) == ("GET", "stats"):
            return json_response(200, self.stats.to_json())
        if (method, action) == ("POST", "reset-stats"):
            self.reset_stats()
            return Response(204)
        if (method, action) not in (
            ("PATCH", "faults"),
            ("POST", "tokens"),
            ("POST", "revoke-access-tokens"),
        ):
            return api_error(404, "not_found", "no such admin route")
        body = _json_object(await _read_body(receive))
        if isinstance(body, Response):
            return body
        try:
            return self._admin_write(action, body)
        except ValueError as exc:
            return api_error(400, "invalid_request", str(exc))

    def _admin_write(self, action: str, body: dict[str, Any]) -> Response:
        if action == "faults":
            with self._lock:
                self.faults.update(body)
            return json_response(200, self.faults.to_json())
        customer = body.get("customer")
        if customer is not None and not isinstance(customer, str):
            raise ValueError("customer must be a string")
        if action == "revoke-access-tokens":
            return json_response(200, {"revoked": self.revoke_access_tokens(customer)})
        lifetime = body.get("lifetime")
        if lifetime is not None and not isinstance(lifetime, int | float):
            raise ValueError("lifetime must be a number")
        return json_response(200, self.issue_token(customer or "default", lifetime=lifetime))
