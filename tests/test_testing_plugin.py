"""The test kit (`wiser_async.testing`): users' test files run through pytester.

Each test writes a small test module as a user of wiser-async would, with a
project configuration of its own (strict markers, warnings as errors), and runs
pytest on it: in this process for speed, or in a fresh one where what is
imported or left running matters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# A user's project: its own configuration (so ours, with its `-n 4`, is not read),
# strict about markers (the plugin registers its own) and warnings.
USER_INI = "[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n"
# Nothing left in the user's directory. An in-process run stays under this test's own
# timeout (a timeout of its own would replace that alarm); a subprocess is given one.
USER_ARGS = ("-p", "no:cacheprovider", "-p", "no:xdist")

BOTH_BACKENDS = """
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


def run_user_tests(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini(USER_INI)
    return pytester.runpytest_inprocess(*USER_ARGS, *args)


def test_a_user_test_lists_devices_through_wiser_client_on_asyncio_and_trio(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_devices=BOTH_BACKENDS
        + """
import sniffio


async def test_lists_the_devices_of_a_site(wiser_client, wiser_sandbox, anyio_backend):
    assert sniffio.current_async_library() == anyio_backend
    truth = wiser_sandbox.portfolio_for("acme")
    locations = await wiser_client.locations.list()
    sites = await wiser_client.sites.list(locations[0].id)
    devices = await wiser_client.devices.of_site(sites[0].id).list()
    assert [location.id for location in locations] == [l["id"] for l in truth.locations()]
    assert [device.id for device in devices] == [
        d["id"] for d in truth.site_devices(sites[0].id)
    ]
    assert len(devices) == 12
    assert wiser_sandbox.stats.requests == 3
"""
    )
    result = run_user_tests(pytester, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_lists_the_devices_of_a_site?asyncio? PASSED*",
            "*test_lists_the_devices_of_a_site?trio? PASSED*",
        ]
    )


def test_the_served_sandbox_urls_work_with_a_plain_oauth_and_client(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_served=BOTH_BACKENDS
        + """
import httpx2

from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth


async def test_logs_in_and_reads_over_loopback(wiser_sandbox_server, wiser_sandbox):
    server = wiser_sandbox_server
    assert server.base_url.startswith("http://127.0.0.1:")
    async with WiserOAuth(
        client_id=server.client_id,
        client_secret=server.client_secret,
        redirect_uri="http://127.0.0.1:8000/callback",
        authorize_url=server.authorize_url,
        token_url=server.token_url,
    ) as oauth:
        request = oauth.authorization_request(login_hint="acme")
        async with httpx2.AsyncClient() as browser:  # real HTTP, no in-process transport
            consented = await browser.get(request.url)
        await oauth.complete_authorization("acme", consented.headers["location"], request)
        config = ApiConfig(base_url=server.base_url)
        async with AsyncWiserClient(oauth, "acme", config=config) as client:
            locations = await client.locations.list()
    assert len(locations) == wiser_sandbox.portfolio_for("acme").n_locations
    assert wiser_sandbox.stats.token_requests == {"authorization_code": 1}
"""
    )
    run_user_tests(pytester).assert_outcomes(passed=2)


