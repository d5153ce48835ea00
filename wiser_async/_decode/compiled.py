"""The fast decoding functions, compiled per model, and the value hooks.

Decoding is the hot path of a crawl (a page of 500 devices, a million devices
a night), so each model gets one straight-line function, compiled here from
its fields, that reads each key once and checks each value's type inline.
The value hooks and their type table are shared with the cattrs converter of
`codec`, so both accept exactly the same data.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .._json import MAX_DEPTH, deeper_than
from ..models import (
    Address,
    Device,
    DeviceCategory,
    DeviceStatus,
    DeviceUsage,
    Location,
    Room,
    RoomType,
    Site,
    SiteType,
)

__all__ = [
    "EXTRA_KEY",
    "MODELS",
    "OPEN_ENUMS",
    "SCALAR_HOOKS",
    "Hook",
    "bounded_extra",
    "camel_case",
    "compile_structure",
    "model_of",
    "open_enum_hook",
    "open_enum_of",
    "optional",
    "plain_class",
    "scalar_of",
    "unknown_fields",
    "unstructure_datetime",
]

MODELS: tuple[type, ...] = (Address, Location, Site, Room, Device)
OPEN_ENUMS: tuple[type[Any], ...] = (SiteType, RoomType, DeviceCategory, DeviceStatus, DeviceUsage)
# The generated structuring code reads unknown fields from this key, which no
# JSON object from the API can contain.
EXTRA_KEY = "\x00extra"
Hook = Callable[[Any, type], Any]


def camel_case(name: str) -> str:
    """``rated_current_a`` -> ``ratedCurrentA``: the wire's default spelling."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def structure_str(value: Any, _: type) -> str:
    if type(value) is str:
        return value
    # Numeric ids are unambiguous; anything else is a contract violation.
    if type(value) is int:
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def structure_float(value: Any, _: type) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def structure_datetime(value: Any, _: type) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an RFC 3339 timestamp, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an RFC 3339 timestamp") from None
    # RFC 3339 requires an offset; a timestamp without one is read as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# The one type -> hook table: the compiled functions and the cattrs converter
# both take their scalar hooks from here.
SCALAR_HOOKS: tuple[tuple[type, Hook], ...] = (
    (str, structure_str),
    (int, structure_int),
    (float, structure_float),
    (datetime, structure_datetime),
)


def scalar_of(kind: Any) -> tuple[type, Hook] | None:
    for scalar, hook in SCALAR_HOOKS:
        if kind in (scalar, scalar | None):
            return scalar, hook
    return None


def optional(hook: Hook) -> Hook:
    def structure(value: Any, cls: type) -> Any:
        return None if value is None else hook(value, cls)

    return structure


def unstructure_datetime(value: datetime) -> str:
    """RFC 3339 with the shortest exact fraction (none, milliseconds or microseconds), UTC as Z.

    The API's own form (``2021-02-05T01:35:22.451Z``): a timestamp read and
    written back is written as it came.
    """
    micro = value.microsecond
    text = value.isoformat(
        timespec="seconds" if not micro else "milliseconds" if not micro % 1000 else "microseconds"
    )
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def open_enum_hook(enum_cls: type[Any]) -> Callable[[Any, type], Any]:
    members = {member.value: member for member in enum_cls}

    def structure(value: Any, _: type) -> Any:
        if type(value) is not str:
            if value is None:
                return None
            raise TypeError(f"expected a string, got {type(value).__name__}")
        # Unknown values stay plain strings: the API may grow new ones.
        return members.get(value, value)

    return structure


