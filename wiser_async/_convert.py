"""JSON <-> typed models, through one private cattrs converter per `ApiConfig`.

Decoding is the hot path of a crawl (a page of 500 devices, a million devices
a night), so it has a fast path: one straight-line function per model,
compiled here from the model's fields, that reads each key once and checks
each value's type inline. It accepts exactly what the cattrs converter
accepts; whenever it fails, the same data goes through the cattrs converter
with detailed validation, which says where and what was wrong. The cattrs
converter also does all the encoding back to wire JSON.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._config import PageFormat
from ._json import MAX_DEPTH, deeper_than
from .errors import DecodeError
from .models import (
    Address,
    Device,
    DeviceCategory,
    DeviceStatus,
    DeviceUsage,
    Location,
    Page,
    Room,
    RoomType,
    Site,
    SiteType,
)

__all__ = ["Codec", "camel_case"]

T = TypeVar("T")

MODELS: tuple[type, ...] = (Address, Location, Site, Room, Device)
_OPEN_ENUMS: tuple[type[Any], ...] = (SiteType, RoomType, DeviceCategory, DeviceStatus, DeviceUsage)
# The generated structuring code reads unknown fields from this key, which no
# JSON object from the API can contain.
_EXTRA_KEY = "\x00extra"
# Undecodable items of one page reported one by one; the rest in one line.
MAX_ITEM_ERRORS = 10
_Hook = Callable[[Any, type], Any]
_FIELD_SEGMENT = re.compile(r"\.([a-z][a-z0-9_]*)")


def camel_case(name: str) -> str:
    """``rated_current_a`` -> ``ratedCurrentA``: the wire's default spelling."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _structure_str(value: Any, _: type) -> str:
    if type(value) is str:
        return value
    # Numeric ids are unambiguous; anything else is a contract violation.
    if type(value) is int:
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _structure_float(value: Any, _: type) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _structure_datetime(value: Any, _: type) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an RFC 3339 timestamp, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an RFC 3339 timestamp") from None
    # RFC 3339 requires an offset; a timestamp without one is read as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _optional(hook: _Hook) -> _Hook:
    def structure(value: Any, cls: type) -> Any:
        return None if value is None else hook(value, cls)

    return structure


