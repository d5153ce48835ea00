"""The independent authorization server follows RFC 6749, 6750, 7636 and 9207, seen with httpx2.

No wiser_async client here: what the client's tests trust about this server
is checked on its own, over real loopback HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import attrs
import httpx2
import pytest

from tests.authlib_server import AuthlibServer, AuthlibUrls

VERIFIER = "v" * 50
# BASE64URL(SHA256(VERIFIER)), RFC 7636 4.2.
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
REDIRECT = "http://127.0.0.1:9/cb"


def percent(text: str) -> str:
    """Every octet outside RFC 3986's unreserved set escaped, a space as %20."""
    return quote(text, safe="")


def basic(client_id: str, secret: str, encode: Callable[[str], str] = percent) -> str:
    """An HTTP Basic header value; RFC 6749 2.3.1 encodes id and secret first."""
    return "Basic " + base64.b64encode(f"{encode(client_id)}:{encode(secret)}".encode()).decode()


@attrs.define
class Flow:
    """A plain httpx2 client walking one server's endpoints."""

    http: httpx2.AsyncClient
    server: AuthlibServer
    urls: AuthlibUrls

    async def authorize(self, **params: str) -> httpx2.URL:
        """The redirect of an authorization request (a parameter given as "" is left out)."""
        query = {
            "response_type": "code",
            "client_id": self.server.client_id,
            "redirect_uri": REDIRECT,
            "scope": "read write",
            "state": "the-state",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            **params,
        }
        response = await self.http.get(
            self.urls.authorize_url, params={k: v for k, v in query.items() if v}
        )
        assert response.status_code == 302, response.text
        return httpx2.URL(response.headers["location"])

    async def code(self, **params: str) -> str:
        return (await self.authorize(**params)).params["code"]

    async def token(
        self, form: dict[str, str], *, authorization: str | None = None, post: bool = False
    ) -> httpx2.Response:
        """A token request authenticated with Basic (by default) or in the form (`post`)."""
        if post:
            form = {**form, "client_id": self.server.client_id}
            form["client_secret"] = self.server.client_secret
            headers = {}
        else:
            authorization = authorization or basic(self.server.client_id, self.server.client_secret)
            headers = {"Authorization": authorization}
        return await self.http.post(self.urls.token_url, data=form, headers=headers)

    async def exchange(self, code: str, verifier: str = VERIFIER, **kw: Any) -> httpx2.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        return await self.token({**form, "code_verifier": verifier}, **kw)

    async def refresh(self, refresh_token: str, **form: str) -> httpx2.Response:
        return await self.token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, **form}
        )

    async def api(self, access_token: str | None, **params: int) -> httpx2.Response:
        headers = {} if access_token is None else {"Authorization": f"Bearer {access_token}"}
        return await self.http.get(
            self.urls.api_base_url + "/locations", headers=headers, params=params
        )


def serve(server: AuthlibServer) -> Iterator[tuple[AuthlibServer, AuthlibUrls]]:
    with server.serve_in_thread() as urls:
        yield server, urls


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[AuthlibServer, AuthlibUrls]]:
    yield from serve(AuthlibServer())


@pytest.fixture(scope="module")
def served_strict() -> Iterator[tuple[AuthlibServer, AuthlibUrls]]:
    strict = AuthlibServer(
        client_id="strict-client",
        auth_methods=["client_secret_post"],
        granted_scope="read write",
        issuer=None,
        redirect_uris=[REDIRECT],
    )
    yield from serve(strict)


@pytest.fixture
def server(served: tuple[AuthlibServer, AuthlibUrls]) -> AuthlibServer:
    """The module's server, knobs back to normal and counters at zero."""
    served[0].reset()
    return served[0]


@pytest.fixture
async def flow(
    server: AuthlibServer, served: tuple[AuthlibServer, AuthlibUrls]
) -> AsyncIterator[Flow]:
    async with httpx2.AsyncClient() as http:
        yield Flow(http, server, served[1])


