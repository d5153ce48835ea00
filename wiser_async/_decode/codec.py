"""JSON <-> typed models, through one private cattrs converter per `ApiConfig`.

Decoding runs the functions `compiled` builds per model, which accept
exactly what the cattrs converter accepts; whenever one fails, the same data
goes through the cattrs converter with detailed validation, which says where
and what was wrong, in each model's own wire names. The cattrs converter also
does all the encoding back to wire JSON. Where msgspec is installed, a page's
items go through `native` first, which falls back to the compiled functions
for whatever it cannot take exactly: the same models, the same errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from .._config import PageFormat
from .._json import MAX_DEPTH, deeper_than, dumps
from ..errors import DecodeError
from ..models import (
    Page,
)
from .compiled import (
    EXTRA_KEY,
    MODELS,
    OPEN_ENUMS,
    SCALAR_HOOKS,
    bounded_extra,
    camel_case,
    compile_structure,
    model_of,
    open_enum_hook,
    optional,
    unknown_fields,
    unstructure_datetime,
)
from .learned import PageReader
from .native import ABSENT, Native, compile_native, read_page
from .pages import ItemErrors, page_data, page_meta

if TYPE_CHECKING:
    import cattrs

__all__ = ["Codec", "RawItem", "camel_case"]

T = TypeVar("T")

_ERROR_PATH = re.compile(r"\$[^ ]*")
_PATH_SEGMENT = re.compile(r"\.([a-z][a-z0-9_]*)|\[[^\]]*\]")


class Codec:
    """Decodes API JSON into models and encodes models back to wire JSON."""

    def __init__(
        self, aliases: Mapping[type, Mapping[str, str]] | None = None, *, native: bool = True
    ) -> None:
        """`native=False` (tests and benchmarks only): the compiled decoder alone, no msgspec."""
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
        self._built_converter: cattrs.Converter | None = None
        self._structure_fns: dict[type, Callable[[Any, type], Any]] = {}
        for cls in MODELS:  # Address first: Location's function calls it
            self._structure_fns[cls] = compile_structure(
                cls, self._wire_names[cls], self._structure_fns
            )
        # With msgspec (the speed extra): strict C decoding, the compiled function its fallback.
        self._natives: dict[type, Native] = {}
        # Per model and page format: pages in one msgspec call (see `learned`).
        self._readers: dict[tuple[type, str, str], PageReader] = {}
        structs: dict[type, Any] = {}
        for cls in MODELS if native else ():
            compiled = compile_native(
                cls, self._wire_names[cls], structs, self._natives, self._structure_fns[cls]
            )
            if compiled is not None:
                self._natives[cls] = compiled

    @property
    def native_models(self) -> frozenset[type]:
        """The models msgspec decodes first (see `native`); the rest, the compiled decoder alone."""
        return frozenset(self._natives)

    def fast(self, cls: type[T]) -> Callable[[Any, type], T]:
        """The compiled decoding function of a model (raises on any bad data, unexplained)."""
        return self._structure_fns[cls]

    def explained(self, data: Any, cls: type[T]) -> T:
        """Decode through the cattrs converter (slow; raises cattrs' detailed errors)."""
        return self._converter.structure(data, cls)

    @property
    def _converter(self) -> cattrs.Converter:
        # Built when first needed (a failure to explain, a model to encode):
        # cattrs and the converter's generated functions would otherwise cost
        # every process's first page several ms.
        if self._built_converter is None:
            self._built_converter = self._make_converter()
        return self._built_converter

    def _make_converter(self) -> cattrs.Converter:
        import cattrs

        # Decoding's hot path is the compiled functions; this converter
        # explains their failures, with the same hooks they call.
        converter = cattrs.Converter(detailed_validation=True)
        for scalar, hook in SCALAR_HOOKS:
            converter.register_structure_hook(scalar, hook)
            converter.register_structure_hook(scalar | None, optional(hook))
        converter.register_unstructure_hook(datetime, unstructure_datetime)
        for enum_cls in OPEN_ENUMS:
            # One hook takes None too: the field type says whether None is allowed.
            hook = open_enum_hook(enum_cls)
            converter.register_structure_hook(enum_cls | str, hook)
            converter.register_structure_hook(enum_cls | str | None, hook)
        for cls in MODELS:
            self._register_model(converter, cls)
        return converter

    def _register_model(self, converter: cattrs.Converter, cls: type) -> None:
        from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

        names = self._wire_names[cls]
        known = frozenset(names.values())
        renames: dict[str, Any] = {field: override(rename=wire) for field, wire in names.items()}
        base_structure: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls,
            converter,
            _cattrs_forbid_extra_keys=False,
            extra=override(rename=EXTRA_KEY, struct_hook=bounded_extra),
            **renames,
        )
        base_unstructure: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
            cls, converter, extra=override(omit=True), **renames
        )

        def structure(data: Any, target: type) -> Any:
            if type(data) is not dict:
                raise TypeError(f"expected an object, got {type(data).__name__}")
            if not known.issuperset(data):
                data = {**data, EXTRA_KEY: unknown_fields(data, known)}
            return base_structure(data, target)

        def unstructure(obj: Any) -> dict[str, Any]:
            # Known fields win over an unknown field that happens to share a name.
            return {**obj.extra, **base_unstructure(obj)}

        converter.register_structure_hook(cls, structure)
        converter.register_unstructure_hook(cls, unstructure)

    def structure(self, data: Any, cls: type[T], *, method: str, path: str) -> T:
        """Decode one object, or raise `DecodeError` naming the JSON path."""
        try:
            return self.fast(cls)(data, cls)
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
        data = page_data(body, keys, limit, method, path)
        native = self._natives.get(cls)
        structure = self.fast(cls) if native is None else native.structure
        skipped = 0
        try:
            items = (
                [structure(item, cls) for item in data]
                if native is None
                else native.items(data, cls)
            )
        except Exception:  # noqa: BLE001 - any hook error; the slow path below explains it
            # The slow path, only for a page with a bad item: find and explain it.
            items = []
            report = ItemErrors(on_item_error, method, path)
            for index, item in enumerate(data):
                try:
                    items.append(structure(item, cls))
                except Exception:  # noqa: BLE001 - explained by _explain
                    where = f"$.{keys.data_key}[{index}]"
                    report(self._explain(item, cls, where, method=method, path=path))
            skipped = report.finish()
        limit, total = page_meta(body, keys, limit, method, path)
        return Page(items=items, offset=offset, limit=limit, total=total, skipped=skipped)

    def native_page(
        self,
        content: bytes,
        cls: type[T],
        *,
        offset: int,
        limit: int,
        keys: PageFormat,
        method: str,
        path: str,
    ) -> Page[T] | None:
        """`structure_page` of a body not yet parsed, read by msgspec; None where it cannot be.

        The same page `structure_page` makes of the parsed body, or None: no
        msgspec, an envelope or an item msgspec and the fallback refuse, more
        items than `limit`. The caller then parses the body and calls
        `structure_page`, which decides (and explains) exactly as before.
        """
        reader = self.page_reader(cls, keys)
        if reader is None:
            return None
        native = self._natives[cls]
        # In one call where the names of unknown fields are known, else item by item.
        read = reader.read(content)
        if read is None:
            raws = read_page(content, keys)
            if raws is None or len(raws[0]) > limit:
                return None
            try:
                read = native.from_raws(raws[0], cls), raws[1]
            except Exception:  # noqa: BLE001 - any refusal: the parsed body decides, and explains
                return None
        items, meta = read
        if len(items) > limit:
            return None
        body = {} if meta is ABSENT else {keys.meta_key: meta}
        limit, total = page_meta(body, keys, limit, method, path)
        return Page(items=items, offset=offset, limit=limit, total=total, skipped=0)

    def page_reader(self, cls: type, keys: PageFormat) -> PageReader | None:
        """The reader of `cls` pages in one msgspec call (see `learned`); None without msgspec."""
        native = self._natives.get(cls)
        if native is None or keys.data_key == keys.meta_key:
            return None
        key = (cls, keys.data_key, keys.meta_key)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = PageReader(native, keys)
        return reader

    def raw_page(
        self,
        body: Any,
        cls: type,
        *,
        offset: int,
        limit: int,
        keys: PageFormat,
        method: str,
        path: str,
        on_item_error: Callable[[DecodeError], None] | None = None,
    ) -> Page[RawItem]:
        """A page envelope like `structure_page`, its items kept as the API sent them.

        Of each item only what a crawl needs is read: its ``id`` (required: a
        string, or an integer read as its decimal string) and, for a device,
        its ``roomId`` (the same, or null). Each item is written out to JSON
        at once, so one that cannot be written (nested beyond what the JSON
        writer takes) fails here, not later in a file. A failing item is
        handled as `structure_page` handles one.
        """
        data = page_data(body, keys, limit, method, path)
        names = self._wire_names[cls]
        id_key = names["id"]
        room_key = names.get("room_id")
        items: list[RawItem] = []
        append = items.append
        report: ItemErrors | None = None
        for index, item in enumerate(data):
            problem = None
            if type(item) is dict:
                ident = item.get(id_key)
                room = item.get(room_key) if room_key is not None else None
                if type(ident) is not str:
                    ident = _raw_id(ident)
                if room is not None and type(room) is not str:
                    room = _raw_id(room)
                    if room is None:
                        problem = f"expected a string or null at .{room_key}"
                if ident is None:
                    problem = f"expected a string at .{id_key}"
                elif problem is None:
                    try:
                        # Its members, a copy to size: orjson's bytes keep a 4 KiB buffer.
                        append(RawItem(ident, room, dumps(item)[1:-1]))
                        continue
                    except (TypeError, ValueError, RecursionError):
                        problem = "nests deeper than JSON can be written"
            else:
                problem = f"expected an object, got {_json_type(item)}"
            if report is None:
                report = ItemErrors(on_item_error, method, path)
            report(
                DecodeError(
                    f"unexpected {cls.__name__} at $.{keys.data_key}[{index}]: {problem}",
                    method=method,
                    path=path,
                )
            )
        skipped = 0 if report is None else report.finish()
        limit, total = page_meta(body, keys, limit, method, path)
        return Page(items=items, offset=offset, limit=limit, total=total, skipped=skipped)

    def unstructure(self, obj: Any) -> dict[str, Any]:
        """A model as wire JSON (camelCase, unknown fields restored)."""
        return cast(dict[str, Any], self._converter.unstructure(obj))

    def _explain(self, data: Any, cls: type, where: str, *, method: str, path: str) -> DecodeError:
        import cattrs

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
            details = "; ".join(
                _ERROR_PATH.sub(
                    lambda m: self._wire_path(cls, m.group(0), len(where)),
                    message.replace(" @ ", " at ", 1),
                    count=1,
                )
                for message in cattrs.transform_error(exc, path=where)
            )
            return DecodeError(f"unexpected {cls.__name__}: {details}", method=method, path=path)
        except Exception as exc:  # noqa: BLE001 - a hook's own message, no value in it
            return DecodeError(
                f"unexpected {cls.__name__} at {where}: {exc}", method=method, path=path
            )
        # The compiled function refused what the converter accepts: a bug here, not
        # bad data; said as such, so that it is reported rather than taken for the API's.
        fast_error = self._fast_error(data, cls)
        return DecodeError(
            f"the fast decoder of {cls.__name__} refused at {where} what the cattrs converter "
            f"accepts ({fast_error}): a bug in wiser_async, please report it",
            method=method,
            path=path,
        )

    def _fast_error(self, data: Any, cls: type) -> str:
        try:
            self.fast(cls)(data, cls)
        except Exception as exc:  # noqa: BLE001 - named in the report
            return type(exc).__name__
        return "no error on a second try"

    def _wire_path(self, cls: type, path: str, start: int) -> str:
        """A cattrs path (``$.data[2].rated_current_a``) in the wire names of each model on it."""
        current: type | None = cls
        parts = [path[:start]]
        for match in _PATH_SEGMENT.finditer(path, start):
            attribute = match.group(1)
            if attribute is None:  # an index: the same model's list items, or a dict key
                parts.append(match.group(0))
                continue
            names = self._wire_names.get(current) if current is not None else None
            parts.append("." + (names.get(attribute, attribute) if names else attribute))
            current = model_of(_field_type(current, attribute)) if current else None
        return "".join(parts)

    @classmethod
    def shared(cls, aliases: Mapping[type, Mapping[str, str]] | None = None) -> Codec:
        """One codec per distinct alias table, built once per process (about 7 ms each)."""
        key = frozenset(
            (model, frozenset(names.items())) for model, names in (aliases or {}).items()
        )
        codec = _SHARED.get(key)
        if codec is None:
            codec = _SHARED[key] = cls(aliases)
        return codec


def _field_type(cls: type, attribute: str) -> Any:
    for field in attrs.fields(cls):
        if field.name == attribute:
            return field.type
    return None


_SHARED: dict[frozenset[tuple[type, frozenset[tuple[str, str]]]], Codec] = {}


@attrs.define(slots=True)
class RawItem:
    """An item kept as the API sent it: its ids, read, and its JSON, written.

    Attributes:
        id: The item's id (an integer id as its decimal string).
        room_id: A device's room, or None (None for the other kinds).
        members: The item's JSON object without its braces, as received
            (keys in the server's order): ``b'"id":"d-1","name":"x"'``.
    """

    id: str
    room_id: str | None
    members: bytes


def _raw_id(value: Any) -> str | None:
    """An id that is not a string: an integer as its decimal string, anything else None."""
    return str(value) if type(value) is int else None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number"
    )
