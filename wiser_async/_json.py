"""JSON from a server and to a file: one parser and writer, and how deep a value may nest.

`loads` and `dumps` use orjson where it is installed (the ``speed`` extra:
about twice as fast both ways) and the standard library otherwise; both
read and write the same JSON. Either way a body must be UTF-8 (RFC 8259)
and ``NaN``/``Infinity`` are refused: they are not JSON, and orjson never
accepts them. Two differences remain: orjson reads an integer beyond 64
bits as a float, and refuses a number beyond a double's range (the standard
library reads ``inf``).

The parsers bound nesting themselves (orjson at 1,024 levels with a
`JSONDecodeError`, the standard library at the interpreter's recursion limit
with `RecursionError`); callers turn either into their layer's typed error.
What they let through is bounded again by `deeper_than`, before it is kept
as a model's unknown field: one nested hundreds of levels deep would make
writing it out fail far from its cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = [
    "JSON_LIBRARY",
    "MAX_DEPTH",
    "JSONDecodeError",
    "deeper_than",
    "dumps",
    "loads",
    "stdlib_dumps",
    "stdlib_loads",
]

# Levels an unknown field may nest. The API's own fields nest two levels
# (a location's address); anything near this is no data a client keeps.
MAX_DEPTH = 32

JSONDecodeError = json.JSONDecodeError
"""What `loads` raises for text that is not JSON (orjson's error is a subclass)."""


def _refuse_constant(name: str) -> Any:
    # The scanner calls this for NaN, Infinity and -Infinity only.
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stdlib_loads(content: bytes) -> Any:
    """Parse UTF-8 JSON with the standard library.

    Raises:
        UnicodeDecodeError: `content` is not UTF-8.
        JSONDecodeError: it is not JSON.
        RecursionError: it nests beyond the interpreter's recursion limit.
    """
    text = content.decode("utf-8")
    try:
        return _DECODER.decode(text)
    except ValueError as exc:
        if isinstance(exc, JSONDecodeError):
            raise
        # A refused constant: at the scanner's position, which it does not pass on.
        raise JSONDecodeError(str(exc), text, 0) from None


def stdlib_dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, by the standard library (NaN refused, as orjson does)."""
    return _ENCODER.encode(value).encode()


loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
try:
    import orjson
except ImportError:  # pragma: no cover - the speed extra is installed in the tests
    loads, dumps = stdlib_loads, stdlib_dumps
    JSON_LIBRARY = "json"
else:
    loads, dumps = orjson.loads, orjson.dumps
    JSON_LIBRARY = "orjson"


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if `value` (decoded JSON) nests more than `limit` levels of arrays and objects.

    Level by level, iteratively, so it cannot itself run out of stack; each
    level's values are gathered by C loops (`list.extend`), not one by one.
    """
    level: list[Any] = [value]
    depth = 0
    while True:
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                if depth >= limit:
                    return True
                below.extend(item.values())
            elif kind is list:
                if depth >= limit:
                    return True
                below.extend(item)
        if not below:
            return False
        level = below
        depth += 1
