"""The JSON reader and writer: orjson where installed, the standard library otherwise, alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from wiser_async._json import (
    JSON_LIBRARY,
    JSONDecodeError,
    dumps,
    loads,
    stdlib_dumps,
    stdlib_loads,
)

READERS = [pytest.param(loads, id=JSON_LIBRARY), pytest.param(stdlib_loads, id="stdlib")]
WRITERS = [pytest.param(dumps, id=JSON_LIBRARY), pytest.param(stdlib_dumps, id="stdlib")]
VALUES: list[Any] = [
    {"id": "d-1", "name": "Zählerschrank ⚡", "phases": 3, "ratedCurrentA": 16.5, "x": None},
    [1, -2, 0.1, 1e-07, 1e16, True, False, None, "", "\u2028"],
    {"nested": {"a": [{"b": [[]]}]}},
]


def test_orjson_is_what_the_tests_run_with() -> None:
    # The speed extra is part of the dev install: the fast path is the one tested
    # throughout, and the stdlib path by the cases here.
    assert JSON_LIBRARY == "orjson"


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("write", WRITERS)
@pytest.mark.parametrize("value", VALUES)
def test_what_one_writes_the_other_reads_back_equal(
    read: Callable[[bytes], Any], write: Callable[[Any], bytes], value: Any
) -> None:
    written = write(value)
    assert read(written) == value
    assert json.loads(written) == value
    # Compact, and UTF-8 rather than \u escapes.
    assert b", " not in written
    assert b": " not in written
    assert b"\\u" not in written


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "body",
    [b"[NaN]", b"[Infinity]", b"{-Infinity: 1}", b"{x", b"", b"[1,]", b'{"a":1}x'],
)
def test_both_readers_refuse_what_is_not_json(read: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(JSONDecodeError):
        read(body)


@pytest.mark.parametrize("read", READERS)
def test_both_readers_refuse_bodies_that_are_not_utf8(read: Callable[[bytes], Any]) -> None:
    with pytest.raises((UnicodeDecodeError, JSONDecodeError)):
        read(b'{"name": "\xff"}')


@pytest.mark.parametrize("read", READERS)
def test_both_readers_bound_nesting(read: Callable[[bytes], Any]) -> None:
    with pytest.raises((RecursionError, JSONDecodeError)):
        read(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("read", READERS)
def test_the_last_of_duplicate_keys_wins_in_both(read: Callable[[bytes], Any]) -> None:
    assert read(b'{"id": "a", "id": "b"}') == {"id": "b"}
