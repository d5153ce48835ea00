"""Fault injection: what can go wrong between a client and the API, on demand."""

from __future__ import annotations

import math
import random
import time
import weakref
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any, Literal

import attrs

from ._http import ERROR_FORMATS, ErrorFormat

__all__ = ["EVERY_RESOURCE", "REDIRECT_STATUSES", "FaultPlan", "Faults", "format_retry_after"]

RetryAfterFormat = Literal["seconds", "http-date"]

EVERY_RESOURCE = "*"
"""The id, in a fault's id set, of the root above every resource (and ``/locations``)."""
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Generated bodies are bytes, but a value set through the admin route must not
# ask for gigabytes: 10 M items of ``{}`` are 30 MB, 10 M levels of ``[]`` 20 MB.
_MAX_GENERATED = 10_000_000


def _ids(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError("expected a collection of resource ids, not one string")
    return frozenset(value)


def _statuses(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


_fraction = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))
_non_negative = attrs.validators.ge(0.0)
_positive_or_none = attrs.validators.optional(attrs.validators.gt(0.0))
_generated = [
    attrs.validators.instance_of(int),
    attrs.validators.ge(1),
    attrs.validators.le(_MAX_GENERATED),
]


def _header_value(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{attribute.name} must be latin-1 (an HTTP header value)") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{attribute.name} must hold no control characters")


def _server_errors(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[int, ...]
) -> None:
    if not value or any(not 500 <= status <= 599 for status in value):
        raise ValueError(f"{attribute.name} must be a non-empty tuple of 5xx statuses")


