"""A crawl record as a table row: typed columns, parent ids, and the rest kept as JSON.

A value of the contract's field that is not of its column's type (a floor
``"2nd"``, a time without its UTC offset, a string holding a NUL, which
PostgreSQL cannot store) leaves the column NULL and is kept in ``extra``
under its wire name, as the fields the contract does not name are. A field
sent as null says nothing and is not kept: absent and null compare equal,
as in `diff_snapshots`, and so do ``16`` and ``16.0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from .schema import PARENT_WIRE, RESOURCES, ExportError, Resource
from .source import format_time

__all__ = ["RowMaker", "row_makers"]

RowMaker = Callable[[dict[str, Any], int], tuple[Any, ...]]
"""(record, line number) -> the row: account, id, data columns, extra (and the suffix)."""

_MISFIT: Final = object()
_TEXTS: Final = frozenset({str, type(None)})
_INT_RANGE: Final = range(-(2**63), 2**63)


def _text(value: Any) -> Any:
    if type(value) is str and "\x00" not in value:
        return value
    return _MISFIT


def _time(value: Any) -> Any:
    if type(value) is not str:
        return _MISFIT
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _MISFIT
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":
        # The API's usual form, whole seconds in UTC: format_time's text, by slicing.
        return f"{value[:10]} {value[11:19]}"
    if moment.tzinfo is None:
        return _MISFIT  # no offset: which time it means is not said
    return format_time(moment)


def _int(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and value in _INT_RANGE:
        return value
    return _MISFIT


def _float(value: Any) -> Any:
    if type(value) is int or type(value) is float:
        try:
            number = float(value)
        except OverflowError:
            return _MISFIT
        if math.isfinite(number):
            return number
    return _MISFIT


_CONVERT: Final = {"text": _text, "time": _time, "int": _int, "float": _float}


def _kept(value: Any) -> Any:
    # As diff_snapshots compares: an integral float is the integer it equals.
    return int(value) if type(value) is float and value.is_integer() else value


def _extra_json(extra: dict[str, Any]) -> str | None:
    if not extra:
        return None
    return json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _maker(resource: Resource, suffix: tuple[Any, ...]) -> RowMaker:
    kind = resource.kind
    parent_wire = tuple(PARENT_WIRE[name] for name in resource.parents)
    columns = [column for column in resource.columns if column.wire is not None]
    # Columns grouped by type, in `stage_columns` order: a text value is checked
    # inline, the others through their converter.
    texts = tuple(str(c.wire) for c in columns if c.type == "text" and "." not in str(c.wire))
    others = tuple(
        (str(c.wire), _CONVERT[c.type])
        for c in columns
        if c.type != "text" and "." not in str(c.wire)
    )
    nested: dict[str, dict[str, tuple[int, Callable[[Any], Any]]]] = {}
    first = len(parent_wire) + len(texts) + len(others)
    for position, column in enumerate((c for c in columns if "." in str(c.wire)), first):
        outer, _, inner = str(column.wire).partition(".")
        nested.setdefault(outer, {})[inner] = (position, _CONVERT[column.type])
    known = frozenset((*parent_wire, *texts, *(wire for wire, _ in others), *nested, "id"))
    blank: list[Any] = [None] * sum(len(specs) for specs in nested.values())

    def make(record: dict[str, Any], number: int) -> tuple[Any, ...]:
        try:
            account = record["account"]
            data = record["data"]
            item_id = data["id"]
            row = list(map(record.__getitem__, parent_wire))
        except (KeyError, TypeError):
            raise ExportError(f"line {number}: a {kind} record without its ids") from None
        if type(item_id) is int:
            item_id = str(item_id)
        if type(item_id) is not str or type(account) is not str or not isinstance(data, dict):
            raise ExportError(f"line {number}: a {kind} record without a usable id")
        if not _TEXTS.issuperset(map(type, row)):
            raise ExportError(f"line {number}: a {kind} record with an unusable parent id")
        get = data.get
        extra: dict[str, Any] = {}
        for wire, parent in zip(parent_wire, row, strict=True):
            value = get(wire)
            if value is not None and value != parent:
                extra[wire] = _kept(value)  # not where the crawl found it: kept as sent
        values: list[Any] = list(map(get, texts))
        if _TEXTS.issuperset(map(type, values)) and "\x00" not in "".join(filter(None, values)):
            row += values
        else:
            for wire, value in zip(texts, values, strict=True):
                fits = value is None or (type(value) is str and "\x00" not in value)
                row.append(value if fits else None)
                if not fits:
                    extra[wire] = _kept(value)
        for wire, convert in others:
            value = get(wire)
            if value is not None:
                value = convert(value)
                if value is _MISFIT:
                    extra[wire] = _kept(get(wire))
                    value = None
            row.append(value)
        if nested:
            row += blank
            for key, specs in nested.items():
                value = get(key)
                if value is not None:
                    _nested(specs, key, value, row, extra)
        if len(data) > len(known) or not known.issuperset(data):
            for key in data.keys() - known:
                value = data[key]
                if value is not None:
                    extra[key] = _kept(value)
        return (account, item_id, *row, _extra_json(extra) if extra else None, *suffix)

    return make


def _nested(
    specs: dict[str, tuple[int, Callable[[Any], Any]]],
    key: str,
    value: Any,
    row: list[Any],
    extra: dict[str, Any],
) -> None:
    if not isinstance(value, dict):
        extra[key] = _kept(value)
        return
    left: dict[str, Any] = {}
    for inner, inner_value in value.items():
        if inner_value is None:
            continue
        spec = specs.get(inner)
        if spec is None:
            left[inner] = inner_value
            continue
        converted = spec[1](inner_value)
        if converted is _MISFIT:
            left[inner] = inner_value
        else:
            row[spec[0]] = converted
    if left:
        extra[key] = left


def row_makers(suffixes: dict[str, tuple[Any, ...]]) -> dict[str, RowMaker]:
    """Kind (``location``...) -> its row maker, each row ending with its kind's suffix."""
    return {
        resource.kind: _maker(resource, suffixes.get(resource.kind, ())) for resource in RESOURCES
    }