def unknown_fields(data: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The fields of `data` not in `known`, in the order they came: a model's ``extra``."""
    return {key: value for key, value in data.items() if key not in known}


def bounded_extra(value: dict[str, Any], _: Any = None) -> dict[str, Any]:
    """Unknown fields as received, unless one nests deeper than kept data may."""
    if deeper_than(value, MAX_DEPTH):
        raise ValueError(f"an unknown field nests deeper than {MAX_DEPTH} levels")
    return value


def enum_error(value: Any) -> Any:
    raise TypeError(f"expected a string, got {type(value).__name__}")


def compile_structure(
    cls: type, wire_names: Mapping[str, str], compiled: Mapping[type, Callable[[Any, type], Any]]
) -> Callable[[Any, type], Any]:
    """The fast decoding function of one model class.

    Straight-line code: one ``get`` per field, the common types checked
    inline, a call only for the rest (the same hooks the cattrs converter
    uses), unknown keys gathered into ``extra``. Any failure raises, and the
    caller then asks the cattrs converter to explain it.
    """
    # Resolved in the class's own module (its __module__ names the package).
    hints = {field.name: field.type for field in attrs.fields(attrs.resolve_types(cls))}
    names: dict[str, Any] = {
        "CLS": cls,
        "KNOWN": frozenset(wire_names.values()),
        "UNKNOWN": unknown_fields,
        "ENUM_ERROR": enum_error,
        "BOUNDED": bounded_extra,
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
        # An optional field's None passes; a required field's None reaches the hook.
        check = f"{value} is not None and " if field.default is not attrs.NOTHING else ""
        if (scalar := scalar_of(kind)) is not None:
            type_name, hook_name = f"T{index}", f"H{index}"
            names[type_name], names[hook_name] = scalar
            if scalar[0] is datetime:
                # The hook's own work, inline: a timestamp is a string on the wire.
                names["FROMISO"], names["UTC"] = datetime.fromisoformat, UTC
                lines.append(f"    if type({value}) is str:")
                lines.append(f"        {value} = FROMISO({value})")
                lines.append(
                    f"        if {value}.tzinfo is None: {value} = {value}.replace(tzinfo=UTC)"
                )
                lines.append(
                    f"    elif {check}type({value}) is not {type_name}: "
                    f"{value} = {hook_name}({value}, {type_name})"
                )
                continue
            lines.append(
                f"    if {check}type({value}) is not {type_name}: "
                f"{value} = {hook_name}({value}, {type_name})"
            )
        elif (enum_cls := open_enum_of(kind)) is not None:
            members = f"M{index}"
            names[members] = {member.value: member for member in enum_cls}
            lines.append(f"    if {value} is not None:")
            lines.append(
                f"        {value} = {members}.get({value}, {value}) "
                f"if type({value}) is str else ENUM_ERROR({value})"
            )
        elif (nested := model_of(kind)) is not None:
            nested_name = f"N{index}"
            names[nested_name] = compiled[nested]
            lines.append(f"    if {value} is not None: {value} = {nested_name}({value}, None)")
        else:  # pragma: no cover - every model field type is listed above
            raise TypeError(f"no fast decoding for {cls.__name__}.{field.name}: {kind}")
    # Asking whether every key is known builds no set: most objects have no
    # unknown field, and ``o.keys() - KNOWN`` cost a tenth of their decoding.
    arguments.append("extra={} if KNOWN.issuperset(o) else BOUNDED(UNKNOWN(o, KNOWN))")
    if plain_class(cls):
        # Each value stored in its slot: a quarter of a device's decoding
        # time goes into a call with fifteen keyword arguments otherwise.
        names["NEW"] = object.__new__
        lines.append("    obj = NEW(CLS)")
        lines.extend(f"    obj.{argument.replace('=', ' = ', 1)}" for argument in arguments)
        lines.append("    return obj")
    else:
        lines.append(f"    return CLS({', '.join(arguments)})")
    source = "\n".join(lines) + "\n"
    filename = f"<wiser_async decode {cls.__qualname__} {id(names):x}>"
    # Registered as cattrs does, so tracebacks and debuggers show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), names)  # noqa: S102 - code built above from the model's own fields
    return names["structure"]  # type: ignore[no-any-return]


def plain_class(cls: type) -> bool:
    """True if `cls.__init__` only stores its arguments: no validator, converter or hook."""
    setattr_of: Any = cls.__setattr__  # attrs' own when an on_setattr hook is set
    return (
        setattr_of is object.__setattr__
        and not hasattr(cls, "__attrs_pre_init__")
        and not hasattr(cls, "__attrs_post_init__")
        and all(
            field.init and field.validator is None and field.converter is None
            for field in attrs.fields(cls)
        )
    )


def open_enum_of(kind: Any) -> Any:
    for enum_cls in OPEN_ENUMS:
        if kind in (enum_cls | str, enum_cls | str | None):
            return enum_cls
    return None


def model_of(kind: Any) -> type | None:
    for cls in MODELS:
        if kind in (cls, cls | None):
            return cls
    return None