@attrs.define
class Faults:
    """What the sandbox does wrong, on purpose, to API requests.

    Mutable: a change applies to the next request. Faults never touch the
    authorize or admin routes; only the ``token_*`` faults (and
    ``echo_secrets``) touch the token endpoint. Rates are fractions in [0, 1],
    drawn from a random generator seeded with ``seed``.

    Id sets (``forbidden``, ``trickle``...) name resources by id and cover what
    is beneath them too: a location's sites, rooms and devices, a site's rooms
    and devices. A page belongs to its parent (``/sites/{siteId}/rooms`` to the
    site); the id ``"*"`` stands for the root above every resource, so it covers
    every API request, ``/locations`` included (no other id reaches it).

    A request meets them in this order: ``latency``; bearer authentication;
    throttle bursts, ``rate_limit``, ``throttle_rate`` (429); ``error_rate``
    (5xx); ``long_retry_after`` (429), ``redirects`` (3xx), ``forbidden`` (403),
    ``missing`` (404) and the resource itself (404); then the 200 answer, built
    in this order: a page's items from ``same_page_forever``, else
    ``endless_pages``, else the real ones; ``odd_ids``, ``deep_nesting``,
    ``oversized_pages``, ``huge_totals`` (or no ``meta.total`` under
    ``omit_total``, ``same_page_forever`` or ``endless_pages``), ``malformed``;
    then the delivery of whatever answer it is: dropped mid-body under
    ``drop_rate``, else sent byte by byte under ``trickle``.

    Args:
        latency: Seconds slept by every API request.
        latency_jitter: Uniform +/- spread around ``latency`` (never below 0).
        token_latency: Seconds slept by every token-endpoint request, before
            the server acts on it.
        token_answer_delay: Seconds between the server acting on a token
            request (a code spent, a refresh token rotated) and its answer.
        token_answer_drops: How many of the next token answers are dropped
            after the server acted: the client never learns the new tokens.
        token_expires_in: The ``expires_in`` successful token answers advertise
            instead of the real lifetime: any JSON value (``"3600.5"``,
            ``"soon"``, ``[3600]``, ``0``...); ``None``: the real one.
        token_expires_in_raw: JSON text put as ``expires_in`` verbatim (for
            values Python cannot write, such as ``1e400``); wins over
            ``token_expires_in``.
        token_type: The ``token_type`` successful token answers carry instead
            of ``Bearer`` (``"mac"``, ``"DPoP"``...); ``None``: ``Bearer``.
        echo_secrets: Every error answer repeats what the client sent: API
            errors quote the bearer token, token-endpoint errors the refresh
            token, code, verifier and client credentials; API answers carry the
            ``Authorization`` header back as ``x-echo-authorization``.
        error_rate: Fraction of API requests answered with a status from
            ``error_statuses``; 502, 503 and 504 carry an HTML body as a proxy
            would, other statuses the JSON error body.
        error_statuses: The 5xx statuses ``error_rate`` picks from.
        throttle_rate: Fraction of API requests answered 429.
        retry_after: ``Retry-After`` of ``throttle_rate`` answers, in seconds.
        retry_after_format: ``"seconds"`` (an integer when integral, else a
            decimal) or ``"http-date"`` (rounded up to the next whole second).
        throttle_burst_every: Period of throttle bursts, in seconds since the
            first request these burst settings applied to (so the first
            request after setting them falls in a burst); ``None`` for no bursts.
        throttle_burst_length: During ``[k * every, k * every + length)`` every
            API request gets 429, ``Retry-After`` the rest of the burst.
        rate_limit: Requests per second allowed (a token bucket); the excess gets
            429 with ``Retry-After`` the time until the next token. ``None``: no limit.
        rate_limit_burst: Bucket capacity; ``None`` means ``max(1, rate_limit)``.
        drop_rate: Fraction of API requests whose connection drops mid-body: the
            client sees :class:`httpx2.RemoteProtocolError`, over loopback and in-process.
        forbidden: Resource ids answered 403 ``consent_required``, along with
            every request on a resource beneath them.
        missing: Resource ids answered 404, along with everything beneath them.
        malformed: Resource ids whose answers (and those beneath them) are 200
            with a truncated JSON body.
        omit_total: Pages leave out ``meta.total``.
        deep_nesting: Resource ids whose 200 answers (and those beneath them)
            carry a deeply nested array: the entity, or the first item of a
            page, gets an extra field ``"nested"`` holding ``nesting_depth``
            nested arrays (``"nested":[[[...]]]``, written as bytes). An empty
            page stays as it is.
        nesting_depth: How many arrays ``deep_nesting`` nests, 1 to 10,000,000.
        oversized_pages: Resource ids whose pages (and those beneath them) hold
            far more than the ``limit`` asked: their real items, then
            ``oversized_items`` empty objects ``{}`` (3 bytes each, about 4 MiB
            by default); ``meta`` is unchanged.
        oversized_items: How many ``{}`` an oversized page adds, 1 to 10,000,000.
        huge_totals: Resource ids whose pages (and those beneath them) report
            ``meta.total`` as ``huge_total``, even under ``omit_total``. The
            items are the real ones: a first page is full when the collection
            holds ``limit`` items or more, and a page past the real end is empty.
        huge_total: The ``meta.total`` of ``huge_totals`` pages, any int >= 0
            (``2**70`` too).
        trickle: Resource ids whose answers (and those beneath them), whatever
            their status, are sent one byte at a time: status line and headers
            (with the real ``Content-Length``) at once, then one byte every
            ``trickle_interval`` seconds (the first one interval after the
            headers), so a client whose timeout is per read never times out.
            A client that disconnects stops the trickle. Dropped answers do not
            trickle. :class:`SandboxStats` counts trickles begun, running and
            abandoned by their client.
        trickle_interval: Seconds before each trickled byte; 0 sends each byte
            in its own chunk without waiting.
        long_retry_after: Resource ids (and those beneath them) answered 429
            with ``Retry-After`` ``long_retry_after_seconds`` away, written as
            ``retry_after_format`` says.
        long_retry_after_seconds: Their ``Retry-After``, in seconds (a year by
            default).
        redirects: Resource ids (and those beneath them) answered
            ``redirect_status`` with ``Location: <redirect_location>`` and an
            empty body.
        redirect_status: 301, 302, 303, 307 or 308.
        redirect_location: The ``Location`` header, sent verbatim (latin-1, no
            control characters): absolute, relative, or this very URL for a loop.
        odd_ids: Resource ids whose pages (and those beneath them) carry
            items with the ids ``"."``, ``".."``, ``""`` and ``"a/../b"``, that
            no client may put in a URL path: on the first page (offset 0) the
            last items (up to four) keep their fields but take these ids, in
            this order. Page lengths and ``meta`` are unchanged, so paging stays
            consistent; the items renamed are never listed under their own ids.
        endless_pages: Resource ids whose pages (and those beneath them) never
            end, as a server that keeps answering: no ``meta.total``, and every
            page full (``limit`` items). Past the collection's real items come
            copies of them, in turn, each under a new id (``<id>~<n>``, ``n``
            its index in the endless listing) that no other route knows. An
            empty collection stays empty.
        same_page_forever: Resource ids whose pages (and those beneath them)
            are all the first one: whatever the offset, the items of offset 0,
            ``meta`` with the offset asked, no ``total``, and as ``limit`` the
            number of items sent, so the page looks full and another follows.
        error_format: How the API's error answers with a JSON body are
            written: ``"envelope"``, the contract's ``{"error": {...}}``; or
            RFC 7807 problem details (``application/problem+json``, ``title``,
            ``detail``, ``requestId``) as the sibling APIs on the gateway send
            them, with the parameters refused (a bad ``offset`` or ``limit``)
            under ``"invalid-params"`` or ``"invalidParams"``, as named.
        seed: Seed of the fault random generator; changing it restarts the sequence.

    .. versionadded:: 0.1.0
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    latency_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    token_latency: float = attrs.field(default=0.0, validator=_non_negative)
    token_answer_delay: float = attrs.field(default=0.0, validator=_non_negative)
    token_answer_drops: int = attrs.field(
        default=0, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    token_expires_in: Any = None
    token_expires_in_raw: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    token_type: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    echo_secrets: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    error_rate: float = attrs.field(default=0.0, validator=_fraction)
    error_statuses: tuple[int, ...] = attrs.field(
        default=(503,), converter=_statuses, validator=_server_errors
    )
    throttle_rate: float = attrs.field(default=0.0, validator=_fraction)
    retry_after: float = attrs.field(default=1.0, validator=_non_negative)
    retry_after_format: RetryAfterFormat = attrs.field(
        default="seconds", validator=attrs.validators.in_(("seconds", "http-date"))
    )
    throttle_burst_every: float | None = attrs.field(default=None, validator=_positive_or_none)
    throttle_burst_length: float = attrs.field(default=0.0, validator=_non_negative)
    rate_limit: float | None = attrs.field(default=None, validator=_positive_or_none)
    rate_limit_burst: float | None = attrs.field(default=None, validator=_positive_or_none)
    drop_rate: float = attrs.field(default=0.0, validator=_fraction)
    forbidden: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    missing: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    malformed: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    omit_total: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    deep_nesting: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    nesting_depth: int = attrs.field(default=100_000, validator=_generated)
    oversized_pages: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    oversized_items: int = attrs.field(default=1_400_000, validator=_generated)
    huge_totals: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    huge_total: int = attrs.field(
        default=10**15, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    trickle: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    trickle_interval: float = attrs.field(default=0.5, validator=_non_negative)
    long_retry_after: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    long_retry_after_seconds: float = attrs.field(default=31_536_000.0, validator=_non_negative)
    redirects: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    redirect_status: int = attrs.field(
        default=302, validator=attrs.validators.in_(REDIRECT_STATUSES)
    )
    redirect_location: str = attrs.field(
        default="https://elsewhere.invalid/", validator=_header_value
    )
    odd_ids: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    endless_pages: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    same_page_forever: frozenset[str] = attrs.field(factory=frozenset, converter=_ids)
    error_format: ErrorFormat = attrs.field(
        default="envelope", validator=attrs.validators.in_(ERROR_FORMATS)
    )
    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (sets as sorted arrays)."""
        out = attrs.asdict(self, recurse=False)
        for name, value in out.items():
            if isinstance(value, frozenset):
                out[name] = sorted(value)
        out["error_statuses"] = list(self.error_statuses)
        return out

    def update(self, fields: dict[str, Any]) -> None:
        """Set several fields at once, all or none.

        Raises:
            ValueError: A field is unknown or a value is invalid.
        """
        unknown = set(fields) - {f.name for f in attrs.fields(Faults)}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            candidate = attrs.evolve(self, **fields)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        for name in fields:
            setattr(self, name, getattr(candidate, name))