def _unstructure_datetime(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _open_enum_hook(enum_cls: type[Any]) -> Callable[[Any, type], Any]:
    members = {member.value: member for member in enum_cls}

    def structure(value: Any, _: type) -> Any:
        if type(value) is not str:
            if value is None:
                return None
            raise TypeError(f"expected a string, got {type(value).__name__}")
        # Unknown values stay plain strings: the API may grow new ones.
        return members.get(value, value)

    return structure


def _bounded_extra(value: dict[str, Any], _: Any = None) -> dict[str, Any]:
    """Unknown fields as received, unless one nests deeper than kept data may."""
    if deeper_than(value, MAX_DEPTH):
        raise ValueError(f"an unknown field nests deeper than {MAX_DEPTH} levels")
    return value


def _enum_error(value: Any) -> Any:
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _compile_structure(
    cls: type, wire_names: Mapping[str, str], compiled: Mapping[type, Callable[[Any, type], Any]]
) -> Callable[[Any, type], Any]:
    """The fast decoding function of one model class.

    Straight-line code: one ``get`` per field, the common types checked
    inline, a call only for the rest (the same hooks the cattrs converter
    uses), unknown keys gathered into ``extra``. Any failure raises, and the
    caller then asks the cattrs converter to explain it.
    """
    hints = typing.get_type_hints(cls)
    names: dict[str, Any] = {
        "CLS": cls,
        "KNOWN": frozenset(wire_names.values()),
        "STR": _structure_str,
        "INT": _structure_int,
        "FLOAT": _structure_float,
        "DATETIME": _structure_datetime,
        "ENUM_ERROR": _enum_error,
        "BOUNDED": _bounded_extra,
    }
    lines = [
        "def structure(o, _):",
        "    if type(o) is not dict:",
        "        raise TypeError('expected an object')",
        "    get = o.get",
    ]
    arguments = []
    for index, field in enumerate(attrs.fields(cls)):
        if field.name == "extra":
            continue
        value, key = f"v{index}", wire_names[field.name]
        arguments.append(f"{field.name}={value}")
        kind = hints[field.name]
        if field.default is attrs.NOTHING:
            lines.append(f"    {value} = o[{key!r}]")  # required: a KeyError when missing
        else:
            lines.append(f"    {value} = get({key!r})")
        check = f"{value} is not None and " if field.default is not attrs.NOTHING else ""
        if kind in (str, str | None):
            lines.append(f"    if {check}type({value}) is not str: {value} = STR({value}, str)")
        elif kind == int | None:
            lines.append(f"    if {check}type({value}) is not int: {value} = INT({value}, int)")
        elif kind == float | None:
            lines.append(
                f"    if {check}type({value}) is not float: {value} = FLOAT({value}, float)"
            )
        elif kind == datetime | None:
            lines.append(f"    if {value} is not None: {value} = DATETIME({value}, datetime)")
        elif (enum_cls := _open_enum_of(kind)) is not None:
            members = f"M{index}"
            names[members] = {member.value: member for member in enum_cls}
            lines.append(f"    if {value} is not None:")
            lines.append(
                f"        {value} = {members}.get({value}, {value}) "
                f"if type({value}) is str else ENUM_ERROR({value})"
            )
        elif (nested := _model_of(kind)) is not None:
            nested_name = f"N{index}"
            names[nested_name] = compiled[nested]
            lines.append(f"    if {value} is not None: {value} = {nested_name}({value}, None)")
        else:  # pragma: no cover - every model field type is listed above
            raise TypeError(f"no fast decoding for {cls.__name__}.{field.name}: {kind}")
    lines.append("    unknown = o.keys() - KNOWN")
    arguments.append("extra=BOUNDED({key: o[key] for key in unknown}) if unknown else {}")
    lines.append(f"    return CLS({', '.join(arguments)})")
    names["datetime"] = datetime
    exec(compile("\n".join(lines), f"<wiser_async decode {cls.__name__}>", "exec"), names)  # noqa: S102 - code built above from the model's own fields
    return names["structure"]  # type: ignore[no-any-return]


def _open_enum_of(kind: Any) -> Any:
    for enum_cls in _OPEN_ENUMS:
        if kind in (enum_cls | str, enum_cls | str | None):
            return enum_cls
    return None


def _model_of(kind: Any) -> type | None:
    for cls in MODELS:
        if kind in (cls, cls | None):
            return cls
    return None


class Codec:
    """Decodes API JSON into models and encodes models back to wire JSON."""

    def __init__(self, aliases: Mapping[type, Mapping[str, str]] | None = None) -> None:
        aliases = aliases or {}
        unknown = set(aliases) - set(MODELS)
        if unknown:
            names = ", ".join(sorted(cls.__name__ for cls in unknown))
            raise ValueError(f"aliases given for classes that are not models: {names}")
        self._wire_names = {
            cls: {
                field.name: aliases.get(cls, {}).get(field.name, camel_case(field.name))
                for field in attrs.fields(cls)
                if field.name != "extra"
            }
            for cls in MODELS
        }
        self._any_wire_name = {
            name: wire for names in self._wire_names.values() for name, wire in names.items()
        }
        self._converter = self._make_converter()
        self._structure_fns: dict[type, Callable[[Any, type], Any]] = {}
        for cls in MODELS:  # Address first: Location's function calls it
            self._structure_fns[cls] = _compile_structure(
                cls, self._wire_names[cls], self._structure_fns
            )

    def _make_converter(self) -> cattrs.Converter:
        # Decoding's hot path is the compiled functions; this converter
        # explains their failures, with the same hooks they call.
        converter = cattrs.Converter(detailed_validation=True)
        scalar_hooks: tuple[tuple[Any, _Hook], ...] = (
            (str, _structure_str),
            (int, _structure_int),
            (float, _structure_float),
            (datetime, _structure_datetime),
        )
        for scalar, hook in scalar_hooks:
            converter.register_structure_hook(scalar, hook)
            converter.register_structure_hook(scalar | None, _optional(hook))
        converter.register_unstructure_hook(datetime, _unstructure_datetime)
        for enum_cls in _OPEN_ENUMS:
            # One hook takes None too: the field type says whether None is allowed.
            hook = _open_enum_hook(enum_cls)
            converter.register_structure_hook(enum_cls | str, hook)
            converter.register_structure_hook(enum_cls | str | None, hook)
        for cls in MODELS:
            self._register_model(converter, cls)
        return converter

    def _register_model(self, converter: cattrs.Converter, cls: type) -> None:
        names = self._wire_names[cls]
        known = frozenset(names.values())
        renames: dict[str, Any] = {field: override(rename=wire) for field, wire in names.items()}
        base_structure: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls,
            converter,
            _cattrs_forbid_extra_keys=False,
            extra=override(rename=_EXTRA_KEY, struct_hook=_bounded_extra),
            **renames,
        )
        base_unstructure: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
            cls, converter, extra=override(omit=True), **renames
        )

        def structure(data: Any, target: type) -> Any:
            if type(data) is not dict:
                raise TypeError(f"expected an object, got {type(data).__name__}")
            unknown = data.keys() - known
            if unknown:
                data = {**data, _EXTRA_KEY: {key: data[key] for key in unknown}}
            return base_structure(data, target)

        def unstructure(obj: Any) -> dict[str, Any]:
            # Known fields win over an unknown field that happens to share a name.
            return {**obj.extra, **base_unstructure(obj)}

        converter.register_structure_hook(cls, structure)
        converter.register_unstructure_hook(cls, unstructure)

    def structure(self, data: Any, cls: type[T], *, method: str, path: str) -> T:
        """Decode one object, or raise `DecodeError` naming the JSON path."""
        try:
            return cast(T, self._structure_fns[cls](data, cls))
        except Exception:  # noqa: BLE001 - re-decoded below to say precisely what failed
            raise self._explain(data, cls, "$", method=method, path=path) from None

    def structure_page(
        self,
        body: Any,
        cls: type[T],
        *,
        offset: int,
        limit: int,
        keys: PageFormat,
        method: str,
        path: str,
        on_item_error: Callable[[DecodeError], None] | None = None,
    ) -> Page[T]:
        """Decode a page envelope; `keys` is the `PageFormat` naming its parts.

        An undecodable item fails the whole page, unless `on_item_error` is
        given: then it is skipped (`Page.skipped` counts it) and reported there,
        the first `MAX_ITEM_ERRORS` one by one and the rest in one error. A
        page with more items than `limit` is a `DecodeError`.
        """
        if type(body) is not dict:
            raise DecodeError("expected a JSON object (a page)", method=method, path=path)
        data = body.get(keys.data_key)
        if type(data) is not list:
            raise DecodeError(f"expected a list at $.{keys.data_key}", method=method, path=path)
        if len(data) > limit:
            # Checked before anything is decoded: a page is bounded by what was asked.
            raise DecodeError(
                f"the page holds {len(data)} items at $.{keys.data_key}, more than the "
                f"{limit} asked for",
                method=method,
                path=path,
            )
        structure = self._structure_fns[cls]
        skipped = 0
        try:
            items = [structure(item, cls) for item in data]
        except Exception:  # noqa: BLE001 - any hook error; the slow path below explains it
            # The slow path, only for a page with a bad item: find and explain it.
            items = []
            for index, item in enumerate(data):
                try:
                    items.append(structure(item, cls))
                except Exception:  # noqa: BLE001 - explained by _explain
                    where = f"$.{keys.data_key}[{index}]"
                    if on_item_error is None:
                        raise self._explain(item, cls, where, method=method, path=path) from None
                    skipped += 1
                    if skipped <= MAX_ITEM_ERRORS:
                        on_item_error(self._explain(item, cls, where, method=method, path=path))
            if skipped > MAX_ITEM_ERRORS:
                on_item_error(  # type: ignore[misc] # not None: the loop above raised otherwise
                    DecodeError(
                        f"{skipped - MAX_ITEM_ERRORS} more items of the page could not be "
                        f"decoded (the first {MAX_ITEM_ERRORS} are reported one by one)",
                        method=method,
                        path=path,
                    )
                )
        meta = body.get(keys.meta_key)
        total: int | None = None
        if type(meta) is dict:
            # The limit the server applied: a page that fills it is not the last.
            served_limit = meta.get(keys.limit_key)
            if type(served_limit) is int and 0 < served_limit < limit:
                limit = served_limit
            raw_total = meta.get(keys.total_key)
            if raw_total is not None:
                if type(raw_total) is not int or raw_total < 0:
                    raise DecodeError(
                        f"expected a non-negative integer at $.{keys.meta_key}.{keys.total_key}",
                        method=method,
                        path=path,
                    )
                total = raw_total
        elif meta is not None:
            raise DecodeError(f"expected an object at $.{keys.meta_key}", method=method, path=path)
        return Page(items=items, offset=offset, limit=limit, total=total, skipped=skipped)

    def unstructure(self, obj: Any) -> dict[str, Any]:
        """A model as wire JSON (camelCase, unknown fields restored)."""
        return cast(dict[str, Any], self._converter.unstructure(obj))

    def _explain(self, data: Any, cls: type, where: str, *, method: str, path: str) -> DecodeError:
        if type(data) is dict:
            known = self._wire_names[cls].values()
            for key, value in data.items():
                if key not in known and deeper_than(value, MAX_DEPTH - 1):
                    # Named by its key's position, not the key: server text.
                    return DecodeError(
                        f"unexpected {cls.__name__}: an unknown field at {where} nests deeper "
                        f"than {MAX_DEPTH} levels",
                        method=method,
                        path=path,
                    )
        try:
            self._converter.structure(data, cls)
        except cattrs.BaseValidationError as exc:
            # cattrs names Python attributes; the reader knows the wire names.
            wire = self._any_wire_name
            details = "; ".join(
                _FIELD_SEGMENT.sub(
                    lambda m: "." + wire.get(m.group(1), m.group(1)),
                    message.replace(" @ ", " at ", 1),
                )
                for message in cattrs.transform_error(exc, path=where)
            )
            return DecodeError(f"unexpected {cls.__name__}: {details}", method=method, path=path)
        except Exception as exc:  # noqa: BLE001 - a hook's own message, no value in it
            return DecodeError(
                f"unexpected {cls.__name__} at {where}: {exc}", method=method, path=path
            )
        return DecodeError(f"unexpected {cls.__name__} at {where}", method=method, path=path)
