"""What a token endpoint echoes back reaches no error, failure, output or log.

A careless server quotes the request in its error: the ``Authorization:
Basic`` header (the base64 of ``client_id:client_secret``), a form body
(``refresh_token=...&client_secret=...``), a ``Bearer`` token. The
sandbox's ``echo_secrets`` fault quotes the Basic header as it arrived.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.support import CLIENT_ID, issue, make_client
from token_stores import MemoryTokenStore
from wiser_async import WiserOAuth, crawl_to_jsonl
from wiser_async.errors import TokenEndpointError
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

pytestmark = pytest.mark.timeout(30)

# Not the sandbox's: refused as invalid_client, which the server answers with its echo.
# Form encoding changes it three ways (`+`, `/`, a space), so each form of the
# Basic credential differs.
WRONG_SECRET = "wrong+client/secret with space"


def basic_forms(client_id: str, secret: str) -> Iterator[str]:
    """The base64 of the pair joined raw, form-urlencoded and percent-encoded, padded or not."""
    for encode in (str, quote_plus, lambda text: quote(text, safe="")):
        encoded = base64.b64encode(f"{encode(client_id)}:{encode(secret)}".encode()).decode()
        yield encoded
        yield encoded.rstrip("=")


def forms_of(secret: str) -> list[str]:
    return [secret, quote_plus(secret), quote(secret, safe="")]


async def test_an_echoed_basic_credential_reaches_no_error_failure_output_or_log(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the library's loggers, httpx2's and httpcore2's
    store = MemoryTokenStore()
    stale = await issue(sandbox, store, "acct", expired=True)
    sandbox.faults = Faults(echo_secrets=True)
    output = tmp_path / "out.jsonl"
    async with WiserOAuth(
        client_id=CLIENT_ID,
        client_secret=WRONG_SECRET,
        store=store,
        token_url=urls.token_url,
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        with pytest.raises(TokenEndpointError) as caught:
            await oauth.token("acct")  # the refresh: invalid_client, echoing the header
        async with make_client(oauth, urls) as client:
            crawl = await crawl_to_jsonl(client, output)
    error = caught.value
    assert stale.refresh_token is not None
    secrets = [
        *basic_forms(CLIENT_ID, WRONG_SECRET),
        *forms_of(WRONG_SECRET),
        *forms_of(stale.refresh_token),
        stale.access_token,
    ]
    texts = {
        "str(error)": str(error),
        "repr(error)": repr(error),
        "failures": repr([failure.to_dict() for failure in crawl.failures]),
        "output": output.read_text(),
        "log": caplog.text,
    }
    leaks = [
        (where, secret) for where, text in texts.items() for secret in secrets if secret in text
    ]
    assert leaks == []
    assert error.error == "invalid_client"
    assert "Basic ***" in str(error)  # the server did echo the header, and it was masked
    assert crawl.failures
    assert any("Basic ***" in failure.message for failure in crawl.failures)
    assert "httpcore2" in caplog.text  # the HTTP stack did log at DEBUG


async def test_every_form_of_the_basic_credential_is_masked() -> None:
    async with WiserOAuth(
        client_id="client id/1",
        client_secret="s3cr+t/%2B:with space",
        token_url="https://auth.invalid/token",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        forms = set(basic_forms("client id/1", "s3cr+t/%2B:with space"))
        assert len({form.rstrip("=") for form in forms}) == 3  # three encodings differ
        for form in forms:
            shown = oauth.redact(f"you sent: Authorization: Basic {form}; and {form!r}")
            assert form not in shown
            assert shown == "you sent: Authorization: Basic ***; and '***'"


async def test_a_short_secret_still_masks_its_basic_credential() -> None:
    # Too short to be masked alone (it would blank out words), long enough with the id.
    async with WiserOAuth(
        client_id=CLIENT_ID, client_secret="abc", token_url="https://auth.invalid/token"
    ) as oauth:
        (padded, unpadded, *_) = basic_forms(CLIENT_ID, "abc")
        assert oauth.redact(f"got {padded}") == "got ***"
        assert oauth.redact(f"got {unpadded}") == "got ***"


@pytest.mark.parametrize(
    ("echoed", "shown"),
    [
        ("Authorization: Bearer 9f8e7d6c5b4a", "Authorization: Bearer ***"),
        ("bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "bearer ***"),
        ("Basic dW5rbm93bjpwYWlyIQ==", "Basic ***"),
        (
            "grant_type=refresh_token&refresh_token=r-UNKNOWN-1&client_secret=s%2Bx&client_id=c",
            "grant_type=refresh_token&refresh_token=***&client_secret=***&client_id=c",
        ),
        (
            "code=c0de-unknown&code_verifier=v-unknown-verifier&redirect_uri=x",
            "code=***&code_verifier=***&redirect_uri=x",
        ),
    ],
)
async def test_credentials_this_process_never_saw_are_masked_where_they_stand(
    echoed: str, shown: str
) -> None:
    # Another process's tokens, a code before its exchange: masked by their place.
    async with WiserOAuth(
        client_id="c", client_secret="some-client-secret", token_url="https://auth.invalid/token"
    ) as oauth:
        assert oauth.redact(f"you sent: {echoed}") == f"you sent: {shown}"


@pytest.mark.parametrize(
    "text",
    [
        "HTTP Basic authentication failed",
        'Bearer error="invalid_token", error_description="expired"',
        "the Bearer token expired",
        "postal_code=75001 zipcode=12345",
    ],
)
async def test_words_after_an_authorization_scheme_stay_readable(text: str) -> None:
    async with WiserOAuth(
        client_id="c", client_secret="some-client-secret", token_url="https://auth.invalid/token"
    ) as oauth:
        assert oauth.redact(text) == text
