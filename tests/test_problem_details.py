"""Error bodies as RFC 7807 / 9457 problem details give their title, detail, parameters and id.

Sibling APIs on the Exchange gateway answer errors as problem details, with
the parameters refused under ``invalid-params`` in one product and
``invalidParams`` in another (API-CONTRACT.md, Errors). The typed error
carries them as attributes and in its message: on one line, bounded in
length, control characters escaped and no secret the client knows.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from tests.support import assert_no_secret, issue, make_client, make_oauth, secrets_of
from token_stores import MemoryTokenStore
from wiser_async import ApiConfig, AsyncWiserClient, PageFormat
from wiser_async._status import error_for_response
from wiser_async.errors import ApiError, BadRequest, Forbidden, NotFound
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

pytestmark = pytest.mark.timeout(30)

PROBLEM = {"content-type": "application/problem+json"}
# RFC 7807's own example of validation errors, with a request id of the gateway's.
RFC_7807 = {
    "type": "https://example.net/validation-error",
    "title": "Your request parameters didn't validate.",
    "status": 400,
    "requestId": "r-7807",
}
REASONS = [
    {"name": "age", "reason": "must be a positive integer"},
    {"name": "color", "reason": "must be 'green', 'red' or 'blue'"},
]
PAIRS = (("age", "must be a positive integer"), ("color", "must be 'green', 'red' or 'blue'"))


def error_of(status: int, body: Any, headers: dict[str, str] = PROBLEM) -> ApiError:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = error_for_response(status, headers, content, method="GET", path="/sites/s1/rooms")
    assert isinstance(error, ApiError)
    return error


@pytest.mark.parametrize("key", ["invalid-params", "invalidParams"])
def test_a_problem_gives_its_title_parameters_and_request_id_in_either_spelling(
    key: str,
) -> None:
    error = error_of(400, {**RFC_7807, key: REASONS})
    assert type(error) is BadRequest
    assert error.title == "Your request parameters didn't validate."
    assert error.detail is None
    assert error.invalid_params == PAIRS
    assert error.request_id == "r-7807"
    assert str(error) == (
        "GET /sites/s1/rooms: HTTP 400 Bad Request: Your request parameters didn't validate. "
        "(invalid parameters: age: must be a positive integer; color: must be 'green', "
        "'red' or 'blue') (request id r-7807)"
    )


def test_rfc_9457_errors_with_pointers_are_read_as_parameters() -> None:
    body = {
        "type": "https://example.net/validation-error",
        "title": "Your request is not valid.",
        "detail": "2 parameters were refused",
        "errors": [
            {"detail": "must be a positive integer", "pointer": "#/age"},
            {"detail": "must be 'green', 'red' or 'blue'", "pointer": "#/profile/color"},
        ],
    }
    error = error_of(422, body, {"content-type": "application/json"})
    assert type(error) is ApiError
    assert (error.title, error.detail) == (
        "Your request is not valid.",
        "2 parameters were refused",
    )
    assert error.invalid_params == (
        ("#/age", "must be a positive integer"),
        ("#/profile/color", "must be 'green', 'red' or 'blue'"),
    )
    assert "Your request is not valid.: 2 parameters were refused (invalid parameters:" in str(
        error
    )


def test_the_contract_envelope_still_gives_its_code_message_and_request_id() -> None:
    body = {"error": {"code": "consent_required", "message": "no consent", "requestId": "r-1"}}
    error = error_of(403, body, {"content-type": "application/json"})
    assert type(error) is Forbidden
    assert (error.code, error.detail, error.request_id, error.title) == (
        "consent_required",
        "no consent",
        "r-1",
        None,
    )
    assert (
        str(error)
        == "GET /sites/s1/rooms: HTTP 403 Forbidden [consent_required]: no consent (request id r-1)"
    )


def test_a_body_that_is_not_json_gives_an_excerpt_and_the_header_request_id() -> None:
    headers = {**PROBLEM, "x-request-id": "gw-42"}
    error = error_of(404, b"title: not found\r\ndetail: gone", headers)
    assert type(error) is NotFound
    assert (error.title, error.detail, error.invalid_params) == (None, None, ())
    assert error.request_id == "gw-42"
    assert "unreadable JSON body" in str(error)
    assert str(error).endswith("(request id gw-42)")


def test_a_huge_problem_is_cut_to_a_bounded_message() -> None:
    body = {
        **RFC_7807,
        "title": "t" * 100_000,
        "detail": "d" * 1_000_000,
        "invalid-params": [{"name": "n" * 1000, "reason": "r" * 1000}] * 100_000,
        "requestId": "i" * 10_000,
    }
    error = error_of(400, body)
    assert error.title is not None
    assert error.detail is not None
    assert len(error.title) == 200
    assert len(error.detail) == 500
    assert error.detail.endswith("…")
    assert len(error.invalid_params) == 10
    assert all(len(name) <= 100 and len(reason) <= 200 for name, reason in error.invalid_params)
    assert "; 99990 more)" in str(error)
    assert error.request_id is not None
    assert len(error.request_id) == 100
    assert len(str(error)) < 4000


def test_control_characters_and_line_breaks_are_escaped() -> None:
    body = {
        "title": "Bad\x1b[31m input",
        "detail": "first line\nsecond\tline \u202eevil",
        "invalidParams": [{"name": "li\x00mit", "reason": "too\x07 big"}, "loose text", 7],
    }
    error = error_of(400, body)
    assert error.title == "Bad\\x1b[31m input"
    assert error.detail == "first line\\x0asecond\\x09line \\u202eevil"
    assert error.invalid_params == (("li\\x00mit", "too\\x07 big"), ("", "loose text"))
    assert not any(ord(char) < 0x20 for char in str(error))
    assert "\u202e" not in str(error)


def test_problem_attributes_survive_pickling() -> None:
    error = error_of(400, {**RFC_7807, "invalid-params": REASONS})
    copy: Any = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.title, copy.invalid_params, copy.request_id) == (
        error.title,
        PAIRS,
        "r-7807",
    )
    assert str(copy) == str(error)


# -- through the sandbox's error bodies ---------------------------------------------


@pytest.mark.parametrize("form", ["invalid-params", "invalidParams"])
async def test_the_sandbox_writes_rfc_7807_problems_when_told(
    sandbox: Sandbox, urls: SandboxUrls, form: str
) -> None:
    token = sandbox.issue_token()["access_token"]
    sandbox.faults = Faults(error_format=form)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=urls.api_base_url, headers=headers) as http:
        refused = await http.get("/locations?limit=0")
        unsigned = await http.get("/locations", headers={"Authorization": ""})
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "type": "urn:wiser-sandbox:problem:invalid_parameter",
        "title": "Invalid parameter",
        "status": 400,
        "detail": "limit must be between 1 and 500",
        "requestId": refused.headers["x-request-id"],
        form: [{"name": "limit", "reason": "limit must be between 1 and 500"}],
    }
    assert unsigned.status_code == 401
    assert unsigned.json()["title"] == "Invalid token"
    assert "invalidParams" not in unsigned.json()
    assert "invalid-params" not in unsigned.json()


@asynccontextmanager
async def client_of(
    sandbox: Sandbox, urls: SandboxUrls, **options: Any
) -> AsyncIterator[tuple[AsyncWiserClient, list[str]]]:
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct")
    # A client told the API takes pages of 1,000 asks for more than the sandbox gives.
    pages = PageFormat(max_page_size=1000)
    options.setdefault("config", ApiConfig(base_url=urls.api_base_url, pages=pages))
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls, **options) as client:
        yield client, secrets_of(token)


@pytest.mark.parametrize("form", ["invalid-params", "invalidParams"])
async def test_a_refused_parameter_through_the_sandbox_names_it(
    sandbox: Sandbox, urls: SandboxUrls, form: str
) -> None:
    sandbox.faults = Faults(error_format=form)  # type: ignore[arg-type]
    async with client_of(sandbox, urls) as (client, secrets):
        with pytest.raises(BadRequest) as caught:
            await client.locations.page(limit=600)
    error = caught.value
    assert error.title == "Invalid parameter"
    assert error.detail == "limit must be between 1 and 500"
    assert error.invalid_params == (("limit", "limit must be between 1 and 500"),)
    assert error.request_id is not None
    assert error.request_id.startswith("req-")
    assert str(error) == (
        "GET /locations?offset=0&limit=600: HTTP 400 Bad Request: Invalid parameter: "
        "limit must be between 1 and 500 (invalid parameters: limit: limit must be between "
        f"1 and 500) (request id {error.request_id})"
    )
    assert_no_secret(error, secrets)


async def test_the_sandbox_answers_the_contract_envelope_unless_told(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with client_of(sandbox, urls) as (client, _):
        with pytest.raises(BadRequest) as caught:
            await client.locations.page(limit=600)
    error = caught.value
    assert (error.code, error.title, error.invalid_params) == ("invalid_parameter", None, ())
    assert error.detail == "limit must be between 1 and 500"


async def test_a_crawl_failure_carries_the_problem_title_and_detail(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    portfolio = sandbox.portfolio_for()
    site = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    sandbox.faults = Faults(error_format="invalidParams", forbidden=frozenset({site}))
    config = ApiConfig(base_url=urls.api_base_url)
    async with client_of(sandbox, urls, config=config) as (client, _):
        result = await client.crawl()
    assert {(f.kind, f.status) for f in result.failures} == {("forbidden", 403)}
    assert all(
        "Consent required: the customer gave no consent for this resource (request id req-"
        in failure.message
        for failure in result.failures
    )


async def test_a_secret_echoed_in_a_problem_detail_is_blanked_out(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    portfolio = sandbox.portfolio_for()
    site = next(portfolio.sites(next(portfolio.locations())["id"]))["id"]
    sandbox.faults = Faults(
        error_format="invalid-params", echo_secrets=True, forbidden=frozenset({site})
    )
    async with client_of(sandbox, urls) as (client, secrets):
        with pytest.raises(Forbidden) as caught:
            await client.sites.get(site)
    error = caught.value
    assert error.detail is not None
    assert "; you sent Bearer ***" in error.detail  # the echo is there, the token is not
    assert_no_secret(error, secrets)
    for value in (error.title, error.detail, error.request_id, repr(error)):
        assert not any(secret in str(value) for secret in secrets)
