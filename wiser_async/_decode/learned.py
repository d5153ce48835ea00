"""Whole pages in one msgspec call, the unknown field names met so far declared.

`native` reads a page's items one by one (`Native.from_raws`): its strict
Struct refuses an item with a field it does not declare, and msgspec cannot
keep undeclared fields, so such an item is read apart. That is a call per
item, and a page's items read in one call cost about half as much. A
collection repeats the same few unknown names (a vendor extension on some
devices), so once `from_raws` has met them (`Native.seen`), a `PageReader`
declares them as optional raw fields of a strict Struct: the next pages
decode in one call, and an item holding one of those fields gets it in
``extra``, parsed from its text as `from_raws` parses it.

Anything else goes the per-item way, which decides as before (and teaches
the reader the names it meets): a name not declared yet, an item with two
declared names (the order they came in is kept in ``extra``, and one call
loses it), a value that does not parse. At most `MAX_LEARNED` names of at
most `MAX_NAME` characters are declared per model and page format, so a
server inventing names cannot make the reader grow; past them, pages with
other names are read item by item.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from typing import Any

from .._config import PageFormat
from .._json import MAX_DEPTH, loads
from .compiled import bounded_extra
from .native import Native, page_struct, parsed_meta

__all__ = ["MAX_LEARNED", "MAX_NAME", "PageReader"]

MAX_LEARNED = 16
MAX_NAME = 64


class _TwoUnknown(Exception):
    """An item holds two declared unknown fields: the per-item way keeps their order."""


class PageReader:
    """One model's page bodies in one msgspec call, with the unknown names learned.

    Args:
        native: The model's msgspec decoding (its Struct's fields, `to_model`
            and the names its per-item path met).
        keys: The page format (envelope keys).
    """

    def __init__(self, native: Native, keys: PageFormat) -> None:
        self._native = native
        self._keys = keys
        self._declared: tuple[str, ...] = ()
        self._seen_at_build = -1
        self._read: Callable[[bytes], list[Any] | tuple[list[Any], Any]] = self._build(())

    @property
    def declared(self) -> tuple[str, ...]:
        """The unknown field names declared now, in the order they were met."""
        return self._declared

    def read(self, content: bytes) -> tuple[list[Any], Any] | None:
        """A page body's models and its metadata (`native.ABSENT` if none); None if not in one call.

        None: the body is not a page envelope msgspec reads strictly with the
        names declared now, or an item holds two of them, or a value does not
        parse. The caller then reads the items one by one.
        """
        seen = self._native.seen
        if len(seen) != self._seen_at_build and len(self._declared) < MAX_LEARNED:
            names = tuple(name for name in seen if len(name) <= MAX_NAME)[:MAX_LEARNED]
            self._seen_at_build = len(seen)
            if names != self._declared:
                self._read = self._build(names)
                self._declared = names
        try:
            items, meta = self._read(content)
            return items, parsed_meta(meta)
        except Exception:  # noqa: BLE001 - any refusal: the per-item way decides
            return None

    def _build(self, names: tuple[str, ...]) -> Callable[[bytes], Any]:
        import msgspec

        native = self._native
        attributes = [f"wiser_unknown_{index}" for index in range(len(names))]
        struct = msgspec.defstruct(
            "LearnedWire",
            [*native.fields, *((attribute, msgspec.Raw, None) for attribute in attributes)],
            forbid_unknown_fields=True,
            rename={**native.rename, **dict(zip(attributes, names, strict=True))},
            kw_only=True,
            gc=False,
        )
        envelope = page_struct(
            list[struct],  # type: ignore[valid-type]
            self._keys.data_key,
            self._keys.meta_key,
        )
        scope: dict[str, Any] = {
            "DECODE": msgspec.json.Decoder(envelope).decode,
            "TO_MODEL": native.to_model,
            "EXTRA": _extra_of(tuple(zip(attributes, names, strict=True))),
        }
        # Straight-line: with no name declared, every item goes to its model;
        # else an item holding none of them does, the rest through EXTRA.
        lines = [
            "def read(content):",
            "    page = DECODE(content)",
            "    out = []",
            "    append = out.append",
            "    for s in page.items:",
        ]
        if attributes:
            held = " or ".join(f"s.{attribute} is not None" for attribute in attributes)
            lines += [
                f"        if {held}:",
                "            append(TO_MODEL(s, EXTRA(s)))",
                "            continue",
            ]
        lines += ["        append(TO_MODEL(s, {}))", "    return out, page.meta"]
        source = "\n".join(lines) + "\n"
        filename = f"<wiser_async learned page {id(scope):x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        exec(compile(source, filename, "exec"), scope)  # noqa: S102 - built above from field names
        read: Callable[[bytes], Any] = scope["read"]
        return read


def _extra_of(declared: tuple[tuple[str, str], ...]) -> Callable[[Any], dict[str, Any]]:
    """An item's one declared unknown field as ``extra``, parsed as `from_raws` parses it."""
    shallow = 2 * MAX_DEPTH  # fewer bytes cannot nest MAX_DEPTH deep

    def extra_of(item: Any) -> dict[str, Any]:
        held = [
            (name, raw)
            for attribute, name in declared
            if (raw := getattr(item, attribute)) is not None
        ]
        if len(held) != 1:
            raise _TwoUnknown
        name, raw = held[0]
        extra = {name: loads(bytes(raw))}
        return extra if len(raw) < shallow else bounded_extra(extra)

    return extra_of