@pytest.fixture
async def strict(served_strict: tuple[AuthlibServer, AuthlibUrls]) -> AsyncIterator[Flow]:
    served_strict[0].reset()
    async with httpx2.AsyncClient() as http:
        yield Flow(http, *served_strict)


# -- the code flow ----------------------------------------------------------------------


async def test_authorize_redirects_with_code_state_and_issuer(flow: Flow) -> None:
    callback = await flow.authorize()
    assert str(callback.copy_with(query=None)) == REDIRECT
    assert callback.params["code"]
    assert callback.params["state"] == "the-state"
    assert callback.params["iss"] == flow.urls.issuer == "https://indie.test/"  # RFC 9207


async def test_basic_exchange_needs_id_and_secret_encoded_before_base64(flow: Flow) -> None:
    code = await flow.code()
    raw = basic(flow.server.client_id, flow.server.client_secret, encode=lambda text: text)
    refused = await flow.exchange(code, authorization=raw)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert refused.headers["www-authenticate"].startswith("Basic ")
    answer = await flow.exchange(code)  # a failed client authentication leaves the code unused
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["refresh_token"]
    assert (await flow.api(token["access_token"])).status_code == 200


async def test_authlib_reads_a_plus_in_basic_credentials_as_a_plus(flow: Flow) -> None:
    # RFC 6749 Appendix B writes a space as "+"; authlib decodes with unquote, not
    # unquote_plus, so only a client writing the space as %20 gets through.
    grant = flow.server.issue_token()
    plus = basic(flow.server.client_id, flow.server.client_secret, encode=quote_plus)
    answer = await flow.token(
        {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        authorization=plus,
    )
    assert answer.json()["error"] == "invalid_client"


async def test_client_secret_post_authenticates(flow: Flow) -> None:
    answer = await flow.exchange(await flow.code(), post=True)
    assert answer.status_code == 200, answer.text


async def test_a_wrong_pkce_verifier_is_invalid_grant(flow: Flow) -> None:
    code = await flow.code()
    wrong = await flow.exchange(code, verifier="w" * 50)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert (await flow.exchange(code)).status_code == 200


@pytest.mark.parametrize(
    "pkce",
    [{"code_challenge": "", "code_challenge_method": ""}, {"code_challenge_method": "plain"}],
    ids=["none", "plain"],
)
async def test_authorize_insists_on_an_s256_challenge(flow: Flow, pkce: dict[str, str]) -> None:
    callback = await flow.authorize(**pkce)
    assert callback.params["error"] == "invalid_request"
    assert callback.params["state"] == "the-state"
    assert callback.params["iss"] == flow.urls.issuer  # error redirects name the issuer too
    assert "code" not in callback.params


async def test_the_granted_scope_is_narrower_than_asked_and_reported(flow: Flow) -> None:
    answer = await flow.exchange(await flow.code(scope="read write"))
    assert answer.json()["scope"] == "read"


async def test_a_denied_consent_redirects_with_access_denied(flow: Flow) -> None:
    flow.server.consent = "deny"
    callback = await flow.authorize()
    assert callback.params["error"] == "access_denied"
    assert callback.params["state"] == "the-state"
    assert callback.params["iss"] == flow.urls.issuer


async def test_login_hint_names_the_customer(flow: Flow) -> None:
    token = (await flow.exchange(await flow.code(login_hint="ada"))).json()
    assert flow.server.current_refresh_token("ada") == token["refresh_token"]


async def test_a_reused_code_is_invalid_grant_and_revokes_the_first_exchange(flow: Flow) -> None:
    code = await flow.code()
    first = (await flow.exchange(code)).json()
    again = await flow.exchange(code)
    assert again.json()["error"] == "invalid_grant"
    assert flow.server.code_reuse_detected == 1
    assert (await flow.api(first["access_token"])).status_code == 401
    assert (await flow.refresh(first["refresh_token"])).json()["error"] == "invalid_grant"


# -- refresh ----------------------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(flow: Flow) -> None:
    grant = flow.server.issue_token(customer="rotating")
    first = (await flow.refresh(grant["refresh_token"])).json()
    newest = (await flow.refresh(first["refresh_token"])).json()
    assert len({grant["refresh_token"], first["refresh_token"], newest["refresh_token"]}) == 3
    assert flow.server.current_refresh_token("rotating") == newest["refresh_token"]
    assert flow.server.reuse_detected == 0
    reused = await flow.refresh(grant["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert flow.server.reuse_detected == 1
    assert (await flow.api(newest["access_token"])).status_code == 401
    assert (await flow.refresh(newest["refresh_token"])).json()["error"] == "invalid_grant"
    assert flow.server.current_refresh_token("rotating") is None


async def test_refresh_refuses_a_wider_scope_and_keeps_the_grant_without_one(flow: Flow) -> None:
    grant = flow.server.issue_token()
    wider = await flow.refresh(grant["refresh_token"], scope="read write")
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    kept = await flow.refresh(grant["refresh_token"])  # the refused request rotated nothing
    assert kept.json()["scope"] == "read"


# -- knobs ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["3600.5", "soon", [3600], {}, -5, 0])
async def test_an_odd_expires_in_is_sent_verbatim_and_the_token_lives_on(
    flow: Flow, value: Any
) -> None:
    flow.server.expires_in = value
    answer = (await flow.refresh(flow.server.issue_token()["refresh_token"])).json()
    assert answer["expires_in"] == value
    assert flow.server.is_live(answer["access_token"])
    assert (await flow.api(answer["access_token"])).status_code == 200


async def test_raw_expires_in_goes_into_the_json_text(flow: Flow) -> None:
    flow.server.raw_expires_in = "1e400"
    answer = await flow.refresh(flow.server.issue_token()["refresh_token"])
    assert b'"expires_in": 1e400' in answer.content
    assert json.loads(answer.content)["expires_in"] == math.inf


async def test_token_type_can_be_overridden(flow: Flow) -> None:
    flow.server.token_type = "mac"
    answer = await flow.refresh(flow.server.issue_token()["refresh_token"])
    assert answer.json()["token_type"] == "mac"


async def test_echo_secrets_quotes_what_the_client_sent(flow: Flow) -> None:
    refused = await flow.refresh("not-a-refresh-token")
    assert "not-a-refresh-token" not in refused.text
    flow.server.echo_secrets = True
    echoed = (await flow.refresh("not-a-refresh-token")).json()["error_description"]
    assert "not-a-refresh-token" in echoed
    assert flow.server.client_secret in echoed  # decoded from the Basic header
    code = await flow.code()
    echoed = (await flow.exchange(code, verifier="w" * 50, post=True)).json()["error_description"]
    assert all(sent in echoed for sent in (code, "w" * 50, flow.server.client_secret))
    assert "bogus-bearer" in (await flow.api("bogus-bearer")).json()["error"]["message"]


async def test_answer_delay_holds_the_answer_after_the_rotation(flow: Flow) -> None:
    grant = flow.server.issue_token(customer="slow")
    flow.server.answer_delay = 1.0
    answers: list[httpx2.Response] = []

    async def refresh() -> None:
        answers.append(await flow.refresh(grant["refresh_token"]))

    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(refresh)
        with anyio.fail_after(5):
            # Rotated on uvicorn's thread: nothing to await, so poll.
            while flow.server.current_refresh_token("slow") == grant["refresh_token"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert not answers  # rotated, not answered yet
    assert time.monotonic() - started >= 0.9
    assert answers[0].json()["refresh_token"] == flow.server.current_refresh_token("slow")


async def test_a_dropped_answer_comes_after_the_rotation(flow: Flow) -> None:
    grant = flow.server.issue_token(customer="dropped")
    flow.server.drop_answers = 1
    with pytest.raises(httpx2.RemoteProtocolError):
        await flow.refresh(grant["refresh_token"])
    rotated = flow.server.current_refresh_token("dropped")
    assert rotated not in (None, grant["refresh_token"])
    assert flow.server.token_requests["refresh_token"] == 1
    assert rotated is not None
    assert (await flow.refresh(rotated)).status_code == 200  # one answer dropped, no more


# -- the protected API ------------------------------------------------------------------


async def test_issued_tokens_work_on_the_api_with_paging(flow: Flow) -> None:
    token = flow.server.issue_token()["access_token"]
    page = (await flow.api(token)).json()
    assert page == {
        "data": [{"id": "loc-1", "name": "Indie HQ"}],
        "meta": {"offset": 0, "limit": 100, "total": 1},
    }
    beyond = (await flow.api(token, offset=1, limit=10)).json()
    assert beyond == {"data": [], "meta": {"offset": 1, "limit": 10, "total": 1}}


@pytest.mark.parametrize("kind", ["expired", "revoked", "unknown", "missing"])
async def test_dead_tokens_get_401_with_www_authenticate(flow: Flow, kind: str) -> None:
    token: str | None = flow.server.issue_token(lifetime=-1)["access_token"]
    if kind == "revoked":
        grant = flow.server.issue_token()
        token = grant["access_token"]
        await flow.refresh(grant["refresh_token"])
        await flow.refresh(grant["refresh_token"])  # reuse: the family goes
    elif kind != "expired":
        token = {"unknown": "never-issued", "missing": None}[kind]
    response = await flow.api(token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"]["code"] == "invalid_token"


# -- the helper itself ------------------------------------------------------------------


async def test_counters_count_by_grant_type_and_error_code(flow: Flow) -> None:
    await flow.exchange(await flow.code())
    await flow.refresh("not-a-refresh-token")
    await flow.token({"grant_type": "password"})
    assert flow.server.token_requests == {
        "authorization_code": 1,
        "refresh_token": 1,
        "password": 1,
    }
    assert flow.server.token_errors == {"invalid_grant": 1, "unsupported_grant_type": 1}
    flow.server.reset_counters()
    assert not flow.server.token_requests
    assert not flow.server.token_errors


def test_no_secret_reaches_a_log_line_or_a_repr(
    server: AuthlibServer,
    served: tuple[AuthlibServer, AuthlibUrls],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # authlib logs clients and token answers at debug level
    grant = server.issue_token()
    server.drop_answers = 1
    auth = basic(server.client_id, server.client_secret)
    form = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}
    with httpx2.Client(headers={"Authorization": auth}) as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            http.post(served[1].token_url, data=form)
        rotated = server.current_refresh_token()
        assert rotated is not None
        answer = http.post(served[1].token_url, data={**form, "refresh_token": rotated}).json()
    assert "Issue token" in caplog.text  # authlib did log
    secrets = [server.client_secret, grant["refresh_token"], rotated, *answer.values()]
    for secret in (s for s in secrets if isinstance(s, str) and len(s) > 20):
        assert secret not in caplog.text
        assert secret not in repr(server)
    assert "Exception in ASGI application" not in caplog.text  # the drop was deliberate


# -- a server restricted to one method, with registered redirect URIs, no issuer --------


async def test_a_restricted_server_keeps_to_its_method_and_redirect_uris(strict: Flow) -> None:
    callback = await strict.authorize()
    assert "iss" not in callback.params
    basic_answer = await strict.exchange(callback.params["code"])
    assert basic_answer.json()["error"] == "invalid_client"
    posted = await strict.exchange(callback.params["code"], post=True)
    assert posted.json()["scope"] == "read write"
    other = await strict.http.get(
        strict.urls.authorize_url,
        params={
            "response_type": "code",
            "client_id": "strict-client",
            "redirect_uri": REDIRECT + "2",
        },
    )
    assert (other.status_code, other.json()["error"]) == (400, "invalid_request")


async def test_a_refresh_without_scope_returns_to_the_original_grant(strict: Flow) -> None:
    grant = strict.server.issue_token()
    form = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}
    narrowed = (await strict.token({**form, "scope": "read"}, post=True)).json()
    assert narrowed["scope"] == "read"
    again = {**form, "refresh_token": narrowed["refresh_token"]}
    assert (await strict.token(again, post=True)).json()["scope"] == "read write"  # RFC 6749 6
