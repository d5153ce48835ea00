"""What a client tells its observers: the ``on_event`` hook, log records, OpenTelemetry.

Over loopback HTTP against the sandbox: every request the client sends is
seen by the hook with its template, status and attempt, the hook's counts
are the client's stats, a failing hook breaks nothing, and no log record of
a whole session holds a secret.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import FAST_RETRY, issue, make_client, make_oauth, secrets_of
from token_stores import MemoryTokenStore, Token
from wiser_async import (
    AsyncWiserClient,
    ClientEvent,
    FailureRecorded,
    RequestDone,
    RequestRetried,
    Throttled,
    TokenRefreshed,
    WiserOAuth,
)
from wiser_async.errors import RateLimited, ServerError
from wiser_async.integrations.opentelemetry import OpenTelemetryHook
from wiser_async.sandbox import Faults, Sandbox, SandboxUrls

# Every test runs on each HTTP stack (see conftest.py).
pytestmark = pytest.mark.usefixtures("http_stack")

# Enough retries for every 503 and 429 of a test, without the budget running dry.
RETRY = attrs.evolve(FAST_RETRY, budget_burst=1000.0)


@attrs.define
class Observed:
    client: AsyncWiserClient
    oauth: WiserOAuth
    store: MemoryTokenStore
    sandbox: Sandbox
    events: list[ClientEvent]
    tokens: list[Token]

    def of(self, kind: type[ClientEvent]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def first_site(self) -> str:
        portfolio = self.sandbox.portfolio_for()
        return str(next(portfolio.sites(next(portfolio.locations())["id"]))["id"])

    async def keep_token(self) -> None:
        """Note the account's token of now, so a test can look for it in logs."""
        token = await self.store.load("acct")
        assert token is not None
        self.tokens.append(token)

    @property
    def secrets(self) -> list[str]:
        return secrets_of(*self.tokens)


@asynccontextmanager
async def observed(
    sandbox: Sandbox, urls: SandboxUrls, *, hook: Any = None, expired: bool = False
) -> AsyncIterator[Observed]:
    """A client whose hook appends to ``events`` (then calls `hook`, if given)."""
    store = MemoryTokenStore()
    token = await issue(sandbox, store, "acct", expired=expired)
    events: list[ClientEvent] = []

    def on_event(event: ClientEvent) -> None:
        events.append(event)
        if hook is not None:
            hook(event)

    async with (
        make_oauth(urls, store) as oauth,
        make_client(oauth, urls, retry=RETRY, on_event=on_event) as client,
    ):
        yield Observed(client, oauth, store, sandbox, events, [token])


async def a_session_with_everything(seen: Observed) -> None:
    """Plain reads, a refresh after a 401, 503s retried, 429s, and a crawl with a failure."""
    client, sandbox = seen.client, seen.sandbox
    await client.locations.list(page_size=2)
    await client.sites.get(seen.first_site())
    sandbox.revoke_access_tokens()
    await client.locations.page()  # 401, refresh, the same attempt sent again
    await seen.keep_token()
    sandbox.faults = Faults(error_rate=1.0, error_statuses=(503,), echo_secrets=True)
    with pytest.raises(ServerError):
        await client.locations.page()
    sandbox.faults = Faults(throttle_rate=1.0, retry_after=0.01, echo_secrets=True)
    with pytest.raises(RateLimited):
        await client.locations.page()
    sandbox.faults = Faults(forbidden=frozenset({seen.first_site()}), echo_secrets=True)
    result = await client.crawl(page_size=50)
    assert result.failures
    sandbox.faults = Faults()


