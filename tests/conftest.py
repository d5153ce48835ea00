"""Shared fixtures: every async test runs on asyncio and on trio.

Integration tests talk real HTTP over loopback to one sandbox served from a
thread for the whole session; the `sandbox` fixture resets its faults and
counters before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per event loop the library supports."""
    return str(request.param)


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
