"""Counters of what the sandbox saw, safe to read from another thread."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import attrs

__all__ = ["SandboxStats", "StatsRecorder"]


@attrs.frozen
class SandboxStats:
    """A snapshot of the sandbox's counters.

    API requests are those that matched an API route (an unknown path is
    answered 404 and not counted). A dropped answer counts in ``dropped``, not
    in ``responses_by_status``: its client never sees a status.

    Attributes:
        requests: API requests, whatever their outcome.
        in_flight: API requests being handled now (latency included).
        peak_in_flight: The most API requests ever handled at once.
        responses_by_status: API answers by HTTP status.
        requests_by_route: API requests by route template, e.g.
            ``/sites/{siteId}/devices``.
        token_requests: Token-endpoint requests by ``grant_type``.
        token_errors: Token-endpoint errors by OAuth error code.
        refresh_reuse_detected: Refreshes with a refresh token already rotated away.
        throttled: 429 answers sent.
        dropped: Connections dropped mid-answer.
        trickled: Answers sent byte by byte (the ``trickle`` fault), begun.
        trickling: Those being sent now.
        trickles_abandoned: Those whose client disconnected before the last byte.

    .. versionadded:: 0.1.0
    """

    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    responses_by_status: dict[int, int] = attrs.field(factory=dict)
    requests_by_route: dict[str, int] = attrs.field(factory=dict)
    token_requests: dict[str, int] = attrs.field(factory=dict)
    token_errors: dict[str, int] = attrs.field(factory=dict)
    refresh_reuse_detected: int = 0
    throttled: int = 0
    dropped: int = 0
    trickled: int = 0
    trickling: int = 0
    trickles_abandoned: int = 0

    def to_json(self) -> dict[str, Any]:
        """The snapshot as JSON values (status keys become strings)."""
        out = attrs.asdict(self)
        out["responses_by_status"] = {str(k): v for k, v in self.responses_by_status.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxStats:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        fields["responses_by_status"] = {
            int(k): v for k, v in data.get("responses_by_status", {}).items()
        }
        return cls(**fields)


@attrs.define
class StatsRecorder:
    """The live counters behind :class:`SandboxStats`.

    The app may run on a server thread while a test reads from its own, so
    every update and every snapshot holds one lock; the sections are short.
    """

    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    responses_by_status: Counter[int] = attrs.field(factory=Counter)
    requests_by_route: Counter[str] = attrs.field(factory=Counter)
    token_requests: Counter[str] = attrs.field(factory=Counter)
    token_errors: Counter[str] = attrs.field(factory=Counter)
    refresh_reuse_detected: int = 0
    throttled: int = 0
    dropped: int = 0
    trickled: int = 0
    trickling: int = 0
    trickles_abandoned: int = 0

    def reset(self) -> None:
        """Zero every counter but the gauges (requests and trickles still running stay counted)."""
        with self._lock:
            fresh = StatsRecorder(
                in_flight=self.in_flight, peak_in_flight=self.in_flight, trickling=self.trickling
            )
            for field in attrs.fields(StatsRecorder):
                if field.name != "_lock":
                    setattr(self, field.name, getattr(fresh, field.name))

    def snapshot(self) -> SandboxStats:
        """A consistent copy of the counters."""
        with self._lock:
            return SandboxStats(
                requests=self.requests,
                in_flight=self.in_flight,
                peak_in_flight=self.peak_in_flight,
                responses_by_status=dict(self.responses_by_status),
                requests_by_route=dict(self.requests_by_route),
                token_requests=dict(self.token_requests),
                token_errors=dict(self.token_errors),
                refresh_reuse_detected=self.refresh_reuse_detected,
                throttled=self.throttled,
                dropped=self.dropped,
                trickled=self.trickled,
                trickling=self.trickling,
                trickles_abandoned=self.trickles_abandoned,
            )

    def request_started(self, route: str) -> None:
        """An API request matched ``route``."""
        with self._lock:
            self.requests += 1
            self.requests_by_route[route] += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def request_finished(self, status: int | None, *, dropped: bool) -> None:
        """An API request ended: answered ``status``, dropped on purpose, or cut short (neither)."""
        with self._lock:
            self.in_flight -= 1
            if dropped:
                self.dropped += 1
            elif status is not None:
                self.responses_by_status[status] += 1
                if status == 429:
                    self.throttled += 1

    def trickle_started(self) -> None:
        """An answer began to trickle."""
        with self._lock:
            self.trickled += 1
            self.trickling += 1

    def trickle_finished(self, *, abandoned: bool) -> None:
        """A trickle ended: its last byte sent, or its client gone."""
        with self._lock:
            self.trickling -= 1
            if abandoned:
                self.trickles_abandoned += 1

    def token_request(self, grant_type: str, error: str | None, *, reuse: bool = False) -> None:
        """A token-endpoint request ended, with an OAuth error code or not."""
        with self._lock:
            self.token_requests[grant_type] += 1
            if error is not None:
                self.token_errors[error] += 1
            if reuse:
                self.refresh_reuse_detected += 1
