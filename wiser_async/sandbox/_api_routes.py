"""The API's routes: locations, sites, rooms and devices, paged, with their faults applied."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import attrs

from . import _hostile as hostile
from ._asgi import header, send_response
from ._faults import EVERY_RESOURCE
from ._http import ErrorFormat, Response, api_error

if TYPE_CHECKING:
    from ._asgi import Backend, Receive, Scope, Send
    from ._faults import Faults
    from ._portfolio import Portfolio

__all__ = [
    "API_PREFIX",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ROUTES",
    "Route",
    "answer_api",
    "find_route",
]

API_PREFIX = "/wiser/energy-monitoring/v1"

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_DIGITS = re.compile(r"[0-9]{1,12}")
_UNAUTHORIZED = ((b"www-authenticate", b'Bearer error="invalid_token"'),)


@attrs.frozen
class Route:
    """One route of the API, by its OpenAPI path template."""

    template: str
    kind: str | None  # id prefix of the path parameter; None for /locations
    collection: str | None  # Portfolio iterator behind a page; None for one entity


ROUTES = (
    Route("/locations", None, "locations"),
    Route("/locations/{locationId}", "loc", None),
    Route("/locations/{locationId}/sites", "loc", "sites"),
    Route("/sites/{siteId}", "site", None),
    Route("/sites/{siteId}/rooms", "site", "rooms"),
    Route("/sites/{siteId}/devices", "site", "site_devices"),
    Route("/rooms/{roomId}/devices", "room", "room_devices"),
    Route("/devices/{deviceId}", "dev", None),
)


def _route_key(segments: list[str]) -> tuple[str, int, str | None]:
    """What tells routes apart: first segment, segment count, last segment of three."""
    return segments[0], len(segments), segments[2] if len(segments) == 3 else None


_ROUTE_TABLE = {_route_key(r.template[1:].split("/")): r for r in ROUTES}
_ENTITY = {"loc": "location", "site": "site", "room": "room", "dev": "device"}


def find_route(path: str) -> tuple[Route, str | None] | None:
    """The route of a path under ``API_PREFIX``, and its id; ``None`` for no route."""
    segments = path[len(API_PREFIX) + 1 :].split("/")
    route = _ROUTE_TABLE.get(_route_key(segments))
    if route is None:
        return None
    return route, segments[1] if len(segments) > 1 else None


def _ancestors(entity_id: str | None) -> Iterator[str]:
    """The root, then the id itself and the ids above it (derived from the id, not looked up).

    ``None`` (the ``/locations`` list) has only the root.
    """
    yield EVERY_RESOURCE
    if entity_id is None:
        return
    yield entity_id
    parts = entity_id.split("-")
    kind = parts[0]
    if kind in ("site", "room", "dev") and len(parts) >= 4:
        yield f"loc-{parts[1]}-{parts[2]}"
    if kind in ("room", "dev") and len(parts) >= 5:
        yield f"site-{parts[1]}-{parts[2]}-{parts[3]}"


def _listed(
    portfolio: Portfolio, collection: str, parent_id: str | None, offset: int, limit: int
) -> list[dict[str, Any]]:
    return list(portfolio.page(collection, parent_id, offset, limit))


def _page_params(query: bytes, form: ErrorFormat) -> tuple[int, int] | Response:
    def refused(name: str, reason: str) -> Response:
        return api_error(
            400, "invalid_parameter", reason, form=form, invalid_params=[(name, reason)]
        )

    offset, limit = 0, DEFAULT_LIMIT
    seen: set[str] = set()
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in ("offset", "limit"):
            continue
        if name in seen:
            return refused(name, f"{name} is given more than once")
        seen.add(name)
        if not _DIGITS.fullmatch(value):
            return refused(name, f"{name} must be a non-negative integer")
        if name == "offset":
            offset = int(value)
        else:
            limit = int(value)
            if not 1 <= limit <= MAX_LIMIT:
                return refused(name, f"limit must be between 1 and {MAX_LIMIT}")
    return offset, limit


async def answer_api(
    backend: Backend,
    scope: Scope,
    receive: Receive,
    send: Send,
    method: str,
    route: Route,
    entity_id: str | None,
) -> None:
    """Answer one API request, counted in the stats, with the faults applied."""
    stats = backend.stats
    stats.request_started(route.template)
    recorded = False
    try:
        faults = backend.sandbox.faults
        if faults.latency:
            with backend.lock:
                delay = backend.plan.latency(faults)
            await anyio.sleep(delay)
        chain = frozenset(_ancestors(entity_id))
        response, drop = _answer(backend, scope, method, faults, route, entity_id, chain)
        if faults.echo_secrets:
            response = hostile.echo_authorization(response, header(scope, b"authorization") or "")
        # Counted before it is sent: a client that has the answer finds
        # it in the counters already (tests read them right after).
        stats.request_finished(None if drop else response.status, dropped=drop)
        recorded = True
        if chain & faults.trickle and not drop:
            interval = faults.trickle_interval
            await hostile.trickle(send, receive, response, interval, stats)
        else:
            await send_response(send, response, drop=drop)
    finally:
        if not recorded:
            stats.request_finished(None, dropped=False)


def _answer(
    backend: Backend,
    scope: Scope,
    method: str,
    faults: Faults,
    route: Route,
    entity_id: str | None,
    chain: frozenset[str],
) -> tuple[Response, bool]:
    """The answer to an API request, and whether to drop it mid-body."""
    form = faults.error_format
    if method != "GET":
        allow = ((b"allow", b"GET"),)
        return api_error(405, "method_not_allowed", "only GET", allow, form=form), False
    authorization = header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    customer = backend.oauth.customer_for(token.strip()) if scheme.lower() == "bearer" else None
    if customer is None:
        message = "access token missing, expired or revoked"
        return api_error(401, "invalid_token", message, _UNAUTHORIZED, form=form), False
    plan = backend.plan
    with backend.lock:
        retry_after = plan.throttle(faults)
        error_status = None if retry_after else plan.error_status(faults)
        drop = plan.drop(faults)
    if retry_after is not None:
        headers = ((b"retry-after", retry_after.encode()),)
        return api_error(429, "rate_limited", "too many requests", headers, form=form), drop
    if error_status is not None:
        return hostile.server_error(error_status, form), drop
    if chain & faults.long_retry_after:
        return hostile.long_retry_after(faults), drop
    if chain & faults.redirects:
        return hostile.redirect(faults), drop
    return _resource(backend, scope, faults, customer, route, entity_id, chain), drop


def _resource(
    backend: Backend,
    scope: Scope,
    faults: Faults,
    customer: str,
    route: Route,
    entity_id: str | None,
    chain: frozenset[str],
) -> Response:
    form = faults.error_format
    if chain & faults.forbidden:
        message = "the customer gave no consent for this resource"
        return api_error(403, "consent_required", message, form=form)
    if chain & faults.missing:
        return api_error(404, "not_found", f"{route.template} not found", form=form)
    portfolio = backend.sandbox.portfolio_for(customer)
    not_found = f"{_ENTITY.get(route.kind or '', 'resource')} not found"
    if route.collection is None:
        entity = portfolio.entity(route.kind or "", entity_id or "")
        if entity is None:
            return api_error(404, "not_found", not_found, form=form)
        response = hostile.entity_answer(entity, faults, chain)
    else:
        params = _page_params(scope["query_string"], faults.error_format)
        if isinstance(params, Response):
            return params
        offset, limit = params
        try:
            total = portfolio.count(route.collection, entity_id)
        except KeyError:
            return api_error(404, "not_found", not_found, form=form)
        collection = route.collection
        meta: dict[str, int] = {"offset": offset, "limit": limit}
        if chain & faults.same_page_forever:
            data = list(portfolio.page(collection, entity_id, 0, limit))
            meta["limit"] = max(1, len(data))  # "full": another page follows
        elif chain & faults.endless_pages:
            read = partial(_listed, portfolio, collection, entity_id)
            data = hostile.endless_items(read, total, offset, limit)
        else:
            data = list(portfolio.page(collection, entity_id, offset, limit))
            if not faults.omit_total:
                meta["total"] = total
        response = hostile.page_answer(data, meta, faults, chain)
    if chain & faults.malformed:
        return attrs.evolve(response, body=response.body[: len(response.body) // 2])
    return response
