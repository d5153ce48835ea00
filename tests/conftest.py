"""Shared fixtures: every async test runs on asyncio and on trio.

Integration tests talk real HTTP over loopback to one sandbox served from a
thread for the whole session; the `sandbox` fixture resets its faults and
counters before each test. Modules of HTTP tests also run on each HTTP stack
(`http_stack`): httpx2's own transport and `AiohttpTransport`.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
from collections.abc import Iterator

import pytest

from tests import support
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox, SandboxUrls

# Small enough to read fast, large enough that every collection spans pages
# at the page sizes the tests use.
SPEC = PortfolioSpec(
    seed=7,
    locations=3,
    sites_per_location=4,
    rooms_per_site=3,
    devices_per_site=12,
    unassigned_devices_per_site=2,
)


class _NotSlowCallbacks(logging.Filter):
    """Drops asyncio debug mode's "Executing <callback> took 0.2 seconds" records.

    They say how busy the machine is, not what the code does; the rest of
    debug mode (a coroutine never awaited, a call from the wrong thread, a
    transport left open) still fails the tests.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Executing "))


logging.getLogger("asyncio").addFilter(_NotSlowCallbacks())

# A suite started in the background by a non-interactive shell (`make test &`,
# nohup, some CI runners) inherits SIGINT ignored, and so would every child
# process the Ctrl-C tests interrupt: they would exit 0 instead of 130.
# Python's own handler here means children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Run each async test once per event loop the library supports.

    asyncio runs in debug mode: a coroutine never awaited, a callback from the
    wrong thread or a transport left open fails the test (warnings are errors).
    """
    return request.param


@pytest.fixture(scope="session")
def served_sandbox() -> Iterator[tuple[Sandbox, SandboxUrls]]:
    sandbox = Sandbox(SPEC)
    with sandbox.serve_in_thread() as urls:
        yield sandbox, urls


@pytest.fixture
def sandbox(served_sandbox: tuple[Sandbox, SandboxUrls]) -> Sandbox:
    """The session's loopback sandbox, with no faults and zeroed counters."""
    sandbox, _ = served_sandbox
    sandbox.faults = Faults()
    sandbox.reset_stats()
    return sandbox


@pytest.fixture
def urls(served_sandbox: tuple[Sandbox, SandboxUrls]) -> SandboxUrls:
    """Where the session's sandbox listens."""
    return served_sandbox[1]


# -- HTTP stacks ----------------------------------------------------------------------
# A module of HTTP tests opts in with ``pytestmark = pytest.mark.usefixtures("http_stack")``:
# each of its tests then runs on httpx2's own transport and on AiohttpTransport,
# which `support.make_client` (and `support.stack_transport()`) give the
# clients. aiohttp runs on asyncio only: its variants are deselected on trio,
# for sync tests (they send nothing through a client) and for tests marked
# ``httpx2_only`` (an httpx2 client or MockTransport of their own).


@pytest.fixture(params=["httpx2", pytest.param("aiohttp", marks=pytest.mark.asyncio_only)])
def http_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP stack the test's clients send through, by name."""
    name: str = request.param
    monkeypatch.setattr(support, "HTTP_STACK", name)
    return name


# -- Redis ----------------------------------------------------------------------------
# redis-py's asyncio client does not run on trio: tests that use Redis run on
# asyncio only (their trio variants are deselected, not skipped). Without a
# reachable Redis they skip, unless WISER_REQUIRE_REDIS=1 (as in CI) makes
# that a failure.

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("anyio_backend") if params is not None else None
        uses_redis = "redis_url" in getattr(item, "fixturenames", ()) or (
            params is not None and "redis" in params.params.values()
        )
        if uses_redis:
            item.add_marker(pytest.mark.redis)
        on_aiohttp = params is not None and params.params.get("http_stack") == "aiohttp"
        sync = not inspect.iscoroutinefunction(getattr(item, "function", None))
        if (backend == "trio" and (uses_redis or item.get_closest_marker("asyncio_only"))) or (
            on_aiohttp and (sync or item.get_closest_marker("httpx2_only"))
        ):
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a Redis the tests may use (keys under unique prefixes)."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        if os.environ.get("WISER_REQUIRE_REDIS") == "1":
            pytest.fail(f"WISER_REQUIRE_REDIS=1 but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL
