"""The independent authorization server follows RFC 6749, 7636 and 9207, seen with plain httpx2.

No wiser_async client here: what the fault matrix trusts about this server
is checked on its own.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from tests.authlib_server import AuthlibServer, AuthlibUrls

VERIFIER = "v" * 50
# BASE64URL(SHA256(VERIFIER)), RFC 7636 4.2, worked out once.
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[AuthlibServer, AuthlibUrls]]:
    server = AuthlibServer()
    with server.serve_in_thread() as urls:
        yield server, urls


@pytest.fixture
def server(served: tuple[AuthlibServer, AuthlibUrls]) -> AuthlibServer:
    served[0].reset()
    return served[0]


@pytest.fixture
def urls(served: tuple[AuthlibServer, AuthlibUrls]) -> AuthlibUrls:
    return served[1]


def basic(client_id: str, secret: str, *, encode: bool = True) -> dict[str, str]:
    pair = (
        f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        if encode
        else f"{client_id}:{secret}"
    )
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def authorize(
    http: httpx2.AsyncClient, server: AuthlibServer, urls: AuthlibUrls
) -> httpx2.URL:
    response = await http.get(
        urls.authorize_url,
        params={
            "response_type": "code",
            "client_id": server.client_id,
            "redirect_uri": REDIRECT,
            "scope": "read write",
            "state": "the-state",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 302, response.text
    return httpx2.URL(response.headers["location"])


async def exchange(
    http: httpx2.AsyncClient, server: AuthlibServer, urls: AuthlibUrls, code: str, **extra: str
) -> httpx2.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    form["code_verifier"] = extra.pop("code_verifier", VERIFIER)
    return await http.post(
        urls.token_url, data=form, headers=basic(server.client_id, server.client_secret)
    )


async def refresh(
    http: httpx2.AsyncClient, server: AuthlibServer, urls: AuthlibUrls, token: str, **extra: str
) -> httpx2.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return await http.post(
        urls.token_url, data=form, headers=basic(server.client_id, server.client_secret)
    )


async def api(http: httpx2.AsyncClient, urls: AuthlibUrls, access_token: str) -> int:
    response = await http.get(
        urls.api_base_url + "/locations", headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


async def test_the_code_flow_needs_pkce_and_grants_less_than_asked(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    async with httpx2.AsyncClient() as http:
        callback = await authorize(http, server, urls)
        assert callback.params["state"] == "the-state"
        assert callback.params["iss"] == urls.issuer  # RFC 9207
        wrong = await exchange(http, server, urls, callback.params["code"], code_verifier="x" * 50)
        assert wrong.json()["error"] == "invalid_grant"
        answer = await exchange(http, server, urls, callback.params["code"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "read"
        assert await api(http, urls, answer.json()["access_token"]) == 200


async def test_basic_credentials_work_only_urlencoded(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    grant = server.issue_token()
    form = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}
    async with httpx2.AsyncClient() as http:
        raw = await http.post(
            urls.token_url,
            data=form,
            headers=basic(server.client_id, server.client_secret, encode=False),
        )
        assert raw.json()["error"] == "invalid_client"  # the secret needs encoding
        posted = {**form, "client_id": server.client_id, "client_secret": server.client_secret}
        assert (await http.post(urls.token_url, data=posted)).status_code == 200


async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_grant(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    grant = server.issue_token()
    async with httpx2.AsyncClient() as http:
        first = (await refresh(http, server, urls, grant["refresh_token"])).json()
        assert first["refresh_token"] != grant["refresh_token"]
        assert server.current_refresh_token() == first["refresh_token"]
        reused = await refresh(http, server, urls, grant["refresh_token"])
        assert reused.json()["error"] == "invalid_grant"
        assert server.reuse_detected == 1
        assert await api(http, urls, first["access_token"]) == 401
        assert (await refresh(http, server, urls, first["refresh_token"])).status_code == 400


async def test_refresh_keeps_the_grant_scope_and_refuses_a_wider_one(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    grant = server.issue_token()
    async with httpx2.AsyncClient() as http:
        wider = await refresh(http, server, urls, grant["refresh_token"], scope="read write")
        assert wider.json()["error"] == "invalid_scope"
        kept = await refresh(http, server, urls, grant["refresh_token"])
        assert kept.json()["scope"] == "read"


async def test_a_reused_code_revokes_what_it_issued(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    async with httpx2.AsyncClient() as http:
        code = (await authorize(http, server, urls)).params["code"]
        first = (await exchange(http, server, urls, code)).json()
        again = await exchange(http, server, urls, code)
        assert again.json()["error"] == "invalid_grant"
        assert server.code_reuse_detected == 1
        assert await api(http, urls, first["access_token"]) == 401


@pytest.mark.parametrize(
    ("knob", "value", "text"),
    [
        ("expires_in", "soon", b'"expires_in": "soon"'),
        ("raw_expires_in", "1e400", b'"expires_in": 1e400'),
        ("token_type", "mac", b'"token_type": "mac"'),
    ],
)
async def test_knobs_change_the_next_answer(
    server: AuthlibServer, urls: AuthlibUrls, knob: str, value: Any, text: bytes
) -> None:
    setattr(server, knob, value)
    async with httpx2.AsyncClient() as http:
        answer = await refresh(http, server, urls, server.issue_token()["refresh_token"])
    assert text in answer.content


async def test_a_dropped_answer_comes_after_the_rotation(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    grant = server.issue_token()
    server.drop_answers = 1
    async with httpx2.AsyncClient() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await refresh(http, server, urls, grant["refresh_token"])
    assert server.current_refresh_token() not in (None, grant["refresh_token"])


async def test_echoing_errors_quote_what_was_sent(server: AuthlibServer, urls: AuthlibUrls) -> None:
    server.echo_secrets = True
    async with httpx2.AsyncClient() as http:
        answer = await refresh(http, server, urls, "not-a-refresh-token")
        assert "not-a-refresh-token" in answer.json()["error_description"]
        assert await api(http, urls, "nope") == 401


async def test_expired_tokens_get_401_with_www_authenticate(
    server: AuthlibServer, urls: AuthlibUrls
) -> None:
    grant = server.issue_token(lifetime=-1)
    async with httpx2.AsyncClient() as http:
        response = await http.get(
            urls.api_base_url + "/locations",
            headers={"Authorization": f"Bearer {grant['access_token']}"},
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
