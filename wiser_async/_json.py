"""Bounds on JSON from a server: how deep a value may nest.

``json.loads`` recurses in C under the interpreter's recursion limit and
raises `RecursionError` past it (about 1,000 levels); callers turn that into
their layer's typed error. What it lets through is bounded again here, before
it is kept: an unknown field nested hundreds of levels deep would make
writing it out (``json.dumps`` of a crawl record) fail far from its cause.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "deeper_than"]

# Levels an unknown field may nest. The API's own fields nest two levels
# (a location's address); anything near this is no data a client keeps.
MAX_DEPTH = 32


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if `value` (decoded JSON) nests more than `limit` levels of arrays and objects.

    Iterative, so it cannot itself run out of stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
