"""A page's body parsed as JSON, within a bound on the objects it may hold.

Kept apart from `body` (reading a body), which the session imports with the
package: the JSON parser (orjson) is imported by the first request.
"""

from __future__ import annotations

from typing import Any

from .._json import JSONDecodeError, loads
from ..errors import DecodeError

__all__ = ["OBJECTS_PER_ITEM", "check_objects", "parse_json"]

# JSON objects a page's body may hold per item asked for, before it is parsed:
# a device is one object (two with an address); the rest is room for unknown fields.
OBJECTS_PER_ITEM = 64
# Bytes per JSON object in a page's body, beyond which its objects are counted.
_BYTES_PER_OBJECT = 1024 // OBJECTS_PER_ITEM
_TOO_DEEP = "the body nests arrays or objects deeper than can be read"


def check_objects(content: bytes, objects: int, method: str, target: str) -> None:
    """Refuse (`DecodeError`) a body holding more than `objects` JSON objects, before parsing.

    A page of 1.4 million empty objects in 4 MiB would cost a hundred
    megabytes once decoded. Counted (as ``{``) only in a body larger than such
    a page usually is (1 KiB an item): a typical page costs no scan.
    """
    if len(content) > objects * _BYTES_PER_OBJECT and (count := content.count(b"{")) > objects:
        raise DecodeError(
            f"the body holds {count} JSON objects, beyond what a page of the "
            f"size asked holds ({objects})",
            method=method,
            path=target,
        )


def parse_json(content: bytes, method: str, target: str, *, objects: int | None = None) -> Any:
    """`content` parsed as JSON, or a `DecodeError` saying what was wrong and where.

    Args:
        objects: The most JSON objects the body may hold (see `check_objects`).
    """
    if objects is not None:
        check_objects(content, objects, method, target)
    try:
        return loads(content)
    except UnicodeDecodeError:
        raise DecodeError("the body is not UTF-8 text", method=method, path=target) from None
    except JSONDecodeError as exc:
        raise DecodeError(_not_json(exc, len(content)), method=method, path=target) from None
    except RecursionError:
        raise DecodeError(_TOO_DEEP, method=method, path=target) from None


def _not_json(error: JSONDecodeError, size: int) -> str:
    """What was wrong with a body that is not JSON, and where (never the body's text)."""
    # orjson says "...: line 1 column 5 (char 4)"; the position is given apart.
    reason = error.msg.split(": line ", 1)[0]
    if reason.startswith("str is not valid UTF-8"):
        return "the body is not UTF-8 text"
    if reason.startswith("depth limit exceeded"):
        return _TOO_DEEP
    return f"the body is not valid JSON ({reason} at byte {error.pos} of {size})"
