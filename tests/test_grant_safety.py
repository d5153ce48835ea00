"""Tokens the server issued are never dropped, and the flow follows the RFCs.

Against the sandbox over loopback HTTP; `test_independent_server.py` runs the
fault matrix against an authorization server built on authlib as well.
"""

from __future__ import annotations

import base64
import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

import token_stores
from tests.support import (
    CLIENT_ID,
    FlakyStore,
    assert_no_secret,
    consent,
    issue,
    make_client,
    make_oauth,
    secrets_of,
    wait_until,
)
from token_stores import MemoryTokenStore, Token
from wiser_async import WiserOAuth
from wiser_async._token_endpoint import basic_credentials
from wiser_async.errors import (
    AuthorizationReplayed,
    IssuerMismatch,
    StoreError,
    StoreUnavailable,
    TokenEndpointError,
    WiserError,
)
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")


@pytest.fixture
def own_sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, SandboxUrls]]:
    """A sandbox of the test's own, configured by ``@pytest.mark.parametrize``-free kwargs."""
    options: dict[str, Any] = getattr(request, "param", {})
    sandbox = Sandbox(**options)
    with sandbox.serve_in_thread() as urls:
        yield sandbox, urls


# -- odd token answers ----------------------------------------------------------------

ODD_EXPIRES_IN = [
    pytest.param({"token_expires_in": "3600.5"}, 3600.5, id="numeric-string"),
    pytest.param({"token_expires_in": 1800.25}, 1800.25, id="float"),
    pytest.param({"token_expires_in": "soon"}, 3600.0, id="word"),
    pytest.param({"token_expires_in": [3600]}, 3600.0, id="list"),
    pytest.param({"token_expires_in": {}}, 3600.0, id="object"),
    pytest.param({"token_expires_in_raw": "1e400"}, 3600.0, id="1e400"),
    pytest.param({"token_expires_in_raw": "9" * 400}, 3600.0, id="huge-integer"),
    pytest.param({"token_expires_in": 0}, 3600.0, id="zero"),
    pytest.param({"token_expires_in": -5}, 3600.0, id="negative"),
    pytest.param({"token_expires_in": True}, 3600.0, id="boolean"),
]


@pytest.mark.parametrize(("fault", "lifetime"), ODD_EXPIRES_IN)
async def test_odd_expires_in_keeps_the_rotated_tokens_and_uses_the_default_lifetime(
    sandbox: Sandbox,
    urls: SandboxUrls,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    lifetime: float,
) -> None:
    caplog.set_level(logging.WARNING, logger="wiser_async")
    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    sandbox.faults = Faults(**fault)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        token = await oauth.token("acct")
        assert token.fingerprint != stale.fingerprint
        assert token.lifetime == pytest.approx(lifetime)
        stored = await store.load("acct")
        assert stored is not None
        assert stored.fingerprint == token.fingerprint  # the rotated grant is kept
        for _ in range(10):  # a zero lifetime would refresh on every call
            await client.locations.page(limit=1)
    assert sandbox.stats.token_requests == {"refresh_token": 1}
    assert sandbox.stats.token_errors == {}
    for secret in secrets_of(stale, token):
        assert secret not in caplog.text
    if lifetime == 3600.0:
        assert "unusable expires_in" in caplog.text


