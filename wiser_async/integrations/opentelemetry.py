"""OpenTelemetry spans and counters for `AsyncWiserClient`, from its ``on_event`` hook.

Needs only ``opentelemetry-api`` (``pip install 'wiser-async[otel]'``); the
application brings and configures the SDK and its exporters::

    from wiser_async.integrations.opentelemetry import OpenTelemetryHook

    client = AsyncWiserClient(oauth, "acme", on_event=OpenTelemetryHook())

It gives:

- a span of kind CLIENT per HTTP request sent (a retry and a re-send after a
  401 are requests of their own), named ``"GET /sites/{site_id}/devices"``
  after the path template, with its real start and end times and the
  attributes ``http.request.method``, ``url.template``, ``url.path`` (the path
  sent, without its query), ``http.response.status_code`` (when an answer
  came), ``error.type`` (for a status of 400 or more, or no answer),
  ``wiser.attempt`` and ``wiser.account``. The span's parent is the span
  current where the call was made (the hook runs in the caller's task);
- the counters ``wiser.requests`` (by ``http.request.method``, ``url.template``,
  ``http.response.status_code``), ``wiser.retries`` (by ``wiser.reason``),
  ``wiser.throttled``, ``wiser.refreshes`` and ``wiser.failures`` (crawl
  failures, by ``wiser.failure.kind``). Counters carry no account: accounts
  are many, and each would be a time series of its own.

The events arrive once a request has ended, so spans are created after the
fact with the event's timestamps. To also run a hook of your own, call both::

    otel = OpenTelemetryHook()
    client = AsyncWiserClient(oauth, "acme", on_event=lambda e: (otel(e), mine(e)))
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .._extras import extra_missing

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:
    raise extra_missing("wiser_async.integrations.opentelemetry", "otel", exc) from exc

from wiser_async import (
    ClientEvent,
    FailureRecorded,
    RequestDone,
    RequestRetried,
    Throttled,
    TokenRefreshed,
)

__all__ = ["OpenTelemetryHook"]

_SCOPE = "wiser_async"
_NANOS = 1_000_000_000


def _version() -> str:
    try:
        return version("wiser-async")
    except PackageNotFoundError:  # pragma: no cover - run from a tree never installed
        return ""


class OpenTelemetryHook:
    """An ``on_event`` hook that records spans and counters with OpenTelemetry.

    Args:
        tracer_provider: Where spans go; None: the global one.
        meter_provider: Where counters go; None: the global one.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, _version(), tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, _version(), meter_provider=meter_provider)
        self._requests = meter.create_counter(
            "wiser.requests", unit="{request}", description="HTTP requests sent"
        )
        self._retries = meter.create_counter(
            "wiser.retries", unit="{retry}", description="Requests repeated after a failure"
        )
        self._throttled = meter.create_counter(
            "wiser.throttled", unit="{response}", description="429 answers received"
        )
        self._refreshes = meter.create_counter(
            "wiser.refreshes", unit="{refresh}", description="Token refreshes made by requests"
        )
        self._failures = meter.create_counter(
            "wiser.failures", unit="{failure}", description="Failures recorded by crawls"
        )

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    def __call__(self, event: ClientEvent) -> None:
        """Record `event` (quick: a span or a counter increment, no I/O)."""
        if isinstance(event, RequestDone):
            self._request_done(event)
        elif isinstance(event, RequestRetried):
            self._retries.add(1, {"wiser.reason": event.reason})
        elif isinstance(event, Throttled):
            self._throttled.add(1)
        elif isinstance(event, TokenRefreshed):
            self._refreshes.add(1)
        elif isinstance(event, FailureRecorded):
            self._failures.add(1, {"wiser.failure.kind": event.failure.kind})

    def _request_done(self, event: RequestDone) -> None:
        attributes: dict[str, str | int] = {
            "http.request.method": event.method,
            "url.template": event.path_template,
        }
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        self._requests.add(1, attributes)
        span = self._tracer.start_span(
            f"{event.method} {event.path_template}",
            kind=SpanKind.CLIENT,
            attributes={
                **attributes,
                "url.path": event.path.partition("?")[0],
                "wiser.attempt": event.attempt,
                "wiser.account": event.account,
            },
            start_time=int(event.started_at * _NANOS),
        )
        if event.status is None or event.status >= 400:
            error = "no_response" if event.status is None else str(event.status)
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=int(event.ended_at * _NANOS))
