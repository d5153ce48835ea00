"""When each request was in flight, seen from the client, and where a makespan's time went.

`TimedTransport` wraps the transport a client sends through (httpx2's own
or the aiohttp one) and time-stamps each request: from the moment it
reaches the transport to the moment its body is read to the end (or the
response is closed). Nothing in the library changes: the client is given
``transport=TimedTransport(...)`` as an application could give any transport.

`breakdown` turns those stamps into what a makespan over its lower bound is
made of. With ``S`` slots (the in-flight limit), ``N`` requests, latency
``L`` and makespan ``M``, the slot-seconds of the run are every request's
duration plus the time slots sat idle::

    S x M = N x (L + overhead) + idle
    M - N x L / S = N x overhead / S + idle / S

so the excess over the bound splits exactly into the requests' own cost
beyond the latency (`overhead`) and idle slots, the latter split again into
the ramp (before ``S`` requests are first in flight), the tail (after the
last moment they were) and the steady part in between.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx2

__all__ = ["Breakdown", "TimedTransport", "breakdown"]


class _TimedStream(httpx2.AsyncByteStream):
    """A response body that records when it was read to the end, or closed."""

    def __init__(
        self, inner: httpx2.AsyncByteStream, spans: list[tuple[float, float]], started: float
    ) -> None:
        self._inner = inner
        self._spans = spans
        self._started = started
        self._done = False

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._spans.append((self._started, time.perf_counter()))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
        self._finish()

    async def aclose(self) -> None:
        self._finish()
        await self._inner.aclose()


@dataclass
class TimedTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport recording ``(start, end)`` of every request it sends.

    Attributes:
        inner: The transport that sends the requests.
        spans: ``(start, end)`` in `time.perf_counter` seconds, appended as
            requests end (a request whose body is never read or closed is
            not recorded).
        urls: Every URL sent, in order.
    """

    inner: httpx2.AsyncBaseTransport
    spans: list[tuple[float, float]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def clear(self) -> None:
        """Forget what was recorded (after a warm-up)."""
        self.spans.clear()
        self.urls.clear()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        started = time.perf_counter()
        self.urls.append(str(request.url))
        response = await self.inner.handle_async_request(request)
        stream = response.stream
        if not isinstance(stream, httpx2.AsyncByteStream):
            raise TypeError(f"an async transport answered with a {type(stream).__name__}")
        response.stream = _TimedStream(stream, self.spans, started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, kw_only=True)
class Breakdown:
    """Where one run's time went, in seconds unless named otherwise.

    Attributes:
        makespan_s: The run's wall time (its own clock, not the first
            request's start).
        bound_s: ``requests x latency / slots``.
        excess_s: ``makespan_s - bound_s``.
        excess_from_overhead_s: ``requests x overhead / slots``: the part of
            the excess the requests' own cost beyond the latency explains.
        excess_from_idle_s: ``idle_slot_s / slots``, split into ramp, steady
            and tail below; with the overhead, it adds up to the excess.
        ramp_s: From the start until ``slots`` requests were first in flight
            (the whole run if they never were).
        tail_s: From the last moment ``slots`` requests were in flight to the end.
        mean_in_flight: Requests in flight, averaged over the run.
        idle_slot_s: Slot-seconds with no request in them.
        ramp_idle_slot_s, steady_idle_slot_s, tail_idle_slot_s: The same,
            before the ramp ended, in between, and in the tail.
        request_ms: A request's mean duration at the transport.
        overhead_ms: ``request_ms`` minus the latency.
        start_gap_ms: From the start of the run to its first request.
    """

    makespan_s: float
    bound_s: float
    excess_s: float
    excess_from_overhead_s: float
    excess_from_idle_s: float
    ramp_s: float
    tail_s: float
    mean_in_flight: float
    idle_slot_s: float
    ramp_idle_slot_s: float
    steady_idle_slot_s: float
    tail_idle_slot_s: float
    request_ms: float
    overhead_ms: float
    start_gap_ms: float

    def to_json(self) -> dict[str, Any]:
        """The fields as a dict."""
        return dict(self.__dict__)


def breakdown(
    spans: list[tuple[float, float]],
    *,
    started: float,
    finished: float,
    latency: float,
    slots: int,
) -> Breakdown:
    """How a run from ``started`` to ``finished`` used its ``slots`` (see the module).

    Raises:
        ValueError: No request was recorded, or the run has no duration.
    """
    if not spans or not finished > started:
        raise ValueError("no request recorded in the run")
    makespan = finished - started
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    in_flight = 0
    ramp_end: float | None = None
    last_drop: float | None = None
    # (time, in flight from then on): the step function of the run. Ends sort
    # before starts at the same instant (-1 < 1).
    steps: list[tuple[float, int]] = [(started, 0)]
    for moment, change in events:
        if in_flight >= slots > in_flight + change:
            last_drop = moment
        in_flight += change
        steps.append((moment, in_flight))
        if in_flight >= slots and ramp_end is None:
            ramp_end = moment
    # Never full: the whole run is ramp, and there is no tail.
    ramp_end = finished if ramp_end is None else ramp_end
    tail_start = finished if last_drop is None else max(last_drop, ramp_end)
    steps.append((finished, 0))

    def idle_between(low: float, high: float) -> float:
        total = 0.0
        for (moment, level), (following, _) in pairwise(steps):
            lo, hi = max(moment, low), min(following, high)
            if hi > lo:
                total += (hi - lo) * max(0, slots - level)
        return total

    durations = [end - start for start, end in spans]
    busy = sum(durations)
    requests = len(spans)
    request_s = busy / requests
    overhead = request_s - latency
    idle = slots * makespan - busy
    ramp_idle = idle_between(started, ramp_end)
    tail_idle = idle_between(tail_start, finished)
    bound = requests * latency / slots
    return Breakdown(
        makespan_s=makespan,
        bound_s=bound,
        excess_s=makespan - bound,
        excess_from_overhead_s=requests * overhead / slots,
        excess_from_idle_s=idle / slots,
        ramp_s=ramp_end - started,
        tail_s=finished - tail_start,
        mean_in_flight=busy / makespan,
        idle_slot_s=idle,
        ramp_idle_slot_s=ramp_idle,
        steady_idle_slot_s=idle - ramp_idle - tail_idle,
        tail_idle_slot_s=tail_idle,
        request_ms=1000 * request_s,
        overhead_ms=1000 * overhead,
        start_gap_ms=1000 * (min(start for start, _ in spans) - started),
    )
