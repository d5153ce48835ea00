"""The :class:`Sandbox`: the ASGI app that plays the API and its OAuth server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import httpx2

from ._api_routes import API_PREFIX, ROUTES
from ._asgi import Backend, Receive, Scope, Send
from ._faults import FaultPlan, Faults
from ._oauth import OAuthServer
from ._oauth_routes import AUTHORIZE_PATH, TOKEN_PATH
from ._portfolio import Portfolio, PortfolioSpec
from ._router import dispatch
from ._stats import SandboxStats, StatsRecorder

__all__ = ["API_PREFIX", "AUTHORIZE_PATH", "ROUTES", "TOKEN_PATH", "Sandbox", "SandboxUrls"]


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
    _backend: Backend = attrs.field(init=False, repr=False)

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

    @_backend.default
    def _make_backend(self) -> Backend:
        return Backend(self, self._oauth, self._stats, self._plan, self._lock)

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
        await dispatch(self._backend, scope, receive, send)