def format_retry_after(seconds: float, fmt: RetryAfterFormat) -> str:
    if fmt == "http-date":
        # An HTTP date has whole seconds: round the instant up so a client never waits too little.
        return formatdate(math.ceil(time.time() + seconds), usegmt=True)
    # Millisecond resolution, rounded up, written as an integer when integral.
    millis = math.ceil(round(seconds * 1000, 6))
    whole, frac = divmod(millis, 1000)
    return str(whole) if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")


@attrs.define
class FaultPlan:
    """The mutable state behind :class:`Faults`: the random generator and the bucket.

    Not thread-safe; the sandbox calls it under its lock.
    """

    _seed: int | None = None
    _rng: random.Random = attrs.field(factory=random.Random)
    _tokens: float = 0.0
    _refilled: float | None = None
    # The Faults object whose bursts are timed, held weakly: comparing ids
    # instead mistook a new object at a freed one's address for the old one.
    _burst_faults: weakref.ref[Faults] | None = None
    _burst_key: tuple[float, float] | None = None
    _burst_origin: float = 0.0

    def _random(self, faults: Faults) -> random.Random:
        if self._seed != faults.seed:
            self._seed = faults.seed
            self._rng.seed(faults.seed)
        return self._rng

    def _draw(self, faults: Faults, rate: float) -> bool:
        # A fault that is off draws nothing: the sequence depends only on the faults in use.
        return rate > 0.0 and self._random(faults).random() < rate

    def latency(self, faults: Faults) -> float:
        """Seconds to sleep for this request."""
        if not faults.latency_jitter:
            return faults.latency
        jitter = self._random(faults).uniform(-faults.latency_jitter, faults.latency_jitter)
        return max(0.0, faults.latency + jitter)

    def throttle(self, faults: Faults) -> str | None:
        """The ``Retry-After`` of a 429 to send instead of the answer, if a fault says so."""
        now = time.monotonic()
        every = faults.throttle_burst_every
        if every is not None and faults.throttle_burst_length > 0:
            key = (every, faults.throttle_burst_length)
            timed = self._burst_faults() if self._burst_faults is not None else None
            if timed is not faults or key != self._burst_key:
                # New burst settings: the first burst starts now, not at some
                # arbitrary phase of a clock started long ago.
                self._burst_faults = weakref.ref(faults)
                self._burst_key = key
                self._burst_origin = now
            phase = (now - self._burst_origin) % every
            if phase < faults.throttle_burst_length:
                rest = faults.throttle_burst_length - phase
                return format_retry_after(rest, faults.retry_after_format)
        if faults.rate_limit is not None:
            throttle = self._take_token(faults.rate_limit, faults, now)
            if throttle is not None:
                return throttle
        else:
            self._refilled = None
        if self._draw(faults, faults.throttle_rate):
            return format_retry_after(faults.retry_after, faults.retry_after_format)
        return None

    def _take_token(self, rate: float, faults: Faults, now: float) -> str | None:
        capacity = faults.rate_limit_burst or max(1.0, rate)
        if self._refilled is None:
            # A limit just switched on starts with a full bucket.
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return format_retry_after((1.0 - self._tokens) / rate, faults.retry_after_format)

    def error_status(self, faults: Faults) -> int | None:
        """A 5xx status to answer with, if ``error_rate`` says so."""
        if not self._draw(faults, faults.error_rate):
            return None
        statuses = faults.error_statuses
        return statuses[0] if len(statuses) == 1 else self._random(faults).choice(statuses)

    def drop(self, faults: Faults) -> bool:
        """Whether to drop this answer's connection mid-body."""
        return self._draw(faults, faults.drop_rate)