async def test_the_hook_sees_every_request_with_its_template_status_and_attempt(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    async with observed(sandbox, urls) as seen:
        site_id = seen.first_site()
        await seen.client.locations.list(page_size=2)
        await seen.client.sites.get(site_id)
        await seen.client.devices.of_site(site_id).page(offset=0, limit=3)
        done = seen.of(RequestDone)
        assert [(event.path_template, event.status, event.attempt) for event in done] == [
            ("/locations", 200, 1),
            ("/locations", 200, 1),
            ("/sites/{site_id}", 200, 1),
            ("/sites/{site_id}/devices", 200, 1),
        ]
        assert done[0].path == "/locations?offset=0&limit=2"
        assert done[2].path == f"/sites/{site_id}"
        assert all(event.method == "GET" and event.account == "acct" for event in done)
        assert all(
            0 <= event.duration < 10 and event.ended_at >= event.started_at for event in done
        )

        sandbox.faults = Faults(error_rate=1.0, error_statuses=(503,))
        with pytest.raises(ServerError):
            await seen.client.locations.page()
        retried = seen.of(RequestRetried)
        assert [(event.attempt, event.status, event.reason) for event in retried] == [
            (2, 503, "server_error"),
            (3, 503, "server_error"),
            (4, 503, "server_error"),
        ]
        assert [(event.status, event.attempt) for event in seen.of(RequestDone)[4:]] == [
            (503, 1),
            (503, 2),
            (503, 3),
            (503, 4),
        ]

        sandbox.faults = Faults(throttle_rate=1.0, retry_after=0.01)
        with pytest.raises(RateLimited):
            await seen.client.locations.page()
        throttled = seen.of(Throttled)
        assert len(throttled) == RETRY.attempts
        assert {event.path for event in throttled} == {"/locations?offset=0&limit=500"}
        assert [event.retry_after for event in throttled] == [pytest.approx(0.01)] * RETRY.attempts
        assert seen.of(RequestRetried)[-1].reason == "rate_limited"

        sandbox.faults = Faults()
        sandbox.revoke_access_tokens()
        await seen.client.locations.page()
        last_two = seen.of(RequestDone)[-2:]
        assert [(event.status, event.attempt) for event in last_two] == [(401, 1), (200, 1)]
        assert seen.of(TokenRefreshed) == [TokenRefreshed("acct")]
        assert seen.oauth.token_requests.get("refresh_token") == 1

        stats = seen.client.stats
        assert len(seen.of(RequestDone)) == stats.requests == sandbox.stats.requests
        assert len(seen.of(RequestRetried)) == stats.retries
        assert len(seen.of(Throttled)) == stats.throttled


async def test_siblings_share_the_hook(sandbox: Sandbox, urls: SandboxUrls) -> None:
    async with observed(sandbox, urls) as seen:
        await issue(sandbox, seen.store, "other")
        await seen.client.for_account("other").locations.list()
        await seen.client.locations.list()
    assert [event.account for event in seen.of(RequestDone)] == ["other", "acct"]


async def test_a_proactive_refresh_is_an_event(sandbox: Sandbox, urls: SandboxUrls) -> None:
    async with observed(sandbox, urls, expired=True) as seen:
        await seen.client.locations.list()
        await seen.oauth.refresh("acct")  # not the client's: no event
    assert seen.of(TokenRefreshed) == [TokenRefreshed("acct")]
    assert [event.status for event in seen.of(RequestDone)] == [200]


async def test_crawl_failures_are_events_and_warnings(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wiser_async.crawl")
    async with observed(sandbox, urls) as seen:
        site_id = seen.first_site()
        sandbox.faults = Faults(forbidden=frozenset({site_id}))
        result = await seen.client.crawl(page_size=50)
    assert result.failures
    assert [event.failure for event in seen.of(FailureRecorded)] == result.failures
    records = [record for record in caplog.records if record.name == "wiser_async.crawl"]
    assert len(records) == len(result.failures)
    for record, failure in zip(records, result.failures, strict=True):
        assert record.levelno == logging.WARNING
        assert (record.account, record.resource, record.kind) == (  # type: ignore[attr-defined]
            "acct",
            failure.resource,
            "forbidden",
        )
        assert failure.resource in record.getMessage()


async def test_retries_and_429s_are_logged_with_structure(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wiser_async")
    async with observed(sandbox, urls) as seen:
        sandbox.faults = Faults(error_rate=1.0, error_statuses=(502,))
        with pytest.raises(ServerError):
            await seen.client.locations.page(limit=7)
        sandbox.faults = Faults(throttle_rate=1.0, retry_after=0.01)
        with pytest.raises(RateLimited):
            await seen.client.sites.get(seen.first_site())
    records = [record for record in caplog.records if record.name == "wiser_async.http"]
    retries = [record for record in records if record.levelno == logging.INFO]
    pauses = [record for record in records if record.levelno == logging.WARNING]
    assert len(retries) == 2 * (RETRY.attempts - 1)
    first: Any = retries[0]
    assert (first.http_method, first.path, first.path_template, first.attempt, first.reason) == (
        "GET",
        "/locations?offset=0&limit=7",
        "/locations",
        2,
        "server_error",
    )
    assert "retrying GET /locations?offset=0&limit=7 (attempt 2 of 4)" in first.getMessage()
    assert len(pauses) == RETRY.attempts
    pause: Any = pauses[0]
    assert pause.retry_after == pytest.approx(0.01)
    assert pause.path.startswith("/sites/")
    assert pause.path in pause.getMessage()


async def test_a_raising_hook_breaks_nothing_and_is_logged_once(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Counter[str]()

    def broken(event: ClientEvent) -> None:
        calls[type(event).__name__] += 1
        raise RuntimeError("the hook is broken")

    caplog.set_level(logging.ERROR, logger="wiser_async.events")
    async with observed(sandbox, urls, hook=broken, expired=True) as seen:
        assert len(await seen.client.locations.list(page_size=1)) == 3
        sandbox.faults = Faults(error_rate=1.0, error_statuses=(503,))
        with pytest.raises(ServerError):  # the API's error, not the hook's
            await seen.client.locations.page()
        sandbox.faults = Faults()
        await seen.client.crawl()
        stats = seen.client.stats
    assert calls["RequestDone"] == stats.requests
    assert calls["RequestRetried"] == stats.retries == RETRY.attempts - 1
    assert calls["TokenRefreshed"] == 1
    errors = [record for record in caplog.records if record.name == "wiser_async.events"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None


async def test_without_a_hook_no_event_is_built(sandbox: Sandbox, urls: SandboxUrls) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        assert client.requester.session.events is None
        # Paths are plain strings: no template is kept for a hook that is not there.
        assert type(client.requester.path("/sites/{site_id}", site_id="s1")) is str
        await client.locations.list()
    async with observed(sandbox, urls) as seen:
        assert type(seen.client.requester.path("/sites/{site_id}", site_id="s1")) is not str


def counter_sums(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    sums: dict[str, int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points: Any = metric.data.data_points
                sums[metric.name] = sum(int(point.value) for point in points)
    return sums


async def test_opentelemetry_spans_and_counters(sandbox: Sandbox, urls: SandboxUrls) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel = OpenTelemetryHook(tracer_provider=tracer_provider, meter_provider=meter_provider)
    async with observed(sandbox, urls, hook=otel, expired=True) as seen:
        await a_session_with_everything(seen)
        stats = seen.client.stats
    spans = exporter.get_finished_spans()
    done = seen.of(RequestDone)
    assert len(spans) == len(done) == stats.requests
    for span, event in zip(spans, done, strict=True):
        assert span.name == f"GET {event.path_template}"
        assert span.attributes is not None
        assert span.attributes["http.request.method"] == "GET"
        assert span.attributes["url.template"] == event.path_template
        assert span.attributes["url.path"] == event.path.partition("?")[0]
        assert span.attributes["wiser.attempt"] == event.attempt
        assert span.attributes["wiser.account"] == "acct"
        assert span.attributes.get("http.response.status_code") == event.status
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.end_time - span.start_time == pytest.approx(event.duration * 1e9, abs=1e4)
    names = {span.name for span in spans}
    assert {"GET /locations", "GET /sites/{site_id}", "GET /sites/{site_id}/devices"} <= names
    statuses = Counter(span.attributes.get("http.response.status_code") for span in spans)  # type: ignore[union-attr]
    assert statuses[401] == 1
    assert statuses[403] >= 1
    assert statuses[503] == RETRY.attempts
    assert statuses[429] == RETRY.attempts

    sums = counter_sums(reader)
    assert sums["wiser.requests"] == stats.requests
    assert sums["wiser.retries"] == stats.retries
    assert sums["wiser.throttled"] == stats.throttled == RETRY.attempts
    assert sums["wiser.refreshes"] == seen.oauth.token_requests["refresh_token"] == 2
    assert sums["wiser.failures"] == len(seen.of(FailureRecorded)) > 0


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could show of `record`: message, args and extra fields."""
    standard = logging.makeLogRecord({}).__dict__.keys()
    extra = {key: value for key, value in record.__dict__.items() if key not in standard}
    return f"{record.getMessage()} {record.msg!r} {record.args!r} {extra!r}"


async def test_debug_logs_and_events_of_a_whole_session_hold_no_secret(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with observed(sandbox, urls, expired=True) as seen:
        await seen.keep_token()  # refreshed by the first request
        await a_session_with_everything(seen)
        await seen.keep_token()
        stats = seen.client.stats
    assert stats.retries > 0
    assert stats.throttled > 0
    assert seen.oauth.token_requests["refresh_token"] == 2
    levels = {(record.name, record.levelno) for record in caplog.records}
    assert ("wiser_async.http", logging.INFO) in levels  # retries
    assert ("wiser_async.http", logging.WARNING) in levels  # 429s
    assert ("wiser_async.oauth", logging.INFO) in levels  # refreshes
    assert ("wiser_async.crawl", logging.WARNING) in levels  # failures
    secrets = seen.secrets
    assert len(secrets) == 1 + 2 * 4  # the client secret, and four tokens' two each
    for record in caplog.records:
        text = record_text(record)
        for secret in secrets:
            assert secret not in text, record.name
    events = repr(seen.events)
    for secret in secrets:
        assert secret not in events


@pytest.mark.parametrize(
    "name",
    ["wiser_async.oauth", "wiser_async.crawl", "wiser_async.queue", "wiser_async.web"],
)
async def test_every_library_logger_redacts_the_client_secret(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "queue-and-web-secret-0123456789"
    async with WiserOAuth(client_id="logs", client_secret=secret, store=MemoryTokenStore()):
        caplog.set_level(logging.INFO, logger=name)
        logging.getLogger(name).info("a server echoed %s", secret)
    [record] = [record for record in caplog.records if record.name == name]
    assert secret not in record.getMessage()
    assert "a server echoed" in record.getMessage()
