"""A pytest plugin for testing code that uses wiser-async: a sandbox, a client authorized on it.

Installed with wiser-async, the plugin is loaded by every pytest run (a ``pytest11``
entry point) and does nothing until a test asks for one of its fixtures: until
then it imports no server, starts nothing and changes no setting. The
fixtures need ``pip install 'wiser-async[testing]'`` (pytest, and uvicorn for
the served sandbox). Every fixture is function-scoped: each test gets a fresh
sandbox, with its own tokens, faults and counters.

The async fixtures run on asyncio and trio through the anyio pytest plugin: mark
the test ``@pytest.mark.anyio`` and choose the event loops with an
``anyio_backend`` fixture (``params=["asyncio", "trio"]`` for both).

Fixtures:

- `wiser_sandbox`: the in-process `Sandbox` (no socket), configured by
  `wiser_portfolio`, `wiser_sandbox_options` and the ``wiser_sandbox`` marker.
- `wiser_client`: an `AsyncWiserClient` of account `wiser_account` (``"acme"``),
  authorized on `wiser_sandbox`; configured by `wiser_client_options`.
- `wiser_oauth`: the `WiserOAuth` behind `wiser_client`, keeping its tokens in
  `wiser_token_store`.
- `wiser_authorize`: stores a sandbox grant for another account (`Authorize`).
- `wiser_consent`: plays the customer consenting to an authorization URL (`Consent`).
- `wiser_sandbox_server`: `wiser_sandbox` served on a loopback port, for code
  that needs URLs (`SandboxServer`).

Configure the sandbox by overriding `wiser_portfolio` or `wiser_sandbox_options`
in a ``conftest.py`` or a test module, or per test with the marker, whose keyword
arguments are those of `Sandbox` (the closest marker wins):

    @pytest.mark.wiser_sandbox(faults=Faults(forbidden={"*"}), consent="deny")

The sandbox's client secret is drawn at random for each test unless the options
set one; `repr` shows it as ``'***'``, so it does not appear in a failure's report.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import httpx2
import pytest

from token_stores import MemoryTokenStore, Token, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth

if TYPE_CHECKING:  # the sandbox is imported when a fixture first needs it
    from wiser_async.sandbox import PortfolioSpec, Sandbox, SandboxUrls

__all__ = [
    "DEFAULT_ACCOUNT",
    "FAST_RETRY",
    "REDIRECT_URI",
    "Authorize",
    "Consent",
    "SandboxServer",
    "wiser_account",
    "wiser_authorize",
    "wiser_client",
    "wiser_client_options",
    "wiser_consent",
    "wiser_oauth",
    "wiser_portfolio",
    "wiser_sandbox",
    "wiser_sandbox_options",
    "wiser_sandbox_server",
    "wiser_token_store",
]

DEFAULT_ACCOUNT = "acme"
"""The account key (and sandbox customer) of `wiser_client`, unless `wiser_account` differs."""

REDIRECT_URI = "http://127.0.0.1:8765/callback"
"""The redirect URI of `wiser_oauth` (the sandbox accepts any loopback one)."""

FAST_RETRY = RetryPolicy(wait_initial=0.001, wait_max=0.01, wait_jitter=0.0)
"""The retry policy of `wiser_client`: the library's, without its backoff waits.

