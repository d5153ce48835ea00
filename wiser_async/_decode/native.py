"""msgspec's strict decoding of items into the models, where msgspec is installed (``speed``).

Each model gets two msgspec Structs mirroring its fields under their wire
names, with strict types: an open enum or a timestamp is taken as a ``str``
and mapped afterwards (by the same member table and `datetime.fromisoformat`
the compiled decoder uses); a ``float`` field takes an integer as msgspec
converts it, in C. One Struct forbids unknown fields (it checks a nested
model, and an item with none); the other ignores them, and checks a whole
page's items in one `msgspec.convert` call, after which the unknown fields
of an item that has some are kept in ``extra`` as the compiled decoder keeps
them (the same functions: same order, same depth bound). A generated
function moves a Struct's values into the model's slots.

Whatever msgspec refuses (a numeric id, a float where an integer belongs, a
nested object with unknown fields, a wrong type, anything else) and whatever
the mapping refuses (a timestamp `fromisoformat` cannot read, an unknown
field nested too deep) goes to the compiled decoder of `compiled`, item by
item: what is accepted here is exactly what that decoder accepts, decoded to
equal models, and that decoder alone decides (and the codec explains) the
rest. ``tests/test_fast_decode.py`` holds both paths to byte-identical output.
"""

from __future__ import annotations

import functools
import linecache
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import attrs

from .._config import PageFormat
from .._json import MAX_DEPTH, loads
from .compiled import (
    bounded_extra,
    model_of,
    open_enum_of,
    plain_class,
    scalar_of,
    unknown_fields,
)

__all__ = [
    "ABSENT",
    "MAX_SEEN",
    "Native",
    "compile_native",
    "page_struct",
    "parsed_meta",
    "read_page",
]

Hook = Callable[[Any, type], Any]

MAX_SEEN = 64
"""Unknown field names a model's `Native.seen` keeps: a server inventing names cannot grow it."""


def _int_type() -> Any:
    """A signed 64-bit integer; past it the parsed item decides (orjson reads a float there)."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - the speed extra is installed in the tests
        return int
    return Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _struct_type(kind: Any, required: bool, structs: Mapping[type, Any]) -> Any:
    """The Struct field type of a model field type, or None if msgspec cannot take it exactly.

    Null is taken where the compiled decoder takes it: in any field with a
    default, and in an open enum or nested model field even without one.
    """
    scalar = scalar_of(kind)
    if scalar is not None:
        # A timestamp is read by fromisoformat afterwards, as the compiled decoder reads it.
        wire = {str: str, int: _int_type(), float: float, datetime: str}[scalar[0]]
        return wire if required else wire | None
    if open_enum_of(kind) is not None:
        return str | None
    nested = model_of(kind)
    if nested is not None and nested in structs:
        return structs[nested] | None
    return None


@attrs.frozen
class Native:
    """One model's msgspec decoding: a Struct, its values into the model, and the fallbacks.

    Attributes:
        to_model: A checked Struct's values into a model (raises on a
            timestamp `fromisoformat` cannot read).
        structure: One parsed item into a model: msgspec, else the fallback
            (which raises on bad data, unexplained).
        items: A page's parsed items into models: the whole list checked in
            one call, else item by item as `structure` does (which raises
            on the first item the fallback refuses).
        fields: The strict Struct's fields (`msgspec.defstruct`'s form).
        rename: Their wire names.
        seen: Unknown field names `from_raws` met, in the order met (at most
            `MAX_SEEN`): what `learned.PageReader` declares.
        from_raws: A page's items still as JSON text (`msgspec.Raw`, see
            `read_page`) into models: each read by the strict Struct straight
            from its text, else parsed (by `_json.loads`, as the whole body
            would have been) and taken as `structure` takes it. Raises on
            anything either refuses: the caller then parses the whole body.
    """

    to_model: Callable[[Any, dict[str, Any]], Any]
    structure: Hook
    items: Callable[[list[Any], type], list[Any]]
    from_raws: Callable[[list[Any], type], list[Any]]
    fields: tuple[tuple[str, Any] | tuple[str, Any, Any], ...]
    rename: Mapping[str, str]
    seen: dict[str, None]


def compile_native(
    cls: type,
    wire_names: Mapping[str, str],
    structs: dict[type, Any],
    natives: Mapping[type, Native],
    fallback: Hook,
) -> Native | None:
    """The msgspec decoding of `cls`, `fallback` for whatever it refuses.

    Registers the model's Struct in `structs` (a nested model's must be
    there first). None if msgspec is missing or cannot mirror the model
    exactly (two fields renamed to one wire name, a default other than None):
    the model is then decoded by `fallback` alone.
    """
    try:
        # Imported when the first codec is built, not with the package: a
        # process that never decodes does not pay for it.
        import msgspec
    except ImportError:  # pragma: no cover - the speed extra is installed in the tests
        return None
    if len(set(wire_names.values())) != len(wire_names):
        return None
    hints = {field.name: field.type for field in attrs.fields(attrs.resolve_types(cls))}
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    names: dict[str, Any] = {
        "CLS": cls,
        "NEW": object.__new__,
        "FROMISO": datetime.fromisoformat,
        "UTC": UTC,
        "CONVERT": msgspec.convert,
        "FALLBACK": fallback,
        "LOADS": loads,
        "SHALLOW": 2 * MAX_DEPTH,
        "SEEN": {},
        "MAX_SEEN": MAX_SEEN,
        "REFUSED": msgspec.DecodeError,
    }
    lines = ["def to_model(s, extra):"]
    arguments = []
    for index, field in enumerate(attrs.fields(cls)):
        if field.name == "extra":
            continue
        kind = hints[field.name]
        required = field.default is attrs.NOTHING
        struct_type = _struct_type(kind, required, structs)
        if struct_type is None or not (required or field.default is None):
            return None
        value = f"v{index}"
        arguments.append(f"{field.name}={value}")
        fields.append((field.name, struct_type) if required else (field.name, struct_type, None))
        lines.append(f"    {value} = s.{field.name}")
        scalar = scalar_of(kind)
        if scalar is not None and scalar[0] is datetime:
            lines.append(f"    if {value} is not None:")
            lines.append(f"        {value} = FROMISO({value})")
            lines.append(
                f"        if {value}.tzinfo is None: {value} = {value}.replace(tzinfo=UTC)"
            )
        elif (enum_cls := open_enum_of(kind)) is not None:
            names[f"M{index}"] = {member.value: member for member in enum_cls}
            lines.append(f"    if {value} is not None: {value} = M{index}.get({value}, {value})")
        elif (nested := model_of(kind)) is not None:
            names[f"N{index}"] = natives[nested].to_model
            lines.append(f"    if {value} is not None: {value} = N{index}({value}, {{}})")
    # gc=False: a Struct of strings, numbers and other such Structs is never part
    # of a cycle, and untracked it brings the garbage collector's passes no nearer.
    struct, open_struct = (
        msgspec.defstruct(
            f"{cls.__name__}Wire",
            fields,
            forbid_unknown_fields=forbid,
            rename=dict(wire_names),
            kw_only=True,
            gc=False,
        )
        for forbid in (True, False)
    )
    structs[cls] = struct
    names["DECODE"] = msgspec.json.Decoder(struct).decode
    names["DECODE_OPEN"] = msgspec.json.Decoder(open_struct).decode
    names["MEMBERS"] = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    names["S"], names["OPEN"], names["LIST"] = struct, open_struct, list[open_struct]  # type: ignore[valid-type]
    names["KNOWN"] = frozenset(wire_names.values())
    names["UNKNOWN"], names["BOUNDED"] = unknown_fields, bounded_extra
    arguments.append("extra=extra")
    if plain_class(cls):
        lines.append("    obj = NEW(CLS)")
        lines.extend(f"    obj.{argument.replace('=', ' = ', 1)}" for argument in arguments)
        lines.append("    return obj")
    else:
        lines.append(f"    return CLS({', '.join(arguments)})")
    # An item with unknown fields is checked by the Struct that ignores them, and
    # they are kept as the compiled decoder keeps them. Any failure (msgspec's
    # refusal, fromisoformat's, the depth bound's) hands the item to the
    # fallback, which decides as it always has: accepts, or raises.
    lines += [
        "def structure(o, cls):",
        "    try:",
        "        if KNOWN.issuperset(o):",
        "            return to_model(CONVERT(o, S), {})",
        "        return to_model(CONVERT(o, OPEN), BOUNDED(UNKNOWN(o, KNOWN)))",
        "    except Exception:",
        "        return FALLBACK(o, cls)",
        "def items(data, cls):",
        "    try:",
        "        return [",
        "            to_model(s, {} if KNOWN.issuperset(o) else BOUNDED(UNKNOWN(o, KNOWN)))",
        "            for s, o in zip(CONVERT(data, LIST), data)",
        "        ]",
        "    except Exception:",
        "        return [structure(o, cls) for o in data]",
        "def from_raws(raws, cls):",
        "    out = []",
        "    append = out.append",
        "    for raw in raws:",
        "        try:",
        "            s = DECODE(raw)",
        "        except REFUSED:",
        "            append(open_raw(raw, cls))",
        "        else:",
        "            append(to_model(s, {}))",
        "    return out",
        # An item the strict Struct refused: read by the one ignoring unknown
        # fields, which are then parsed one by one from the item's members
        # (a key's value as the whole item would have given it); else the
        # parsed item, as `structure` takes one.
        "def open_raw(raw, cls):",
        "    try:",
        "        s = DECODE_OPEN(raw)",
        "        extra = {}",
        "        short = True",
        "        for k, v in MEMBERS(raw).items():",
        "            if k not in KNOWN:",
        "                extra[k] = LOADS(bytes(v))",
        "                short = short and len(v) < SHALLOW",
        "                if len(SEEN) < MAX_SEEN: SEEN[k] = None",
        # A value of fewer than 2 x MAX_DEPTH bytes cannot nest MAX_DEPTH deep.
        "        return to_model(s, extra if short else BOUNDED(extra))",
        "    except Exception:",
        "        return structure(LOADS(bytes(raw)), cls)",
    ]
    source = "\n".join(lines) + "\n"
    filename = f"<wiser_async native {cls.__qualname__} {id(names):x}>"
    # Registered as cattrs does, so tracebacks and debuggers show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), names)  # noqa: S102 - code built above from the model's own fields
    return Native(
        names["to_model"],
        names["structure"],
        names["items"],
        names["from_raws"],
        tuple(fields),
        dict(wire_names),
        names["SEEN"],
    )


ABSENT: Any = object()
"""`read_page`'s metadata when the envelope has none."""


def read_page(content: bytes, keys: PageFormat) -> tuple[list[Any], Any] | None:
    """A page body's items as `msgspec.Raw` texts and its metadata, parsed; None if msgspec cannot.

    The envelope must hold the items' key and at most the metadata's, nothing
    else: whatever msgspec passes over unread (an unknown key's value, an
    item kept as `Raw`) it checks for syntax only, not for UTF-8 or a
    number's range, so the items are then read by `Native.from_raws` and the
    metadata by `_json.loads`, and each byte of the body is read by one
    parser or the other. None (the caller parses the whole body instead):
    msgspec is missing, the body is not such an envelope, or its metadata
    does not parse.
    """
    decode = _envelope(keys.data_key, keys.meta_key)
    if decode is None:
        return None
    try:
        envelope = decode(content)
        return envelope.items, parsed_meta(envelope.meta)
    except Exception:  # noqa: BLE001 - any refusal: the whole body is parsed as before
        return None


def parsed_meta(meta: Any) -> Any:
    """A page envelope's metadata, kept as `msgspec.Raw`, parsed; `ABSENT` if there was none."""
    return ABSENT if meta is None else loads(bytes(meta))


def page_struct(items: Any, data_key: str, meta_key: str) -> Any:
    """The Struct of a page envelope: `items` under the data key, the metadata as `msgspec.Raw`.

    Strict: an envelope with any other key is refused (msgspec would skip
    its value unchecked).
    """
    import msgspec

    return msgspec.defstruct(
        "PageWire",
        [("items", items), ("meta", msgspec.Raw, None)],
        forbid_unknown_fields=True,
        gc=False,
        rename={"items": data_key, "meta": meta_key},
    )


@functools.cache
def _envelope(data_key: str, meta_key: str) -> Callable[[bytes], Any] | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - the speed extra is installed in the tests
        return None
    if data_key == meta_key:
        return None
    return msgspec.json.Decoder(page_struct(list[msgspec.Raw], data_key, meta_key)).decode
