"""Hostile answers: what a broken proxy or a server that means harm sends.

Proxy error pages, echoed secrets, 3xx and year-long 429s, bodies too deep, too
long or with ids no URL path may hold, bodies sent a byte at a time. Pages of a
million items and arrays nested a hundred thousand levels deep are written as
bytes, never built as Python objects, so the sandbox's memory stays bounded by
the body's size; a trickled answer stops when its client leaves.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import attrs

from ._faults import Faults, format_retry_after
from ._http import ErrorFormat, Response, api_error, encode_json
from ._stats import StatsRecorder

__all__ = [
    "ODD_IDS",
    "echo_authorization",
    "endless_items",
    "entity_answer",
    "long_retry_after",
    "page_answer",
    "redirect",
    "server_error",
    "trickle",
]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ODD_IDS = (".", "..", "", "a/../b")
NESTED_FIELD = "nested"
_JSON = ((b"content-type", b"application/json"),)
_PROXY_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class _RawJson:
    """JSON text spliced verbatim where a placeholder string was encoded."""

    def __init__(self) -> None:
        self._parts: dict[bytes, bytes] = {}

    def placeholder(self, name: str, raw: bytes) -> str:
        # json.dumps always escapes NUL, so the encoded placeholder cannot
        # occur in real data (the portfolio never holds a NUL either).
        self._parts[b'"\\u0000' + name.encode() + b'"'] = raw
        return "\0" + name

    def encode(self, value: Any) -> bytes:
        body = encode_json(value)
        for placeholder, raw in self._parts.items():
            body = body.replace(placeholder, raw, 1)
        return body


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _with_odd_ids(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    count = min(len(ODD_IDS), len(data))
    keep = len(data) - count
    renamed = [{**item, "id": odd} for item, odd in zip(data[keep:], ODD_IDS, strict=False)]
    return [*data[:keep], *renamed]


def entity_answer(entity: dict[str, Any], faults: Faults, chain: frozenset[str]) -> Response:
    """The 200 answer for one entity, with ``deep_nesting`` if it covers ``chain``."""
    raw = _RawJson()
    if chain & faults.deep_nesting:
        marker = raw.placeholder(NESTED_FIELD, _nested(faults.nesting_depth))
        entity = {**entity, NESTED_FIELD: marker}
    return Response(200, raw.encode(entity), _JSON)


def endless_items(
    read: Callable[[int, int], list[dict[str, Any]]], count: int, offset: int, limit: int
) -> list[dict[str, Any]]:
    """The page at ``offset`` of an ``endless_pages`` listing of ``count`` real items.

    Args:
        read: The real items at an offset, at most a limit of them.
    """
    items: list[dict[str, Any]] = []
    index = offset
    while count and len(items) < limit:
        start = index % count
        for item in read(start, min(limit - len(items), count - start)):
            items.append(item if index < count else {**item, "id": f"{item['id']}~{index}"})
            index += 1
    return items


def page_answer(
    data: list[dict[str, Any]], meta: dict[str, int], faults: Faults, chain: frozenset[str]
) -> Response:
    """The 200 answer for a page, with the page faults that cover ``chain``."""
    raw = _RawJson()
    items: list[Any] = data
    if chain & faults.odd_ids and meta["offset"] == 0:
        items = _with_odd_ids(data)
    if chain & faults.deep_nesting and items:
        marker = raw.placeholder(NESTED_FIELD, _nested(faults.nesting_depth))
        items = [{**items[0], NESTED_FIELD: marker}, *items[1:]]
    if chain & faults.oversized_pages:
        # The placeholder is one more array element: the comma before it is JSON's.
        filler = b"{}," * (faults.oversized_items - 1) + b"{}"
        items = [*items, raw.placeholder("filler", filler)]
    if chain & faults.huge_totals:
        meta = {**meta, "total": faults.huge_total}
    return Response(200, raw.encode({"data": items, "meta": meta}), _JSON)


def server_error(status: int, form: ErrorFormat) -> Response:
    """The answer of ``error_rate``: HTML as a proxy sends it for 502, 503 and 504."""
    reason = _PROXY_REASONS.get(status)
    if reason is None:
        return api_error(status, "internal_error", "the sandbox failed on purpose", form=form)
    html = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}"
    return Response(
        status,
        f"{html}</h1><hr><center>nginx</center></body></html>\n".encode(),
        ((b"content-type", b"text/html; charset=utf-8"),),
    )


def echo_authorization(response: Response, authorization: str) -> Response:
    """The answer of ``echo_secrets``: the bearer token repeated back."""
    headers = (*response.headers, (b"x-echo-authorization", authorization.encode("latin-1")))
    body = response.body
    if response.status >= 400 and body[:1] == b"{":
        error = json.loads(body)
        # The envelope's message, or a problem's detail.
        said = error["error"] if isinstance(error.get("error"), dict) else error
        key = "message" if said is not error else "detail"
        if key in said:
            said[key] = f"{said[key]}; you sent {authorization}"
            body = encode_json(error)
    return attrs.evolve(response, body=body, headers=headers)


def long_retry_after(faults: Faults) -> Response:
    """The 429 of ``long_retry_after``."""
    value = format_retry_after(faults.long_retry_after_seconds, faults.retry_after_format)
    headers = ((b"retry-after", value.encode()),)
    return api_error(429, "rate_limited", "too many requests", headers, form=faults.error_format)


def redirect(faults: Faults) -> Response:
    """The 3xx of ``redirects``: a ``Location`` and no body."""
    return Response(
        faults.redirect_status, b"", ((b"location", faults.redirect_location.encode("latin-1")),)
    )


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def trickle(
    send: Send, receive: Receive, response: Response, interval: float, stats: StatsRecorder
) -> None:
    """Send ``response`` with its headers at once, then its body a byte per ``interval``.

    Stops quietly when the client disconnects: uvicorn then ignores what is
    sent, so a watcher of ``receive`` cancels the trickle instead.
    """
    body = response.body
    headers = [(b"content-length", str(len(body)).encode()), *response.headers]
    sent = 0

    async def drip() -> None:
        nonlocal sent
        for i in range(len(body)):
            await anyio.sleep(interval)
            more = i + 1 < len(body)
            await send({"type": "http.response.body", "body": body[i : i + 1], "more_body": more})
            sent = i + 1

    stats.trickle_started()
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if not body:
            await send({"type": "http.response.body", "body": b""})
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            with contextlib.suppress(OSError):  # a server whose send raises once the client left
                await drip()
            tg.cancel_scope.cancel()
    except OSError:
        pass  # the client left before the headers went
    finally:
        stats.trickle_finished(abandoned=sent < len(body))