async def test_a_non_bearer_token_type_is_a_typed_error(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    sandbox.faults = Faults(token_type="mac")
    async with make_oauth(urls, store) as oauth:
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.token("acct")
    assert caught.value.error == "unsupported_token_type"
    assert caught.value.status_code == 200
    assert "'mac'" in str(caught.value)


async def test_token_type_is_case_insensitive(sandbox: Sandbox, urls: SandboxUrls) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    sandbox.faults = Faults(token_type="bearer")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        assert (await oauth.token("acct")).token_type == "Bearer"
        await client.locations.page(limit=1)


# -- store outages ----------------------------------------------------------------------


async def test_a_store_outage_after_a_rotation_keeps_the_new_token_and_saves_it_later(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    inner = MemoryTokenStore()
    store = FlakyStore(inner)
    stale = await issue(sandbox, inner, "acct", expired=True)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        store.fail_writes = True
        token = await oauth.token("acct")  # refreshed; the save fails
        assert token.fingerprint != stale.fingerprint
        assert oauth.unsaved_accounts == ["acct"]
        assert store.failed_writes >= 1
        await client.locations.page(limit=1)  # callers are answered with the new token
        stored = await inner.load("acct")
        assert stored is not None
        assert stored.fingerprint == stale.fingerprint
        store.fail_writes = False

        async def saved() -> bool:
            await client.locations.page(limit=1)
            return not oauth.unsaved_accounts

        with anyio.fail_after(10):
            while not await saved():  # noqa: ASYNC110 - each try is an API call
                await anyio.sleep(0.05)
        stored = await inner.load("acct")
        assert stored is not None
        assert stored.fingerprint == token.fingerprint
        # The saved refresh token is the live one: the next refresh works.
        refreshed = await oauth.refresh("acct")
        assert refreshed.fingerprint != token.fingerprint
    assert sandbox.stats.token_errors == {}


async def test_a_refresh_of_a_token_only_this_process_holds_uses_its_refresh_token(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    inner = MemoryTokenStore()
    store = FlakyStore(inner)
    await issue(sandbox, inner, "acct", expired=True)
    async with make_oauth(urls, store) as oauth:
        store.fail_writes = True
        first = await oauth.token("acct")
        assert oauth.unsaved_accounts == ["acct"]
        # The store reads but still takes no writes: the next refresh must use the
        # refresh token this process holds, not the spent one in the store.
        second = await oauth.refresh("acct")
        assert second.fingerprint != first.fingerprint
        store.fail_writes = False
        await oauth.aclose()  # a last try at saving
        stored = await inner.load("acct")
        assert stored is not None
        assert stored.fingerprint == second.fingerprint
    assert sandbox.stats.token_errors == {}
    assert sandbox.stats.token_requests == {"refresh_token": 2}


async def test_an_unexpired_token_is_used_while_the_store_is_down(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    inner = MemoryTokenStore()
    store = FlakyStore(inner)
    # 6 s to live; refreshed from 4.5 s on (a quarter of the lifetime, no jitter).
    await issue(sandbox, inner, "acct", lifetime=6.0)
    async with (
        make_oauth(urls, store, leeway_jitter=0.0) as oauth,
        make_client(oauth, urls) as client,
    ):
        token = await oauth.token("acct")
        assert token.expires_at is not None
        await anyio.sleep(max(0.0, token.expires_at - 1.4 - time.time()))  # due, not expired
        store.fail_all = True
        for _ in range(3):
            assert (await oauth.token("acct")).fingerprint == token.fingerprint
        await client.locations.page(limit=1)
    assert sandbox.stats.token_requests == {}


async def test_store_errors_are_wiser_errors_and_stay_store_errors(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    inner = MemoryTokenStore()
    store = FlakyStore(inner)
    await issue(sandbox, inner, "acct", expired=True)
    store.fail_all = True
    async with make_oauth(urls, store) as oauth:
        with pytest.raises(WiserError) as caught:
            await oauth.token("acct")
    error = caught.value
    assert isinstance(error, StoreUnavailable)
    assert isinstance(error, StoreError)
    assert isinstance(error, token_stores.StoreUnavailable)
    assert isinstance(error.__cause__, token_stores.StoreUnavailable)
    assert "injected outage" in str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is StoreUnavailable
    assert str(copy) == str(error)


def test_every_store_error_class_has_its_wiser_error() -> None:
    from wiser_async.errors import store_error

    errors = [
        token_stores.StoreUnavailable("down"),
        token_stores.LockTimeout("acct", 1.0, "somewhere"),
        token_stores.CorruptTokenData("bad"),
        token_stores.DecryptionError("key"),
        token_stores.InsecurePermissions("mode"),
        token_stores.UnsupportedTokenFormat("new"),
        token_stores.ForeignToken("copied"),
        token_stores.UnboundToken("plain"),
    ]
    for original in errors:
        wrapped = store_error(original)
        assert isinstance(wrapped, WiserError)
        assert isinstance(wrapped, type(original))
        assert type(wrapped).__name__ == type(original).__name__
        assert str(wrapped) == str(original)
    lock = store_error(errors[1])
    assert (lock.key, lock.timeout) == ("acct", 1.0)  # type: ignore[attr-defined]


# -- the authorization-code flow --------------------------------------------------------


async def test_a_replayed_callback_is_refused_without_sending_the_code_again(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        token = await oauth.complete_authorization("acct", callback, request)
        with pytest.raises(AuthorizationReplayed):
            await oauth.complete_authorization("acct", callback, request)
        code = httpx2.URL(callback).params["code"]
        with pytest.raises(AuthorizationReplayed):
            await oauth.exchange_code("acct", code, code_verifier=request.code_verifier)
        stored = await store.load("acct")
        assert stored is not None
        assert stored.fingerprint == token.fingerprint
        await client.locations.page(limit=1)  # the grant lives: the code was not re-sent
    assert sandbox.stats.token_requests == {"authorization_code": 1}


async def test_a_redirect_uri_per_request_is_carried_into_the_exchange(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    callback_uri = "http://127.0.0.1:9911/tenant-b/callback"
    async with make_oauth(urls, store, redirect_uri=None) as oauth:
        request = oauth.authorization_request(redirect_uri=callback_uri)
        assert request.redirect_uri == callback_uri
        callback = await consent(request.url)
        assert callback.startswith(callback_uri)
        await oauth.complete_authorization("acct", callback, request)
    assert sandbox.stats.token_requests == {"authorization_code": 1}
    assert sandbox.stats.token_errors == {}


def test_extra_params_cannot_change_what_the_flow_sets(urls: SandboxUrls) -> None:
    oauth = make_oauth(urls)
    for name in ("response_type", "redirect_uri", "state", "client_id", "code_challenge", "scope"):
        with pytest.raises(ValueError, match=name):
            oauth.authorization_request(extra_params={name: "x"})
    request = oauth.authorization_request(extra_params={"prompt": "consent"})
    assert httpx2.URL(request.url).params["prompt"] == "consent"
    assert httpx2.URL(request.url).params["response_type"] == "code"


@pytest.mark.parametrize("own_sandbox", [{"issuer": "https://sandbox.example/"}], indirect=True)
async def test_the_issuer_of_the_callback_is_checked_when_configured(
    own_sandbox: tuple[Sandbox, SandboxUrls],
) -> None:
    sandbox, urls = own_sandbox
    async with make_oauth(urls, issuer="https://sandbox.example/") as oauth:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        assert httpx2.URL(callback).params["iss"] == "https://sandbox.example/"
        await oauth.complete_authorization("acct", callback, request)
    async with make_oauth(urls, issuer="https://other.example/") as oauth:
        request = oauth.authorization_request()
        callback = await consent(request.url)
        with pytest.raises(IssuerMismatch, match=r"other\.example"):
            await oauth.complete_authorization("acct", callback, request)
        without = str(httpx2.URL(callback).copy_remove_param("iss"))
        with pytest.raises(IssuerMismatch, match="no iss"):
            await oauth.complete_authorization("acct", without, request)
    assert sandbox.stats.token_requests == {"authorization_code": 1}


# -- refresh and the token endpoint ----------------------------------------------------


@pytest.mark.parametrize(
    "own_sandbox", [{"granted_scopes": ["energy-monitoring:read"]}], indirect=True
)
async def test_a_refresh_sends_no_scope_so_a_narrower_grant_keeps_working(
    own_sandbox: tuple[Sandbox, SandboxUrls],
) -> None:
    sandbox, urls = own_sandbox
    asked = ["energy-monitoring:read", "energy-monitoring:write"]
    async with make_oauth(urls, scopes=asked) as oauth:
        request = oauth.authorization_request()
        token = await oauth.complete_authorization("acct", await consent(request.url), request)
        assert token.scope == "energy-monitoring:read"  # granted less than asked
        refreshed = await oauth.refresh("acct")
        assert refreshed.scope == "energy-monitoring:read"
        narrower = await oauth.refresh("acct", scopes=["energy-monitoring:read"])
        assert narrower.fingerprint != refreshed.fingerprint
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.refresh("acct", scopes=asked)
    assert caught.value.error == "invalid_scope"
    assert caught.value.status_code == 400
    assert sandbox.stats.token_errors == {"invalid_scope": 1}


SECRET_NEEDING_ENCODING = "s3cr+t/%2B:with space"


def test_basic_credentials_form_urlencode_id_and_secret() -> None:
    value = basic_credentials("my client", SECRET_NEEDING_ENCODING)
    decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
    assert decoded == "my%20client:s3cr%2Bt%2F%252B%3Awith%20space"


@pytest.mark.parametrize("own_sandbox", [{"client_secret": SECRET_NEEDING_ENCODING}], indirect=True)
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_secret_with_reserved_characters_authenticates_by_either_method(
    own_sandbox: tuple[Sandbox, SandboxUrls], method: str
) -> None:
    sandbox, urls = own_sandbox
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    async with WiserOAuth(
        client_id=CLIENT_ID,
        client_secret=SECRET_NEEDING_ENCODING,
        store=store,
        token_url=urls.token_url,
        token_endpoint_auth_method=method,
    ) as oauth:
        await oauth.token("acct")
    assert sandbox.stats.token_errors == {}
    assert sandbox.stats.token_requests == {"refresh_token": 1}


async def test_token_endpoint_errors_carry_the_status_and_the_rfc_code(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    async with make_oauth(urls, store) as good:
        async with WiserOAuth(
            client_id=CLIENT_ID,
            client_secret="wrong-secret",
            store=store,
            token_url=urls.token_url,
        ) as oauth:
            with pytest.raises(TokenEndpointError) as caught:
                await oauth.token("acct")
        assert (caught.value.error, caught.value.status_code) == ("invalid_client", 401)
        await good.token("acct")


async def test_a_lost_refresh_answer_reads_the_store_before_the_refresh_token_is_sent_again(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", expired=True)
    # The server rotates the refresh token, then the answer is lost.
    sandbox.faults = Faults(token_answer_delay=0.3, token_answer_drops=1)
    newer = Token.from_response(sandbox.issue_token("default"))
    async with make_oauth(urls, store) as oauth:
        async with anyio.create_task_group() as tg:
            tg.start_soon(oauth.token, "acct")
            # Meanwhile another worker stores a newer grant.
            await wait_until(lambda: sandbox.stats.token_requests.get("refresh_token") == 1)
            await store.save("acct", newer)
        token = await oauth.token("acct")
    assert token.fingerprint == newer.fingerprint
    # The spent refresh token was not sent again: the store had a newer token.
    assert sandbox.stats.token_requests == {"refresh_token": 1}


async def test_a_token_that_expires_on_the_way_is_tried_again_with_a_fresh_one(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct", lifetime=1.0)
    # Each request takes longer than a token lives: it reaches the server expired.
    sandbox.faults = Faults(latency=1.5)
    async with (
        make_oauth(urls, store, leeway=0.0, leeway_jitter=0.0) as oauth,
        make_client(oauth, urls) as client,
        anyio.create_task_group() as tg,
    ):

        async def relieve() -> None:
            # Once two tokens ran out on the way, the machine is fast again.
            await wait_until(lambda: sandbox.stats.token_requests.get("refresh_token", 0) >= 2)
            sandbox.faults = Faults()

        tg.start_soon(relieve)
        page = await client.locations.page(limit=1)
    assert page.items
    # Two tokens ran out on the way (a third if the faults changed after a re-send).
    assert 2 <= sandbox.stats.responses_by_status[401] <= 3
    assert sandbox.stats.token_errors == {}


# -- revocation across stores ----------------------------------------------------------


async def test_a_token_deleted_through_another_store_instance_stops_being_used(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Any
) -> None:
    from wiser_async.errors import AuthorizationRequired

    directory = tmp_path / "tokens"
    here, there = token_stores.FileTokenStore(directory), token_stores.FileTokenStore(directory)
    await issue(sandbox, here, "acct")
    async with (
        make_oauth(urls, here, revocation_check_interval=0.2) as oauth,
        make_oauth(urls, there) as other,
        make_client(oauth, urls) as client,
    ):
        await client.locations.page(limit=1)
        assert await other.forget("acct")
        deleted = time.monotonic()
        with anyio.fail_after(5):
            while True:
                try:
                    await client.locations.page(limit=1)
                except AuthorizationRequired:
                    break
                await anyio.sleep(0.01)
        noticed = time.monotonic() - deleted
    assert noticed < 1.0, noticed


# -- redaction ----------------------------------------------------------------------------


async def test_secrets_echoed_by_the_server_reach_no_error_failure_file_or_log(
    sandbox: Sandbox,
    urls: SandboxUrls,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    http_stack: str,
) -> None:
    from wiser_async import crawl_to_jsonl

    caplog.set_level(logging.DEBUG)
    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    location = next(sandbox.portfolio_for("default").locations())["id"]
    sandbox.faults = Faults(echo_secrets=True, forbidden=frozenset({location}))
    errors: list[BaseException] = []
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        await client.locations.page(limit=1)
        current = await store.load("acct")
        assert current is not None
        try:
            await client.locations.get(location)
        except WiserError as exc:
            errors.append(exc)
        failures = (await crawl_to_jsonl(client, tmp_path / "out.jsonl")).failures
        refused = MemoryTokenStore()
        await refused.save("acct", stale)
        async with WiserOAuth(
            client_id=CLIENT_ID,
            client_secret="wrong-but-secret",
            store=refused,
            token_url=urls.token_url,
        ) as wrong:
            try:
                await wrong.token("acct")  # invalid_client, echoing what was sent
            except WiserError as exc:
                errors.append(exc)
    assert len(errors) == 2
    assert "you sent" in str(errors[0])  # the server did echo...
    assert "you sent" in str(errors[1])
    assert failures
    secrets = [*secrets_of(stale, current), "wrong-but-secret"]
    for error in errors:
        assert_no_secret(error, secrets)
        assert "***" in str(error)  # ...and the echo was redacted
    written = (tmp_path / "out.jsonl").read_text()
    records = [failure.to_dict() for failure in failures]
    for secret in secrets:
        assert secret not in written
        assert secret not in repr(records)
        assert secret not in caplog.text
    if http_stack == "httpx2":
        # httpcore2 logs response headers at DEBUG; aiohttp logs none, so there it is not.
        assert "x-echo-authorization" in caplog.text  # the echoing header was logged, redacted


def test_control_characters_in_server_text_are_escaped() -> None:
    from wiser_async._status import error_for_response

    body = b'{"error": {"code": "x", "message": "red\\u001b[31m\\nFAKE LOG LINE\\u202e"}}'
    error = error_for_response(400, {}, body, method="GET", path="/locations")
    text = str(error)
    assert "\x1b" not in text
    assert "\n" not in text
    assert "\u202e" not in text
    assert "\\x1b[31m\\x0aFAKE LOG LINE\\u202e" in text