def test_a_users_portfolio_options_and_markers_are_honoured(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from wiser_async.sandbox import PortfolioSpec


@pytest.fixture
def wiser_portfolio():
    return PortfolioSpec(locations=2, sites_per_location=1, devices_per_site=5)
"""
    )
    pytester.makepyfile(
        test_configured="""
import pytest

from wiser_async import RetryPolicy
from wiser_async.errors import AuthorizationDenied, Forbidden, RateLimited
from wiser_async.sandbox import Faults, PortfolioSpec

pytestmark = pytest.mark.anyio
SHARED = Faults()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def wiser_sandbox_options():
    return {"customers": {"globex": PortfolioSpec(locations=1)}}


async def test_the_conftest_portfolio_shapes_the_sandbox(wiser_client):
    locations = await wiser_client.locations.list()
    (site,) = await wiser_client.sites.list(locations[0].id)
    assert len(locations) == 2
    assert len(await wiser_client.devices.of_site(site.id).list()) == 5


async def test_another_account_reads_its_own_customer(wiser_client, wiser_authorize):
    await wiser_authorize("globex")
    assert len(await wiser_client.for_account("globex").locations.list()) == 1


@pytest.mark.wiser_sandbox(portfolio=PortfolioSpec(locations=4), faults=SHARED)
async def test_a_marker_goes_over_the_fixtures(wiser_client, wiser_sandbox):
    assert len(await wiser_client.locations.list()) == 4
    wiser_sandbox.faults.error_rate = 1.0  # this test's copy only


@pytest.mark.wiser_sandbox(faults=SHARED)
async def test_each_test_gets_its_own_copy_of_the_options(wiser_sandbox):
    assert SHARED.error_rate == 0.0 and wiser_sandbox.faults.error_rate == 0.0


@pytest.mark.wiser_sandbox(faults=Faults(forbidden={"*"}))
async def test_a_fault_reaches_the_client(wiser_client):
    with pytest.raises(Forbidden):
        await wiser_client.locations.list()


@pytest.mark.wiser_sandbox(consent="deny")
async def test_a_refused_consent_reaches_the_oauth_flow(wiser_oauth, wiser_consent):
    request = wiser_oauth.authorization_request(login_hint="acme")
    callback = await wiser_consent(request.url)
    with pytest.raises(AuthorizationDenied):
        await wiser_oauth.complete_authorization("acme", callback, request)


@pytest.mark.wiser_sandbox(issuer="https://id.example/", redirect_uris=["https://app.example/cb"])
async def test_the_oauth_fixture_follows_the_sandbox(wiser_oauth, wiser_consent):
    assert (wiser_oauth.issuer, wiser_oauth.redirect_uri) == (
        "https://id.example/", "https://app.example/cb"
    )
    request = wiser_oauth.authorization_request(login_hint="acme")
    await wiser_oauth.complete_authorization("acme", await wiser_consent(request.url), request)


@pytest.mark.wiser_sandbox(PortfolioSpec())
def test_a_positional_marker_argument_is_refused(wiser_sandbox):
    pass


class TestGlobexWithoutRetries:
    @pytest.fixture
    def wiser_account(self):
        return "globex"

    @pytest.fixture
    def wiser_client_options(self):
        return {"retry": RetryPolicy(attempts=1)}

    async def test_the_account_fixture_picks_the_customer(self, wiser_client):
        assert len(await wiser_client.locations.list()) == 1

    @pytest.mark.wiser_sandbox(faults=Faults(throttle_rate=1.0, retry_after=30))
    async def test_client_options_reach_the_client(self, wiser_client):
        with pytest.raises(RateLimited) as caught:
            await wiser_client.locations.list()
        assert caught.value.retry_after == 30
"""
    )
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=9, errors=1)
    result.stdout.fnmatch_lines(
        ["*TypeError: the wiser_sandbox marker takes keyword arguments only"]
    )


def test_a_user_assertion_that_is_false_fails_and_shows_no_client_secret(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_false=BOTH_BACKENDS
        + """
from pathlib import Path


async def test_counts_too_many_locations(wiser_client):
    assert len(await wiser_client.locations.list()) == 99


def test_a_served_url_it_does_not_have(wiser_sandbox_server):
    server = wiser_sandbox_server
    secret = server.client_secret
    Path("secret.txt").write_text(secret)
    assert server.base_url.endswith("/nowhere")
"""
    )
    result = run_user_tests(pytester, "--showlocals")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*assert 3 == 99*", "secret *= '[*][*][*]'"])
    secret = (pytester.path / "secret.txt").read_text()
    assert len(secret) >= 16
    assert secret not in result.stdout.str() + result.stderr.str()


def test_the_served_fixture_says_which_extra_it_needs_and_in_process_ones_need_none(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    pytester.makepyfile(
        test_no_uvicorn="""
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_in_process(wiser_client):
    assert await wiser_client.locations.list()


def test_served(wiser_sandbox_server):
    pass
"""
    )
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=1, errors=1)
    needs = (
        "*the wiser_sandbox_server fixture needs uvicorn*: pip install 'wiser-async[[]testing[]]'"
    )
    result.stdout.fnmatch_lines([needs])


# What a test file that uses none of the fixtures can see of the process.
PROBE = """
import json
import logging
import os
import sys
import threading
import warnings

import wiser_async  # a user of the library, not of its test kit


def test_probe():
    loggers = {
        name: [len(logger.handlers), len(logger.filters), logger.level]
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    state = {
        "modules": sorted(sys.modules),
        "threads": sorted(thread.name for thread in threading.enumerate()),
        "loggers": loggers,
        "root": [len(logging.root.handlers), len(logging.root.filters), logging.root.level],
        "warnings": len(warnings.filters),
        "environ": sorted(os.environ),
    }
    with open(os.environ["PROBE_OUTPUT"], "w") as output:
        json.dump(state, output)
"""


def test_a_test_file_that_uses_no_fixture_runs_as_without_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_probe=PROBE)
    states = {}
    for name, extra in (("with", ()), ("without", ("-p", "no:wiser_async"))):
        monkeypatch.setenv("PROBE_OUTPUT", str(pytester.path / f"{name}.json"))
        pytester.runpytest_subprocess(*USER_ARGS, *extra, timeout=60).assert_outcomes(passed=1)
        states[name] = json.loads((pytester.path / f"{name}.json").read_text())
    with_plugin, without = states["with"], states["without"]
    added = set(with_plugin.pop("modules")) - set(without.pop("modules"))
    assert "wiser_async.testing" in added  # the plugin was loaded
    assert {name.split(".")[0] for name in added - {"wiser_async.testing"}} <= (
        sys.stdlib_module_names
    )
    assert with_plugin == without


def test_importing_the_plugin_imports_no_server_or_extra() -> None:
    heavy = ["uvicorn", "fastapi", "starlette", "redis", "aiohttp", "click", "rich", "trio"]
    heavy += ["cryptography", "opentelemetry", "wiser_async.sandbox"]
    code = (
        "import sys, wiser_async.testing\n"
        f"print([name for name in {heavy!r} if name in sys.modules])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "[]"