A 429's ``Retry-After`` still pauses the client, up to ``max_retry_after``.
"""

_MARKER = "wiser_sandbox"


class _HiddenStr(str):
    """A secret string whose `repr` hides it (in failure reports and ``--showlocals``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class Authorize(Protocol):
    """The helper `wiser_authorize` gives: a grant for an account, as if its customer consented.

    ``await wiser_authorize(account, customer=None, lifetime=None)`` mints a
    grant in `wiser_sandbox` for the sandbox customer ``customer`` (``None``:
    the one named like ``account``), whose access token lives ``lifetime``
    seconds (``None``: the sandbox's ``access_token_lifetime``), saves it in
    `wiser_token_store` under ``account`` and returns the `Token` (its `repr`
    hides its secrets).
    """

    async def __call__(
        self, account: str, *, customer: str | None = None, lifetime: float | None = None
    ) -> Token: ...


class Consent(Protocol):
    """The helper `wiser_consent` gives: the customer's browser on an authorization URL.

    ``await wiser_consent(authorization_url)`` opens the ``url`` of an
    `AuthorizationRequest` made for `wiser_sandbox` (served or in-process) and
    returns the callback URL the sandbox redirects to: with a ``code``, or
    with ``error=access_denied`` when the sandbox's ``consent`` is ``"deny"``
    (other errors come back in the callback URL too, as RFC 6749 says). It
    raises `AssertionError` when the sandbox answers with no redirect: an
    unknown ``client_id``, or a ``redirect_uri`` it does not allow.
    """

    async def __call__(self, authorization_url: str) -> str: ...


@attrs.frozen
class SandboxServer:
    """`wiser_sandbox` served over loopback HTTP: what `wiser_sandbox_server` gives.

    Attributes:
        sandbox: The sandbox it serves (the test's `wiser_sandbox`).
        urls: Where it listens.
    """

    sandbox: Sandbox = attrs.field(repr=False)
    urls: SandboxUrls

    @property
    def origin(self) -> str:
        """Scheme, host and port, such as ``http://127.0.0.1:40123``."""
        return self.urls.origin

    @property
    def base_url(self) -> str:
        """The API root: ``ApiConfig(base_url=...)``."""
        return self.urls.api_base_url

    @property
    def authorize_url(self) -> str:
        """The OAuth authorize endpoint: ``WiserOAuth(authorize_url=...)``."""
        return self.urls.authorize_url

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint: ``WiserOAuth(token_url=...)``."""
        return self.urls.token_url

    @property
    def client_id(self) -> str:
        """The OAuth client the sandbox knows."""
        return self.sandbox.client_id

    @property
    def client_secret(self) -> str:
        """That client's secret (random for each test unless the options set one)."""
        return self.sandbox.client_secret


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``wiser_sandbox`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): keyword arguments of the wiser_async.sandbox.Sandbox "
        "the wiser_* fixtures use (see wiser_async.testing)",
    )


@pytest.fixture
def wiser_portfolio() -> PortfolioSpec:
    """The portfolio shape of `wiser_sandbox`'s customers: override it to change them.

    The default is ``PortfolioSpec()``: 3 locations of 4 sites, each with 3 rooms
    and 12 devices. Customers named in the ``customers`` option keep their own.

    Returns:
        The `PortfolioSpec` of every customer not in ``customers``.
    """
    from wiser_async.sandbox import PortfolioSpec

    return PortfolioSpec()


@pytest.fixture
def wiser_sandbox_options() -> dict[str, Any]:
    """Keyword arguments of `wiser_sandbox`'s `Sandbox`: override it to set them.

    For example ``{"customers": {"globex": PortfolioSpec(locations=1)},
    "faults": Faults(latency=0.01)}``. The ``wiser_sandbox`` marker's
    arguments go over these.

    Returns:
        Nothing by default: the sandbox's defaults.
    """
    return {}


@pytest.fixture
def wiser_sandbox(
    request: pytest.FixtureRequest,
    wiser_portfolio: PortfolioSpec,
    wiser_sandbox_options: dict[str, Any],
) -> Sandbox:
    """The test's sandbox, in-process: the API and its OAuth server, with no socket.

    Built from `wiser_portfolio`, then `wiser_sandbox_options`, then the
    ``wiser_sandbox`` markers from the farthest (module, class) to the
    closest (the test). Each test gets its own copy of those options, so
    changing ``wiser_sandbox.faults`` during a test affects that test only.
    Use ``wiser_sandbox.transport()`` and ``wiser_sandbox.urls()`` to point a
    client of your own at it, ``wiser_sandbox.portfolio_for(customer)`` for the
    ground truth and ``wiser_sandbox.stats`` for its counters.

    Returns:
        A `Sandbox`.
    """
    from wiser_async.sandbox import Sandbox

    options: dict[str, Any] = {
        "portfolio": wiser_portfolio,
        "client_secret": _HiddenStr(secrets.token_urlsafe(16)),
        **wiser_sandbox_options,
    }
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise TypeError(f"the {_MARKER} marker takes keyword arguments only")
        options.update(marker.kwargs)
    return Sandbox(**copy.deepcopy(options))


@pytest.fixture
def wiser_sandbox_server(wiser_sandbox: Sandbox) -> Iterator[SandboxServer]:
    """`wiser_sandbox` served over HTTP on a free loopback port, until the test ends.

    For code that needs URLs: give it ``base_url``, ``authorize_url``,
    ``token_url``, ``client_id`` and ``client_secret``. The same sandbox also
    answers in-process, so the other fixtures see the same tokens, faults
    and counters. Needs uvicorn (the ``testing`` or ``sandbox`` extra).

    Yields:
        A `SandboxServer`.
    """
    try:
        import uvicorn  # noqa: F401 - checked here to name the extra that brings it
    except ModuleNotFoundError as exc:
        from wiser_async._extras import extra_missing

        raise extra_missing("the wiser_sandbox_server fixture", "testing", exc) from exc
    with wiser_sandbox.serve_in_thread() as urls:
        yield SandboxServer(wiser_sandbox, urls)


@pytest.fixture
def wiser_token_store() -> TokenStore:
    """Where `wiser_oauth` keeps tokens: override it to test with a store of yours.

    Returns:
        A new `MemoryTokenStore`.
    """
    return MemoryTokenStore()


@pytest.fixture
def wiser_account() -> str:
    """The account key of `wiser_client`, also its sandbox customer: override it to change it.

    Returns:
        `DEFAULT_ACCOUNT` (``"acme"``).
    """
    return DEFAULT_ACCOUNT


@pytest.fixture
def wiser_authorize(wiser_sandbox: Sandbox, wiser_token_store: TokenStore) -> Authorize:
    """A helper storing a grant for an account, as if its customer had just consented.

    ``await wiser_authorize("globex")`` mints tokens in `wiser_sandbox` (with
    no browser flow) and saves them in `wiser_token_store`; then
    ``wiser_client.for_account("globex")`` reads that customer's portfolio.

    Returns:
        An `Authorize`.
    """

    async def authorize(
        account: str, *, customer: str | None = None, lifetime: float | None = None
    ) -> Token:
        answer = wiser_sandbox.issue_token(customer or account, lifetime=lifetime)
        token = Token.from_response(answer)
        await wiser_token_store.save(account, token)
        return token

    return authorize


@pytest.fixture
def wiser_consent(wiser_sandbox: Sandbox) -> Consent:
    """A helper playing the customer's browser on an authorization URL of the sandbox.

    For tests of a login flow: give it the URL your code sends the user to,
    then hand the callback URL it returns to your callback route (or to
    ``WiserOAuth.complete_authorization``).

    Returns:
        A `Consent`.
    """

    async def consent(authorization_url: str) -> str:
        # In-process: the sandbox ignores the host, so a served URL works as well.
        async with httpx2.AsyncClient(transport=wiser_sandbox.transport()) as browser:
            response = await browser.get(authorization_url)
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            raise AssertionError(
                f"the sandbox refused the authorization request: HTTP {response.status_code}"
                f" {response.text[:500]}"
            )
        return str(location)

    return consent


@pytest.fixture
async def wiser_oauth(
    wiser_sandbox: Sandbox, wiser_token_store: TokenStore
) -> AsyncIterator[WiserOAuth]:
    """A `WiserOAuth` of `wiser_sandbox`'s client, keeping tokens in `wiser_token_store`.

    It reaches the sandbox in-process, checks its ``issuer`` when one is set,
    and redirects to the first of the sandbox's ``redirect_uris`` or else to
    `REDIRECT_URI`. Closed when the test ends.

    Yields:
        A `WiserOAuth`.
    """
    urls = wiser_sandbox.urls()
    redirect_uris = wiser_sandbox.redirect_uris
    async with WiserOAuth(
        client_id=wiser_sandbox.client_id,
        client_secret=wiser_sandbox.client_secret,
        redirect_uri=redirect_uris[0] if redirect_uris else REDIRECT_URI,
        store=wiser_token_store,
        authorize_url=urls.authorize_url,
        token_url=urls.token_url,
        issuer=wiser_sandbox.issuer,
        transport=wiser_sandbox.transport(),
    ) as oauth:
        yield oauth


@pytest.fixture
def wiser_client_options() -> dict[str, Any]:
    """Keyword arguments of `wiser_client`'s `AsyncWiserClient`: override it to set them.

    For example ``{"retry": RetryPolicy(attempts=1), "on_event": events.append}``.
    Unless given, ``retry`` is `FAST_RETRY` and ``transport`` the sandbox's
    in-process one; a ``config``'s ``base_url`` is replaced by the sandbox's.

    Returns:
        Nothing by default.
    """
    return {}


@pytest.fixture
async def wiser_client(
    wiser_sandbox: Sandbox,
    wiser_oauth: WiserOAuth,
    wiser_authorize: Authorize,
    wiser_account: str,
    wiser_client_options: dict[str, Any],
) -> AsyncIterator[AsyncWiserClient]:
    """An `AsyncWiserClient` of `wiser_account`, already authorized on `wiser_sandbox`.

    A fresh grant of the customer named like the account is stored first
    (`wiser_authorize`); the client reads that customer's portfolio
    in-process through `wiser_oauth`, and is closed when the test ends.
    ``wiser_client.for_account(other)`` gives a client of another account.

    Yields:
        An `AsyncWiserClient`.
    """
    await wiser_authorize(wiser_account)
    options = {"retry": FAST_RETRY, **wiser_client_options}
    if "transport" not in options and "http_client" not in options:
        options["transport"] = wiser_sandbox.transport()
    config: ApiConfig = options.get("config") or ApiConfig()
    options["config"] = attrs.evolve(config, base_url=wiser_sandbox.urls().api_base_url)
    async with AsyncWiserClient(wiser_oauth, wiser_account, **options) as client:
        yield client
